"""The replay: the market's recent ticks, for a reader that lost its place to ask back.

Strategy: every tick the market makes is kept as the very bytes it was published as (the
line ``tick_line`` made once), beside the wall-clock ms at which it was made, in two
deques in seq order with no gap. A tick's place is therefore its seq minus the first
kept seq, and nothing is encoded or parsed twice. The history is bounded twice: by count
(the deques' ``maxlen``) and by age (``trim``, on every batch). Pure: the caller passes
the time.

A replay's answer is cut into ``pieces``: lines of the form
``{"type":"replay","id":X,"ticks":[TICK,...]}``, each at most ``wire.MAX_LINE`` bytes,
made by joining the stored lines, so a piece costs a copy and no JSON encoding.
"""

from __future__ import annotations

import itertools
import json
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from simulator import wire

__all__ = ["PIECE_BYTES", "Replay", "pieces"]

PIECE_BYTES = wire.MAX_LINE  # the longest piece, its newline included


class Replay:
    """The last ``max_ticks`` ticks, none older than ``max_age_ms``.

    Args:
        max_ticks: ticks kept at most (0 keeps none).
        max_age_ms: a tick older than this, against the newest tick's time, is dropped.
        seq: the market's seq now: the next tick kept must be ``seq + 1``.
    """

    def __init__(self, max_ticks: int, max_age_ms: int, seq: int = 0) -> None:
        self.max_ticks = max_ticks
        self.max_age_ms = max_age_ms
        self.seq = seq
        self._lines: deque[bytes] = deque(maxlen=max_ticks)
        self._stamps: deque[int] = deque(maxlen=max_ticks)

    def __len__(self) -> int:
        return len(self._lines)

    @property
    def oldest(self) -> int:
        """The smallest ``after`` a replay can start from: the oldest kept seq minus 1."""
        return self.seq - len(self._lines)

    def extend(self, first: int, lines: Sequence[bytes], ts: int) -> None:
        """Keep ``lines``, the ticks ``first``, ``first + 1``, ..., all made at ``ts`` ms.

        A gap (``first`` is not ``seq + 1``) empties the history first: what is kept is
        always contiguous.
        """
        if first != self.seq + 1:
            self._lines.clear()
            self._stamps.clear()
        self._lines.extend(lines)
        self._stamps.extend(itertools.repeat(ts, len(lines)))
        self.seq = first + len(lines) - 1
        self.trim(ts)

    def trim(self, now_ms: int) -> None:
        """Drop the ticks made before ``now_ms - max_age_ms``."""
        stamps, cutoff = self._stamps, now_ms - self.max_age_ms
        while stamps and stamps[0] < cutoff:
            stamps.popleft()
            self._lines.popleft()

    def between(self, after: int, until: int) -> list[bytes]:
        """The kept lines of the ticks with ``after < seq <= until``, in seq order.

        Raises:
            ValueError: that range is not all kept (``after < oldest`` or ``until > seq``).
        """
        if not self.oldest <= after <= until <= self.seq:
            raise ValueError(f"ticks {after + 1}..{until} are not all kept")
        start = after - self.oldest
        return list(itertools.islice(self._lines, start, start + until - after))

    def entries(self) -> Iterator[tuple[int, bytes]]:
        """Every kept tick as ``(ts, line)``, oldest first."""
        return zip(self._stamps, self._lines, strict=True)


def pieces(lines: Iterable[bytes], request_id: Any = None,
           limit: int = PIECE_BYTES) -> Iterator[bytes]:
    """``lines`` (tick lines, each ending in a newline) as replay lines of at most ``limit``
    bytes each, newline included; none when there are no lines.

    Raises:
        ValueError: a tick cannot fit in a piece with this id.
    """
    head = b'{"type":"replay",'
    if request_id is not None:
        head += b'"id":' + json.dumps(request_id, allow_nan=False).encode() + b","
    head += b'"ticks":['
    tail = b"]}\n"
    room = limit - len(head) - len(tail)  # bytes for the ticks and the commas between them
    batch: list[bytes] = []
    used = -1  # the first tick has no comma before it
    for line in lines:
        tick = line[:-1]
        if used + 1 + len(tick) > room:
            if not batch:
                raise ValueError("a tick does not fit in a replay piece")
            yield head + b",".join(batch) + tail
            batch, used = [], -1
        batch.append(tick)
        used += 1 + len(tick)
    if batch:
        yield head + b",".join(batch) + tail
