"""The market as one worker knows it: latest quotes and a bounded log of encoded events.

Strategy: every tick is encoded into its SSE ``price`` frame exactly once, on arrival,
and kept in a log whose sequence numbers are contiguous (the feed's global ``seq``), so a
position in the log is just a seq and "what did this client miss" is a slice. Streams
never own queues: each keeps a cursor (the last seq it was sent), and what piled up
since is read from here and written in one go. A cursor that has fallen off the tail of
the log, or belongs to an older feed generation, gets a snapshot instead (conflation).

Ids are ``EPOCH-SEQ``: both come from the feed source, so every worker and every
instance names the same tick the same way, and a reconnect can resume anywhere.

Pure: no I/O, no clock, no gevent. The fan-out and the feed reader drive it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from ticker import sse

__all__ = ["Batch", "EventLog", "GapError"]


class GapError(ValueError):
    """A tick whose seq does not follow the log's head: the feed skipped something."""


def _dumps(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), allow_nan=False)


class Batch:
    """The events appended since one position, indexed once for every stream that reads them.

    Built once per sweep; each distinct subscription then costs only the events it
    matches, merged back into seq order, never a scan of the whole batch.
    """

    __slots__ = ("all", "count", "_by_symbol")

    def __init__(self, entries: list[tuple[int, str, bytes]]) -> None:
        self.count = len(entries)
        self.all = b"".join(frame for _, _, frame in entries)
        self._by_symbol: dict[str, list[tuple[int, bytes]]] = {}
        for seq, symbol, frame in entries:
            self._by_symbol.setdefault(symbol, []).append((seq, frame))

    def select(self, symbols: Iterable[str] | None) -> tuple[bytes, int]:
        """The frames for ``symbols`` (``None``: all) in seq order, and how many."""
        if symbols is None:
            return self.all, self.count
        picked: list[tuple[int, bytes]] = []
        for symbol in symbols:
            found = self._by_symbol.get(symbol)
            if found:
                picked.extend(found)
        if not picked:
            return b"", 0
        picked.sort()
        return b"".join(frame for _, frame in picked), len(picked)


class EventLog:
    """Latest state and recent history of one feed, as encoded SSE frames."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self.epoch: str | None = None
        self.feed_up = False
        self.generation = 0
        self.head = 0
        self.universe: dict[str, dict] = {}
        self.quotes: dict[str, dict] = {}
        self._quote_json: dict[str, str] = {}
        self._entries: list[tuple[int, str, bytes]] = []

    # Writing ------------------------------------------------------------------------

    def reset(self, epoch: str, seq: int, universe: list[dict], quotes: list[dict]) -> None:
        """Start a new generation from a snapshot: history before ``seq`` is gone."""
        self.epoch = epoch
        self.generation += 1
        self.head = seq
        self.universe = {company["symbol"]: company for company in universe}
        self.quotes = {}
        self._quote_json = {}
        for quote in quotes:
            if quote["symbol"] in self.universe:
                self._store(quote)
        self._entries = []

    def append(self, quote: dict) -> bytes:
        """Record one tick and return its ``price`` frame.

        Raises:
            GapError: the tick's seq is not ``head + 1`` (or its symbol is not listed).
        """
        seq = quote["seq"]
        if seq != self.head + 1:
            raise GapError(f"tick seq {seq} does not follow {self.head}")
        if quote["symbol"] not in self.universe:
            raise GapError(f"tick for unlisted symbol {quote['symbol']}")
        data = self._store(quote)
        frame = sse.encode(data, event="price", id=self.event_id(seq))
        self._entries.append((seq, quote["symbol"], frame))
        if len(self._entries) >= 2 * self.capacity:
            del self._entries[: len(self._entries) - self.capacity]
        self.head = seq
        return frame

    def _store(self, quote: dict) -> str:
        data = _dumps(quote)
        self.quotes[quote["symbol"]] = quote
        self._quote_json[quote["symbol"]] = data
        return data

    # Reading ------------------------------------------------------------------------

    @property
    def oldest(self) -> int:
        """The smallest cursor from which every later event is still here."""
        kept = min(len(self._entries), self.capacity)
        return self.head - kept

    def event_id(self, seq: int) -> str:
        return f"{self.epoch}-{seq}"

    def parse_id(self, text: str | None) -> int | None:
        """The seq named by a ``Last-Event-ID`` of this epoch, else ``None`` (treat as absent)."""
        if not text or self.epoch is None or len(text) > 64:
            return None
        epoch, _, seq = text.strip().rpartition("-")
        if epoch != self.epoch or not seq.isascii() or not seq.isdigit():
            return None
        value = int(seq)
        # A little ahead of our head is another worker (or instance) that is a few
        # ticks further along: the stream waits for us to catch up rather than
        # losing its place. Far ahead is nonsense.
        return value if value <= self.head + self.capacity else None

    def covers(self, generation: int, cursor: int) -> bool:
        """Whether everything after ``cursor`` can be replayed exactly from the log."""
        return generation == self.generation and cursor >= self.oldest

    def batch(self, cursor: int) -> Batch:
        """Everything after ``cursor`` (which the log must cover), indexed for selection."""
        start = len(self._entries) - (self.head - cursor)
        return Batch(self._entries[start:])

    def replay(self, cursor: int, symbols: Iterable[str] | None) -> tuple[bytes, int]:
        """The frames after ``cursor`` for ``symbols``, in order, and how many."""
        if cursor >= self.head:
            return b"", 0
        start = len(self._entries) - (self.head - cursor)
        if symbols is None:
            frames = [frame for _, _, frame in self._entries[start:]]
        else:
            wanted = frozenset(symbols)
            frames = [frame for _, sym, frame in self._entries[start:] if sym in wanted]
        return b"".join(frames), len(frames)

    def frames(self, quotes: Iterable[dict], symbols: Iterable[str] | None) -> tuple[bytes, int]:
        """``price`` frames for ticks from elsewhere (older than the log), encoded as
        ``append`` encodes them, so a replay from the source is byte-identical."""
        wanted = None if symbols is None else frozenset(symbols)
        frames = [
            sse.encode(_dumps(quote), event="price", id=self.event_id(quote["seq"]))
            for quote in quotes if wanted is None or quote["symbol"] in wanted
        ]
        return b"".join(frames), len(frames)

    def snapshot(self, symbols: Iterable[str] | None) -> bytes:
        """A ``snapshot`` frame of the latest quotes, with the id of the log's head."""
        chosen = self.universe if symbols is None else symbols
        quotes = ",".join(self._quote_json[s] for s in chosen if s in self._quote_json)
        return sse.encode(f'{{"quotes":[{quotes}]}}', event="snapshot", id=self.event_id(self.head))

    def quote_list(self, symbols: Iterable[str] | None) -> list[dict]:
        chosen = self.universe if symbols is None else symbols
        return [self.quotes[s] for s in chosen if s in self.quotes]
