"""What the market's replay costs in memory per tick kept (docs/feed-protocol.md quotes it).

Fills a ``Replay`` the way the feed does (the model's ticks, encoded once by ``tick_line``,
one batch per pump wake) and measures with tracemalloc what stays allocated: the tick
lines it keeps alive, the deque slots and the time stamps.

    .venv/bin/python -m bench.replay_memory
"""

from __future__ import annotations

import argparse
import random
import tracemalloc

from simulator import universe
from simulator.exchange import Exchange
from simulator.model import Market
from simulator.replay import Replay

TS = 1_796_000_000_000


def bytes_per_tick(ticks: int, batch: int, symbols: int) -> float:
    companies = universe.create(symbols, seed=1)
    market = Market(companies, random.Random(1), ts=TS)
    exchange = Exchange(market, companies, Replay(ticks, 10**12))
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for wake in range(ticks // batch):
        ts = TS + wake * 2  # a new int each wake, as time.time_ns() // 1_000_000 makes
        exchange.record([market.next_tick(ts) for _ in range(batch)])
    # What the model holds is not the replay's: the latest quote of each symbol.
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return held / len(exchange.replay)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=50_000)
    parser.add_argument("--symbols", type=int, default=50)
    args = parser.parse_args()
    for batch in (1, 100):
        per_tick = bytes_per_tick(args.ticks, batch, args.symbols)
        print(f"{args.ticks} ticks, {batch} per batch: {per_tick:.0f} bytes per tick, "
              f"{per_tick * args.ticks / 2**20:.1f} MiB in all")


if __name__ == "__main__":
    main()
