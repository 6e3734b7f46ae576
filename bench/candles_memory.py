"""What the market's one-minute candles cost in memory (docs/feed-protocol.md quotes it).

For 8,000 symbols, measured with tracemalloc (what stays allocated: the per-symbol series,
their packed arrays and current minute):

- an hour of a busy market: at 20,000 ticks/s each symbol trades some 150 times a minute,
  so it has a candle for every minute; the fill gives each symbol a few ticks in each of
  60 minutes, which makes the same candles in a fraction of the time;
- a whole day of minutes, the bound: every symbol trades in every minute for 24 hours and
  then some, after which each holds its 1,440 candles and no more.

And what ``Candles.add`` costs per tick at 20,000 ticks/s, in batches of 40 (one pump wake
every 2 ms), each tick for a symbol drawn at random (timed without tracemalloc).

    .venv/bin/python -m bench.candles_memory               # a few minutes
    .venv/bin/python -m bench.candles_memory --symbols 800 # a tenth of that
"""

from __future__ import annotations

import argparse
import random
import time
import tracemalloc

from simulator.candles import INTERVAL_MS, KEPT_MINUTES, Candles

T0 = 1_796_000_000_000 // INTERVAL_MS * INTERVAL_MS
BATCH_MS = 2


def symbols_of(count: int) -> list[str]:
    return [f"S{n:05d}" for n in range(count)]


def quotes_of(symbols: list[str], rng: random.Random) -> list[dict]:
    return [{"symbol": s, "price": round(rng.uniform(5, 500), 2), "size": 100, "ts": 0}
            for s in symbols]


def held_after(symbols: list[str], minutes: int, ticks_per_minute: int) -> tuple[int, int]:
    """Bytes held and candles kept once every symbol has traded ``ticks_per_minute`` times
    in each of ``minutes`` minutes."""
    quotes = quotes_of(symbols, random.Random(1))
    opening = [quote["price"] for quote in quotes]
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    candles = Candles(symbols)
    for minute in range(minutes):
        for k in range(ticks_per_minute):
            ts = T0 + minute * INTERVAL_MS + k * 1000
            move = 1 + (k % 3 - 1) / 1000  # a price of its own, as a tick's is
            for quote, price in zip(quotes, opening, strict=True):
                quote["price"] = round(price * move, 2)
                quote["ts"] = ts
            candles.add(quotes)
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return held, sum(len(candles.rows(s)) for s in symbols)


def add_cost(symbols: list[str], rate: int, seconds: int) -> float:
    """Seconds ``add`` takes per tick at ``rate`` ticks/s over ``seconds`` of market."""
    rng = random.Random(2)
    quotes = quotes_of(symbols, rng)
    per_batch = rate * BATCH_MS // 1000
    candles = Candles(symbols)
    spent = 0.0
    for wake in range(seconds * 1000 // BATCH_MS):
        batch = rng.choices(quotes, k=per_batch)
        for quote in batch:
            quote["price"] = max(0.01, round(quote["price"] * (1 + rng.gauss(0, 0.001)), 2))
            quote["ts"] = T0 + wake * BATCH_MS
        started = time.perf_counter()
        candles.add(batch)
        spent += time.perf_counter() - started
    return spent / (per_batch * (seconds * 1000 // BATCH_MS))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=8_000)
    parser.add_argument("--rate", type=int, default=20_000, help="ticks per second")
    parser.add_argument("--seconds", type=int, default=30, help="of market timed")
    args = parser.parse_args()
    symbols = symbols_of(args.symbols)
    for label, minutes, ticks in (("an hour", 60, 3), ("a day", KEPT_MINUTES + 60, 1)):
        held, kept = held_after(symbols, minutes, ticks)
        print(f"{args.symbols} symbols trading every minute for {label}: {kept} candles, "
              f"{held / 2**20:.1f} MiB ({held / kept:.1f} bytes a candle)")
    per_tick = add_cost(symbols, args.rate, args.seconds)
    print(f"add at {args.rate} ticks/s over {args.seconds} s: {per_tick * 1e9:.0f} ns a tick, "
          f"{per_tick * args.rate * 100:.1f}% of a core")


if __name__ == "__main__":
    main()
