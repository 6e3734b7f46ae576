"""What every stream received, checked against the market, and the figures that follow.

Strategy: per stream only counters and a few seqs are kept while reading; everything
that needs the whole market is settled at the end against the reference, one extra
stream for every symbol whose every tick is recorded. A stream's life is cut into
segments at its snapshots (a snapshot restarts it from the market's state, so what it
skipped before one is conflation, not loss); within a segment it must get exactly the
reference's ticks for its symbols, so ``expected - received`` is its gaps and a surplus
its duplicates. "Delivered" is judged by market time: of the ticks the market produced
in the window (by ``ts``), the share each stream received, whenever it arrived.
Latency is arrival time minus ``ts`` for every price event that arrives in the window on
a sampled stream (an even spread of five hundred or so: enough for a p99, at a
twentieth of the cost of counting every event), counted in tenths of a millisecond (``ts`` itself is
whole milliseconds); the maximum is over every event of every stream.

Pure: the loop in ``bench.loadgen`` feeds it bodies and clock readings.
"""

from __future__ import annotations

import json
from bisect import bisect_left, bisect_right
from collections import Counter

from bench.framing import Bodies, Run, items
from simulator.wire import Tick, parse_tick

__all__ = ["Stream", "Tally"]


def _price(value: float) -> bytes:
    """A price as the servers write it in a quote (JSON of the float)."""
    return json.dumps(float(value)).encode()


class Stream:
    """One stream's subscription and counters."""

    __slots__ = (
        "group", "shared", "symbols", "wants", "sampled", "last_seq", "start", "count", "segments",
        "snapshots", "window_snapshots", "in_window", "prices", "recent", "feed_down", "dups",
    )

    def __init__(self, group: int, symbols: frozenset[bytes] | None, universe: int,
                 sampled: bool = True) -> None:
        self.group = group
        self.shared = False  # another stream has the same subscription
        self.sampled = sampled  # every event's latency is counted, not just the worst per read
        self.symbols = symbols  # None: every symbol
        self.wants = universe if symbols is None else len(symbols)
        self.last_seq = -1
        self.start = -1  # seq of the snapshot the current segment starts from
        self.count = 0  # price events in the current segment
        self.segments: list[tuple[int, int, int]] = []  # (after seq, to seq, received)
        self.snapshots = 0
        self.window_snapshots = 0
        self.in_window = 0  # price events whose ts is in the window
        self.prices: dict[bytes, bytes] = {}  # symbol: last price, as of the last fold
        self.recent: list[Run | dict[bytes, bytes]] = []  # runs and snapshots since then
        self.feed_down = False
        self.dups = 0

    def fold(self) -> dict[bytes, bytes]:
        """The last price per symbol, merging what arrived since the last fold.

        Parsing every read's prices would cost more than all the rest of the reading;
        merging newest first stops as soon as every symbol is known, which is usually a
        few reads back, and the older runs are never parsed.
        """
        merged: dict[bytes, bytes] = {}
        for prices in reversed(self.recent):
            if len(merged) >= self.wants:
                break
            newer, merged = merged, prices.copy() if isinstance(prices, dict) else prices.prices
            merged.update(newer)
        self.prices.update(merged)
        self.recent.clear()
        return self.prices


