"""What one write of a pass costs, ticker's sweeper against the ceiling's, in one process.

At saturation a workload's p99 is about one pass, and a pass is the streams with
something to receive times the cost of one write; end to end, on a shared machine, that
varies by a fifth from one run to the next. Here the two sweepers serve the same
subscriptions over Unix socketpairs in one process, their passes interleaved (the same
ticks, the same machine, the same moment), and each pass's CPU time
(``time.process_time``) is divided by the streams it wrote. A socketpair's ``send`` costs
less than one on TCP, so the Python around each write weighs more here than in a real
run: a difference here is an upper bound of the one there.

    python -m bench.sweep_cost                          # S's shape: 5 of 100 symbols
    python -m bench.sweep_cost --symbols 0 --ticks 30   # B's: every symbol
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from gevent import socket

from bench.ceiling import Ceiling
from bench.loadgen import raise_nofile
from simulator import model
from simulator import universe as listings
from simulator.wire import Tick
from ticker import admission, turns
from ticker.eventlog import EventLog
from ticker.fanout import Fanout

__all__ = ["main", "measure"]

_EPOCH = "bench"


def _drain(peers: list[socket.socket]) -> int:
    """Read what every peer was sent; how many bytes."""
    total = 0
    for peer in peers:
        try:
            while data := peer.recv(1 << 20):
                total += len(data)
        except BlockingIOError:
            pass
    return total


def measure(*, streams: int, symbols: int, universe: int, ticks: int, passes: int,
            seed: int) -> dict[str, float]:
    """Median CPU microseconds a stream a pass, for ticker and the ceiling, on the
    simulator's market (its activity by symbol).

    Raises:
        RuntimeError: the two did not write the same bytes in a pass (the same frames,
            chunked the same way): they did not do the same work.
    """
    companies = listings.create(universe, seed=seed)
    market = model.Market(companies, random.Random(seed), rate=1_000)
    names = [company.symbol for company in companies]
    rng = random.Random(seed)
    keys = [None if not symbols else frozenset(rng.sample(names, symbols))
            for _ in range(streams)]
    log = EventLog(max(100_000, ticks * 4))
    log.reset(_EPOCH, 0, [company.listing() for company in companies], market.quotes,
              rate=1_000.0)
    log.feed_up = True
    fanout = Fanout(log, max_streams=streams, max_streams_per_client=streams, heartbeat_s=10,
                    retry_ms=2_000, flush_ms=2, stall_s=30, catch_up_bytes=1 << 20)
    ceiling = Ceiling("unix:/nonexistent/feed.sock")
    ceiling.epoch = _EPOCH
    peers: dict[str, list[socket.socket]] = {"ticker": [], "ceiling": []}
    owned = []
    for key in keys:
        for kind in peers:
            server, peer = socket.socketpair()
            server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
            peer.setblocking(False)
            peers[kind].append(peer)
            owned += [server, peer]
            if kind == "ceiling":
                ceiling.join(server, key, b"")
                continue
            stream = fanout.open(server, "bench", key)
            stream.begin(admission.start(log, key, None, fanout.retry_frame), True)
            fanout.arm(stream, chunked=True)
            # the fan-out keeps its kernel buffer small: the ceiling's socket has the same
            stream.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    try:
        fanout.sweep(time.monotonic())
        ceiling.sweep_once(time.monotonic())
        for kind in peers:
            _drain(peers[kind])
        costs: dict[str, list[float]] = {"ticker": [], "ceiling": []}
        for number in range(passes):
            written = {}
            quotes = [market.next_tick(1_000 * (number + 1)) for _ in range(ticks)]
            for kind in (("ticker", "ceiling") if number % 2 else ("ceiling", "ticker")):
                for quote in quotes:
                    tick = Tick.of(quote)
                    if kind == "ticker":
                        log.append(tick)
                    else:
                        ceiling.tick(tick)
                if kind == "ticker":
                    fanout.wake()
                started = time.process_time()
                if kind == "ticker":
                    fanout.sweep(time.monotonic(), give_way=turns.poll_once)
                else:
                    ceiling.sweep_once(time.monotonic())
                costs[kind].append(time.process_time() - started)
                written[kind] = _drain(peers[kind])
            if written["ticker"] != written["ceiling"]:
                raise RuntimeError(f"pass {number}: ticker wrote {written['ticker']} bytes, "
                                   f"the ceiling {written['ceiling']}")
        return {kind: statistics.median(values) / streams * 1e6
                for kind, values in costs.items()}
    finally:
        for sock in owned:
            sock.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=2_000)
    parser.add_argument("--symbols", type=int, default=5,
                        help="symbols a stream, drawn at random (0: every symbol)")
    parser.add_argument("--universe", type=int, default=100, help="symbols in the market")
    parser.add_argument("--ticks", type=int, default=300, help="ticks before each pass")
    parser.add_argument("--passes", type=int, default=50)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    raise_nofile(4 * args.streams + 64)
    runs = [measure(streams=args.streams, symbols=args.symbols, universe=args.universe,
                    ticks=args.ticks, passes=args.passes, seed=run + 1)
            for run in range(args.runs)]
    for run in runs:
        print(f"ticker {run['ticker']:.2f} us a stream, ceiling {run['ceiling']:.2f}: "
              f"{run['ticker'] / run['ceiling']:.3f}x")
    ratio = statistics.median(run["ticker"] / run["ceiling"] for run in runs)
    print(f"median of {args.runs}: ticker {ratio:.3f}x the ceiling's CPU a stream a pass")


if __name__ == "__main__":
    main()
