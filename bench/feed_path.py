"""The worker's feed path, in-process: what one tick costs from the market's bytes to the groups.

A market of ``--symbols`` companies makes ``--ticks`` tick lines exactly as it publishes
them; ``--streams`` watchlists of ``--watch`` symbols each form the groups. Timed apart,
median of ``--runs``: reading the lines into messages (``wire.Decoder``), applying them
to the log (``FeedReader.apply``: check, frame, append) and handing the frames to the
groups (``Subscriptions.add``). ``--general`` reads every line the general way (JSON
decode, ``parse_quote``, JSON encode), as a worker reads a line in any other form.
Beside them, the ceiling's own (``bench/ceiling.py``: frame each tick, hand it to the
groups), which keeps no log: what ticker's log costs a tick is the difference.

Besides, per stream: what catching up costs a watchlist that is a second of ticks behind
(``EventLog.replay`` from a cursor ``--behind`` ticks back, the most the log holds by
default), as a stream that left a write half done does.

    python -m bench.feed_path
    python -m bench.feed_path --general
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from bench.ceiling import Ceiling
from simulator import model, universe, wire
from simulator.pump import tick_line
from ticker.eventlog import EventLog
from ticker.feed import FeedReader
from ticker.subscriptions import Subscriptions

__all__ = ["main", "measure"]

_READ_SIZE = 256 * 1024  # as a worker reads its feed


def measure(*, symbols: int, ticks: int, streams: int, watch: int, general: bool,
            seed: int, behind: int) -> dict[str, float]:
    """Microseconds a tick for each stage, and a stream's catch-up, one run."""
    companies = universe.create(symbols, seed=seed)
    market = model.Market(companies, random.Random(seed), rate=20_000)
    lines = b"".join(tick_line(market.next_tick(1_000 + n)) for n in range(ticks))
    reads = [lines[i:i + _READ_SIZE] for i in range(0, len(lines), _READ_SIZE)]
    log = EventLog(ticks)
    groups = Subscriptions()
    names = [c.symbol for c in companies]
    rng = random.Random(seed)
    watchlists = [frozenset(rng.sample(names, watch)) for _ in range(streams)]
    for key in watchlists:
        groups.join((key, None), log.generation)
    reader = FeedReader("unix:/nonexistent/feed.sock", log, lambda: None)
    reader.apply(wire.hello("bench", 0, [c.listing() for c in companies], 20_000.0))
    reader.apply(wire.snapshot(0, market.quotes))
    decoder = wire.Decoder(ticks=not general)
    started = time.perf_counter()
    messages = [message for data in reads for message in decoder.feed(data)]
    decoded = time.perf_counter()
    for message in messages:
        reader.apply(message)
    applied = time.perf_counter()
    groups.add(log.since(0), 0.0)
    indexed = time.perf_counter()
    if log.head != ticks:
        raise RuntimeError(f"the log holds {log.head} ticks, not {ticks}")
    ceiling = Ceiling("unix:/nonexistent/feed.sock")
    ceiling.epoch = "bench"
    for key in watchlists:
        ceiling.group_of(key)
    fast = wire.Decoder(ticks=True)  # the ceiling reads tick lines as they are
    tick_lines = [message for data in reads for message in fast.feed(data)]
    ticked = time.perf_counter()
    for tick in tick_lines:
        ceiling.tick(tick)
    ceiling_done = time.perf_counter()
    if ceiling.head != ticks:
        raise RuntimeError(f"the ceiling got {ceiling.head} ticks, not {ticks}")
    cursor = max(log.oldest, log.head - behind)
    caught = time.perf_counter()
    for key in watchlists:
        log.replay(cursor, key)
    done = time.perf_counter()
    per_tick = 1e6 / ticks
    return {"decode": (decoded - started) * per_tick, "apply": (applied - decoded) * per_tick,
            "index": (indexed - applied) * per_tick, "total": (indexed - started) * per_tick,
            "the ceiling's apply and index": (ceiling_done - ticked) * per_tick,
            "catch-up a stream": (done - caught) * 1e6 / streams}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=8_000)
    parser.add_argument("--ticks", type=int, default=20_000)
    parser.add_argument("--streams", type=int, default=5_000)
    parser.add_argument("--watch", type=int, default=20, help="symbols per watchlist")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--behind", type=int, default=20_000,
                        help="ticks a catching-up stream is behind (TICKER_LOG_SIZE's default)")
    parser.add_argument("--general", action="store_true",
                        help="read every tick line the general way (JSON)")
    args = parser.parse_args(argv)
    runs = [measure(symbols=args.symbols, ticks=args.ticks, streams=args.streams,
                    watch=args.watch, general=args.general, seed=run + 1,
                    behind=args.behind)
            for run in range(args.runs)]
    path = "general (JSON)" if args.general else "tick lines read as they are"
    figures = "  ".join(f"{stage} {statistics.median(r[stage] for r in runs):.2f}"
                        for stage in runs[0])
    print(f"{path}: us (a tick; the last, a stream), median of {args.runs}: {figures}")


if __name__ == "__main__":
    main()