class Tally:
    """Every stream's counters, the reference's record of the market, and the window."""

    def __init__(self) -> None:
        self.bodies = Bodies()
        self.reference: Stream | None = None
        self.ref_from = -1  # seq of the reference's first snapshot
        self.measuring = False  # arrivals and latencies are counted only while True
        self.window10 = (0, 0)  # market-time window [from, to) in tenths of a ms
        self.arrivals = 0
        self.latency: Counter[int] = Counter()  # of the sampled streams' events
        self.worst = 0  # the highest latency of any event on any stream
        self.ref_seqs: list[int] = []
        self.ref_by_symbol: dict[bytes, list[int]] = {}
        self.ref_window: Counter[bytes] = Counter()
        # Read from the market's own socket (``tape``) instead of the reference stream:
        # a server may conflate any stream, the reference too, but not the market.
        self.taped = False
        self.tape_seq = -1
        self._tape_latest: dict[bytes, bytes] = {}  # symbol: its latest quote's JSON

    # Reading -------------------------------------------------------------------------

    def feed(self, stream: Stream, body: bytes, now10: int) -> None:
        """Account for ``body`` (whole frames) arriving on ``stream`` at ``now10``."""
        for item in self.bodies.items(stream.group, body) if stream.shared else items(body):
            kind = item[0]
            if kind == "price":
                self._prices(stream, item[1], now10)
            elif kind == "snapshot":
                self._snapshot(stream, item[1], item[2])
            else:
                stream.feed_down = not item[1]

    def _prices(self, stream: Stream, run: Run, now10: int) -> None:
        if run.first <= stream.last_seq:
            stream.dups += sum(seq <= stream.last_seq for seq in run.seqs)
        stream.count += run.count
        stream.last_seq = max(stream.last_seq, run.last)
        stream.recent.append(run)
        if len(stream.recent) >= 16:
            stream.fold()
        since, until = self.window10
        if since <= run.ts_first and run.ts_last < until:
            stream.in_window += run.count
        elif run.ts_last >= since and run.ts_first < until:
            ts10 = run.ts10
            stream.in_window += bisect_left(ts10, until) - bisect_left(ts10, since)
        if self.measuring:
            self.arrivals += run.count
            if now10 - run.ts_first > self.worst:
                self.worst = now10 - run.ts_first
            if stream.sampled:
                self.latency.update(map(now10.__sub__, run.ts10))
        if stream is self.reference and not self.taped:
            self._record(run)

    def _snapshot(self, stream: Stream, seq: int, prices: dict[bytes, bytes]) -> None:
        if stream.start >= 0:
            stream.segments.append((stream.start, stream.last_seq, stream.count))
            stream.snapshots += 1
            if self.measuring:
                stream.window_snapshots += 1
        elif stream is self.reference and not self.taped:
            self.ref_from = seq
        stream.start, stream.count = seq, 0
        stream.last_seq = max(stream.last_seq, seq)
        stream.recent.append(prices)

    def _record(self, run: Run) -> None:
        """The reference's record: every tick's seq and symbol, the window's ticks per symbol."""
        self.ref_seqs.extend(run.seqs)
        since, until = self.window10
        by_symbol = self.ref_by_symbol
        for seq, (symbol, _), ts10 in zip(run.seqs, run.quotes, run.ts10, strict=True):
            by_symbol.setdefault(symbol, []).append(seq)
            if since <= ts10 < until:
                self.ref_window[symbol] += 1

    def tape(self, message: dict | Tick) -> None:
        """A message the market published (a tick, or other decoded JSON): the record,
        when ``taped``. A tick's price is read only at the end (``tape_prices``)."""
        if isinstance(message, Tick) or message.get("type") == "tick":
            tick = parse_tick(message)
            seq, symbol = tick.seq, tick.symbol.encode()
            self.ref_seqs.append(seq)
            self.ref_by_symbol.setdefault(symbol, []).append(seq)
            since, until = self.window10
            if since <= tick.ts * 10 < until:
                self.ref_window[symbol] += 1
            self._tape_latest[symbol] = tick.data
            self.tape_seq = seq
            return
        kind = message.get("type")
        if kind == "snapshot":
            self.ref_from = self.tape_seq = message["seq"]
        if kind in ("snapshot", "quotes"):
            for quote in message.get("quotes", ()):
                self._tape_latest[quote["symbol"].encode()] = json.dumps(quote).encode()

    @property
    def tape_prices(self) -> dict[bytes, bytes]:
        """The market's last price of each symbol, as the servers write it."""
        return {symbol: _price(json.loads(quote)["price"])
                for symbol, quote in self._tape_latest.items()}

    # Settling ------------------------------------------------------------------------

    def expected(self, symbols: frozenset[bytes] | None, after: int, upto: int) -> int:
        """The reference's ticks for ``symbols`` with ``after < seq <= upto``."""
        if symbols is None:
            return bisect_right(self.ref_seqs, upto) - bisect_right(self.ref_seqs, after)
        total = 0
        for symbol in symbols:
            seqs = self.ref_by_symbol.get(symbol)
            if seqs:
                total += bisect_right(seqs, upto) - bisect_right(seqs, after)
        return total

    def check(self, streams: list[Stream], settled: bool) -> dict:
        """Gaps, duplicates, delivery and convergence of ``streams``, against the reference.

        Gaps, duplicates and final prices are ``None`` unless ``settled``: the market has
        stopped and every stream has had the time to get its last ticks.
        """
        ref = self.reference
        final = self.tape_seq if self.taped else ref.last_seq
        final_prices = self.tape_prices if self.taped else ref.fold()
        # The reference must have seen every tick from its first snapshot on.
        ref_lost = (final - self.ref_from) - len(self.ref_seqs)
        gaps = dups = expected = delivered = converged = snapshots = 0
        conflated_streams = 0
        for stream in streams:
            if stream.start < 0:
                continue
            for after, upto, got in (*stream.segments, (stream.start, final, stream.count)):
                missing = self.expected(stream.symbols, after, upto) - got
                if missing > 0:
                    gaps += missing
                else:
                    dups -= missing
            dups += stream.dups
            wanted = (sum(self.ref_window.values()) if stream.symbols is None
                      else sum(self.ref_window[s] for s in stream.symbols))
            expected += wanted
            delivered += min(stream.in_window, wanted)
            snapshots += stream.window_snapshots
            conflated_streams += stream.window_snapshots > 0
            names = final_prices.keys() if stream.symbols is None else stream.symbols
            prices = stream.fold()
            converged += all(prices.get(s) == final_prices.get(s) for s in names)
        return {
            "ticks_in_window": sum(self.ref_window.values()),
            "expected": expected,
            "delivered": delivered,
            "delivery_ratio": delivered / expected if expected else None,
            "gaps": gaps if settled else None,
            "dups": dups if settled else None,
            "snapshots_in_window": snapshots,
            "conflated_streams": conflated_streams,
            "converged": converged if settled else None,
            "reference_lost": ref_lost,
            "reference_snapshots": ref.snapshots,  # after its first: its record has holes
            "final_seq": final,
            "bodies_parsed": self.bodies.parsed,
        }

    def latency_ms(self) -> dict:
        """p50 and p99 of the sampled latencies and the maximum of all, in milliseconds."""
        total = sum(self.latency.values())
        if not total:
            return {"p50": None, "p99": None, "max": None}
        marks = {"p50": 0.50 * total, "p99": 0.99 * total}
        out, seen = {}, 0
        for value in sorted(self.latency):
            seen += self.latency[value]
            for name, mark in list(marks.items()):
                if seen >= mark:
                    out[name] = value / 10
                    del marks[name]
        out["max"] = self.worst / 10
        return out
