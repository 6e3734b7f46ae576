"""The market as one worker knows it: latest quotes and a bounded log of encoded events.

Strategy: every tick is encoded into its SSE ``price`` frame exactly once, on arrival,
and kept in a log whose sequence numbers are contiguous (the feed's global ``seq``), so a
position in the log is just a seq and "what did this client miss" is a slice. Streams
never own queues: each keeps a cursor (the last seq it was sent), and what piled up
since is read from here and written in one go. A cursor that has fallen off the tail of
the log, or belongs to an older feed generation, gets a snapshot instead (conflation).

What a stream of a few symbols missed is found through each symbol's seqs, not by reading
every tick since its cursor: in a market of thousands of listings, a watchlist of twenty
that is a second behind is owed a few dozen of the twenty thousand ticks in between, and
catching up costs those few dozen, so a worker that falls behind in a busy moment does
not fall further for it.

Ids are ``EPOCH-SEQ``: both come from the feed source, so every worker and every
instance names the same tick the same way, and a reconnect can resume anywhere. Ticks
from before the log's first entry (the market's replay, read when a worker boots) are
``backfill``ed in front, so a new worker reaches back as far as an old one.

A snapshot says why it is one (``SNAPSHOT_REASONS``): the client can tell a first connect
from a market restart, an id older than any history, and a stream that fell behind.

Pure: no I/O, no clock, no gevent. The fan-out and the feed reader drive it.
"""

from __future__ import annotations

import itertools
import json
from collections import defaultdict, deque
from collections.abc import Container, Iterable, Sequence

from simulator.wire import Tick
from ticker import sse

__all__ = ["AHEAD_S", "SNAPSHOT_REASONS", "EventLog", "GapError"]

# How far ahead of the head, in seconds of ticks at the market's rate, a Last-Event-ID may
# be and still be waited for: another worker that is a little further along. Further is
# treated as unknown, never waited for (at the market's pace that could be minutes).
AHEAD_S = 5.0
_AHEAD_MIN = 100  # ticks: a quiet market still allows a few

SNAPSHOT_REASONS = ("new", "restart", "too-old", "lagging")


class GapError(ValueError):
    """A tick whose seq does not follow the log's head: the feed skipped something."""


class EventLog:
    """Latest state and recent history of one feed, as encoded SSE frames."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        # Entries beyond the capacity go in batches of this many: each tick pays the same
        # to go, and the worker stalls a moment per batch, not once for a whole log.
        self._slack = max(1, capacity // 16)
        self.epoch: str | None = None
        self.rate = 0.0
        self.feed_up = False
        self.generation = 0
        self.head = 0
        self.universe: dict[str, dict] = {}
        self._latest: dict[str, bytes] = {}  # symbol: its latest quote, as JSON
        self._entries: list[tuple[int, str, bytes]] = []
        # Each symbol's seqs in the log, in order (a symbol with none has no entry).
        self._seqs: defaultdict[str, deque[int]] = defaultdict(deque)

    # Writing ------------------------------------------------------------------------

    def reset(self, epoch: str, seq: int, universe: list[dict], quotes: list[dict],
              rate: float = 0.0) -> None:
        """Start a new generation from a snapshot: history before ``seq`` is gone
        (until ``backfill`` brings it back). ``rate``: the market's ticks per second."""
        self.epoch = epoch
        self.rate = rate
        self.generation += 1
        self.head = seq
        self.universe = {company["symbol"]: company for company in universe}
        self._latest = {
            quote["symbol"]: Tick.of(quote).data for quote in quotes
            if quote["symbol"] in self.universe
        }
        self._entries = []
        self._seqs = defaultdict(deque)

    def append(self, tick: Tick) -> bytes:
        """Record one tick and return its ``price`` frame.

        Raises:
            GapError: the tick's seq is not ``head + 1`` (or its symbol is not listed).
        """
        seq, symbol = tick.seq, tick.symbol
        if seq != self.head + 1:
            raise GapError(f"tick seq {seq} does not follow {self.head}")
        if symbol not in self.universe:
            raise GapError(f"tick for unlisted symbol {symbol}")
        self._latest[symbol] = tick.data
        frame = self._frame(tick)
        self._entries.append((seq, symbol, frame))
        self._seqs[symbol].append(seq)
        if len(self._entries) >= self.capacity + self._slack:
            self._forget(len(self._entries) - self.capacity)
        self.head = seq
        return frame

    def _forget(self, count: int) -> None:
        """The oldest ``count`` entries go, and their seqs, each its symbol's oldest."""
        seqs_of = self._seqs
        for _, symbol, _ in itertools.islice(self._entries, count):
            seqs = seqs_of[symbol]
            seqs.popleft()
            if not seqs:
                del seqs_of[symbol]
        del self._entries[:count]

    def backfill(self, ticks: list[Tick]) -> int:
        """Put older ticks, in seq order and ending just before the oldest entry, in front.

        Only the ticks that fit the capacity are kept (the newest of them); the latest
        quotes are not touched, they are newer. Returns how many were added.

        Raises:
            GapError: the ticks do not end right before the log's oldest entry, or skip.
        """
        room = self.capacity - len(self._entries)
        if room <= 0 or not ticks:
            return 0
        first = self._entries[0][0] if self._entries else self.head + 1
        if ticks[-1].seq != first - 1:
            raise GapError(f"backfill ends at {ticks[-1].seq}, not {first - 1}")
        kept = ticks[-room:]
        older = []
        for offset, tick in enumerate(kept):
            if tick.seq != kept[0].seq + offset or tick.symbol not in self.universe:
                raise GapError(f"backfill breaks at seq {tick.seq}")
            older.append((tick.seq, tick.symbol, self._frame(tick)))
        self._entries[:0] = older
        for seq, symbol, _ in reversed(older):
            self._seqs[symbol].appendleft(seq)
        return len(older)

    def _frame(self, tick: Tick) -> bytes:
        return sse.encode_line(tick.data, event="price", id=self.event_id(tick.seq))

    # Reading ------------------------------------------------------------------------

    @property
    def oldest(self) -> int:
        """The smallest cursor from which every later event is still here."""
        kept = min(len(self._entries), self.capacity)
        return self.head - kept

    def event_id(self, seq: int) -> str:
        return f"{self.epoch}-{seq}"

    @staticmethod
    def seq_of(frame: bytes) -> int:
        """The seq of one of the log's price frames, read from its id line."""
        start = frame.index(b"\nid: ") + 5
        return int(frame[start:frame.index(b"\n", start)].rpartition(b"-")[2])

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
        # losing its place. Further ahead is unknown: never waited for.
        return value if value <= self.head + self.ahead else None

    @property
    def ahead(self) -> int:
        """How many ticks past the head a Last-Event-ID may name and still be waited for."""
        return max(_AHEAD_MIN, int(self.rate * AHEAD_S))

    def covers(self, generation: int, cursor: int) -> bool:
        """Whether everything after ``cursor`` can be replayed exactly from the log."""
        return generation == self.generation and cursor >= self.oldest

    def since(self, cursor: int) -> Sequence[tuple[int, str, bytes]]:
        """The entries ``(seq, symbol, frame)`` after ``cursor``, which the log must cover."""
        return self._entries[len(self._entries) - (self.head - cursor):]

    def replay(self, cursor: int, symbols: Iterable[str] | None,
               until: int | None = None) -> tuple[bytes, int]:
        """The frames after ``cursor`` up to ``until`` (the head) for ``symbols``, in order,
        and how many."""
        frames = [frame for _, _, frame in self._between(cursor, until, symbols)]
        return b"".join(frames), len(frames)

    def latest(self, cursor: int, symbols: Iterable[str] | None,
               until: int | None = None, skip: Container[str] = ()) -> tuple[bytes, int, int]:
        """Conflated ``replay``: the latest frame of each symbol that ticked after ``cursor``
        up to ``until``, in seq order; how many, and how many ticks that leaves out.
        ``skip``: symbols whose latest comes from elsewhere (left out, and not counted)."""
        newest: dict[str, tuple[int, bytes]] = {}
        ticks = 0
        for seq, symbol, frame in self._between(cursor, until, symbols):
            if symbol not in skip:
                newest[symbol] = (seq, frame)
                ticks += 1
        kept = sorted(newest.values())
        return b"".join(frame for _, frame in kept), len(kept), ticks - len(kept)

    def _between(self, cursor: int, until: int | None,
                 symbols: Iterable[str] | None) -> list[tuple[int, str, bytes]]:
        """The entries after ``cursor`` up to ``until`` (the head) of ``symbols``, in seq
        order: read one by one when that costs less (every symbol, or fewer ticks in
        between than symbols), else found through each symbol's seqs."""
        until = self.head if until is None else min(until, self.head)
        if cursor >= until:
            return []
        entries = self._entries
        start = len(entries) - (self.head - cursor)
        end = len(entries) - (self.head - until)
        if symbols is None:
            return entries[start:end]
        if not isinstance(symbols, (set, frozenset)):
            symbols = frozenset(symbols)
        if end - start <= len(symbols):
            return [entry for entry in entries[start:end] if entry[1] in symbols]
        found = []
        for symbol in symbols:
            for seq in reversed(self._seqs.get(symbol, ())):
                if seq <= cursor:
                    break
                if seq <= until:
                    found.append(seq)
        found.sort()
        first = self.head - len(entries) + 1  # seqs are contiguous: entry i is first + i
        return [entries[seq - first] for seq in found]

    def frames(self, ticks: Iterable[Tick], symbols: Iterable[str] | None) -> tuple[bytes, int]:
        """``price`` frames for ticks from elsewhere (older than the log), framed as
        ``append`` frames them."""
        wanted = None if symbols is None else frozenset(symbols)
        frames = [
            self._frame(tick) for tick in ticks if wanted is None or tick.symbol in wanted
        ]
        return b"".join(frames), len(frames)

    def snapshot(self, symbols: Iterable[str] | None, reason: str, skipped: int = 0) -> bytes:
        """A ``snapshot`` frame of the latest quotes, with the id of the log's head.

        ``reason`` is one of ``SNAPSHOT_REASONS``; ``skipped``, for a stream that fell
        behind, how many of its ticks it did not get.
        """
        if reason not in SNAPSHOT_REASONS:
            raise ValueError(f"unknown snapshot reason {reason!r}")
        extra = f',"skipped":{skipped}' if skipped else ""
        data = b'{"reason":"%s"%s,"quotes":%s}' % (
            reason.encode(), extra.encode(), self.quotes_json(symbols))
        return sse.encode_line(data, event="snapshot", id=self.event_id(self.head))

    def quotes_json(self, symbols: Iterable[str] | None) -> bytes:
        """The latest quotes of ``symbols`` (None: every symbol), as a JSON array."""
        chosen = self.universe if symbols is None else symbols
        latest = self._latest
        return b"[" + b",".join(latest[s] for s in chosen if s in latest) + b"]"

    def quote_list(self, symbols: Iterable[str] | None) -> list[dict]:
        """The latest quotes of ``symbols`` (None: every symbol), decoded."""
        return json.loads(self.quotes_json(symbols))
