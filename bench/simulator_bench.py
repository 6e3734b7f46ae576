"""How fast the market feed is: ticks/s delivered to each subscriber, and added latency.

Starts the real simulator (pinned to CPU 0 with ``taskset`` when there is one) at a high
rate, then a second copy of this script on CPU 1 that connects the subscribers and reads
them all for a warm-up and then a measured window. Latency is receive time minus the
tick's ``ts``; ``ts`` is whole milliseconds, so every figure carries up to 1 ms of that
rounding. Everything started is stopped by PID; the script ends by itself.

    .venv/bin/python -m bench.simulator_bench --rate 50000 --subscribers 4 --runs 3
    .venv/bin/python -m bench.simulator_bench --rate 20000 --symbols 8000 --runs 3
    .venv/bin/python -m bench.simulator_bench --rate 20000 --symbols 8000 --redis --subscribers 2

With ``--redis`` the market publishes into a redis-server of its own and each subscriber
is a process of its own reading the stream with ``XREAD``, as every ticker worker does.
``starved`` is the share of the time the market was runnable but waiting for a CPU
(``/proc/PID/schedstat``): on a shared machine, what tells a slow market from a starved one.

At full size (``--symbols 8000``) a subscriber's hello and snapshot come in 29 lines
(1.8 MB) before its first tick; the measured window starts after the warm-up, as always.
The run also reports how long the market took to open (universe, model, socket).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import selectors
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

from bench.procs import ROOT, cpu_seconds, free_port, pinned, runqueue_seconds, stop

TICK_PREFIX = b'{"type":"tick"'


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=50_000, help="ticks/s asked of the market")
    parser.add_argument("--symbols", type=int, default=50, help="companies listed")
    parser.add_argument("--subscribers", type=int, default=4)
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds read before measuring")
    parser.add_argument("--window", type=float, default=5.0, help="seconds measured")
    parser.add_argument("--runs", type=int, default=3, help="the median run is reported")
    parser.add_argument("--redis", action="store_true",
                        help="publish into a redis-server; each subscriber reads its stream")
    parser.add_argument("--no-pin", dest="pin", action="store_false",
                        help="no taskset: on a machine busy with other work, a market held to "
                             "one CPU waits while the other may be free")
    parser.add_argument("--subscribe", metavar="PATH", help=argparse.SUPPRESS)
    parser.add_argument("--read-redis", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.subscribe:
        json.dump(subscribe(args.subscribe, args.subscribers, args.warmup, args.window),
                  sys.stdout)
        return
    if args.read_redis:
        json.dump(read_redis(args.read_redis, args.warmup, args.window), sys.stdout)
        return
    load_before = os.getloadavg()[0]
    results = [one_run(args) for _ in range(args.runs)]
    print_table(args, results)
    print(f"load average (1 min) {load_before:.2f} before, {os.getloadavg()[0]:.2f} after: "
          "(other processes on this machine compete for both CPUs)")


def one_run(args: argparse.Namespace) -> dict:
    """Start a market, measure it from the other CPU, stop it; the subscribers' figures."""
    with tempfile.TemporaryDirectory() as tmp, open(os.path.join(tmp, "log"), "w+b") as log, \
            contextlib.ExitStack() as stack:
        if args.redis:
            port = free_port()
            server = subprocess.Popen(
                [shutil.which("redis-server") or "redis-server", "--port", str(port), "--bind",
                 "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", tmp],
                cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            stack.callback(stop, server)
            feed = f"redis://127.0.0.1:{port}/0"
        else:
            feed = f"unix:{os.path.join(tmp, 'feed.sock')}"
        launched = time.monotonic()
        market = subprocess.Popen(
            pinned(0 if args.pin else None, [
                sys.executable, "-m", "simulator", "run", "--feed", feed,
                "--rate", str(args.rate), "--symbols", str(args.symbols), "--seed", "1"]),
            cwd=ROOT, stdout=log, stderr=log,
        )
        try:
            while " market open on " not in read_log(log):
                if market.poll() is not None or time.monotonic() > launched + 30:
                    sys.exit(f"the simulator did not start: {read_log(log)}")
                time.sleep(0.01)
            opened = time.monotonic() - launched
            cpu_before, started = cpu_seconds(market.pid), time.monotonic()
            starved_before = runqueue_seconds(market.pid)
            result = read_feed(args, feed)
            elapsed = time.monotonic() - started
            cpu = (cpu_seconds(market.pid) - cpu_before) / elapsed
            starved = (runqueue_seconds(market.pid) - starved_before) / elapsed
        finally:
            stop(market)
        if result["dropped"] or result["gaps"]:
            print(read_log(log), file=sys.stderr)
    result.update(market_cpu=cpu, market_starved=starved, open_s=opened)
    return result


def read_feed(args: argparse.Namespace, feed: str) -> dict:
    """The subscribers' figures: one reader process on CPU 1 for the socket's subscribers,
    one per subscriber through Redis (each ``XREAD`` as a ticker worker does)."""
    timeout = args.warmup + args.window + 30
    common = ["--warmup", str(args.warmup), "--window", str(args.window)]
    if not args.redis:
        reader = subprocess.run(
            pinned(1 if args.pin else None, [
                sys.executable, "-m", "bench.simulator_bench", "--subscribe",
                feed.removeprefix("unix:"), "--subscribers", str(args.subscribers), *common]),
            capture_output=True, check=True, timeout=timeout)
        return json.loads(reader.stdout)
    readers = [subprocess.Popen(
        pinned(1 if args.pin else None, [
            sys.executable, "-m", "bench.simulator_bench", "--read-redis", feed, *common]),
        stdout=subprocess.PIPE) for _ in range(args.subscribers)]
    results = [json.loads(reader.communicate(timeout=timeout)[0]) for reader in readers]
    return {
        "rates": [rate for result in results for rate in result["rates"]],
        "gaps": sum(result["gaps"] for result in results),
        "dropped": 0,
        "p50": max(result["p50"] for result in results),
        "p99": max(result["p99"] for result in results),
        "max": max(result["max"] for result in results),
        "reader_cpu": sum(result["reader_cpu"] for result in results),
    }


def read_redis(url: str, warmup: float, window: float) -> dict:
    """One reader of the market's Redis stream, from its newest entry on: ticks/s, gaps
    (entry ids are seqs), latency of the oldest tick of each read, counted for all."""
    import redis

    from simulator.redis_feed import TICKS

    client = redis.Redis.from_url(url)
    newest = client.xrevrange(TICKS, count=1)
    last = int(newest[0][0].split(b"-")[0]) if newest else 0
    ticks = gaps = 0
    latencies: list[tuple[float, int]] = []
    start, cpu_start = time.monotonic(), time.process_time()
    measure_from, end = start + warmup, start + warmup + window
    while (now := time.monotonic()) < end:
        reply = client.xread({TICKS: f"{last}-0"}, count=10_000, block=100)
        received_ms = time.time() * 1000
        if not reply:
            continue
        entries = reply[0][1]
        first = int(entries[0][0].split(b"-")[0])
        newest_seq = int(entries[-1][0].split(b"-")[0])
        gaps += first != last + 1 or newest_seq - first + 1 != len(entries)
        last = newest_seq
        if now >= measure_from:
            ticks += len(entries)
            latencies.append((received_ms - ts_and_seq(entries[0][1][b"m"])[0], len(entries)))
    client.close()
    return {"rates": [ticks / window], "gaps": gaps, "p50": percentile(latencies, 0.50),
            "p99": percentile(latencies, 0.99),
            "max": max(latencies)[0] if latencies else float("nan"),
            "reader_cpu": (time.process_time() - cpu_start) / (warmup + window)}


def read_log(log) -> str:
    log.seek(0)
    return log.read().decode(errors="replace")


def subscribe(path: str, count: int, warmup: float, window: float) -> dict:
    """Read ``count`` subscribers; per subscriber: ticks/s, seq gaps; latencies overall.

    Reading must cost far less than writing, or the reader becomes what is measured: a
    received chunk is checked as a whole (its first and last seq, its line count) and its
    oldest tick's latency is counted for every tick in it, an upper bound.
    """
    selector = selectors.DefaultSelector()
    states = []
    for _ in range(count):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(path)
        state = {"sock": sock, "rest": b"", "ticks": 0, "gaps": 0, "seq": None, "closed": False}
        selector.register(sock, selectors.EVENT_READ, state)
        states.append(state)
    latencies: list[tuple[float, int]] = []  # (latency in ms, how many ticks had at most that)
    start = time.monotonic()
    cpu_start = time.process_time()
    measure_from, end = start + warmup, start + warmup + window
    while (now := time.monotonic()) < end:
        for key, _ in selector.select(timeout=0.1):
            state = key.data
            data = state["sock"].recv(1 << 16)  # over 128 KiB, each recv would mmap a buffer
            received_ms = time.time() * 1000
            if not data:
                state["closed"] = True
                selector.unregister(state["sock"])
                continue
            data = state["rest"] + data
            cut = data.rfind(b"\n") + 1
            state["rest"] = data[cut:]
            at = 0 if data.startswith(TICK_PREFIX) else data.find(b"\n" + TICK_PREFIX, 0, cut) + 1
            if not at and not data.startswith(TICK_PREFIX):
                continue  # the hello and snapshot, no tick yet
            ticks = data[at:cut]
            first_ts, first_seq = ts_and_seq(ticks[:ticks.index(b"\n")])
            last_seq = ts_and_seq(ticks[ticks.rfind(b"\n", 0, len(ticks) - 1) + 1:-1])[1]
            lines = ticks.count(b"\n")
            if last_seq - first_seq + 1 != lines or state["seq"] not in (None, first_seq - 1):
                state["gaps"] += 1
            state["seq"] = last_seq
            if now >= measure_from:
                state["ticks"] += lines
                latencies.append((received_ms - first_ts, lines))
    cpu = (time.process_time() - cpu_start) / (warmup + window)
    for state in states:
        state["sock"].close()
    return {
        "rates": [state["ticks"] / window for state in states],
        "gaps": sum(state["gaps"] for state in states),
        "dropped": sum(state["closed"] for state in states),
        "p50": percentile(latencies, 0.50),
        "p99": percentile(latencies, 0.99),
        "max": max(latencies)[0] if latencies else float("nan"),
        "reader_cpu": cpu,
    }


def ts_and_seq(line: bytes) -> tuple[int, int]:
    """A tick line ends with ,"ts":<ms>,"seq":<n>} ; read those two without parsing JSON."""
    at = line.rfind(b',"ts":')
    comma = line.index(b",", at + 6)
    return int(line[at + 6:comma]), int(line[comma + 7:-1])


def percentile(weighted: list[tuple[float, int]], fraction: float) -> float:
    """The value below which ``fraction`` of the weight lies."""
    total = sum(weight for _, weight in weighted)
    seen = 0
    for value, weight in sorted(weighted):
        seen += weight
        if seen >= fraction * total:
            return value
    return float("nan")


def print_table(args: argparse.Namespace, results: list[dict]) -> None:
    print(f"simulator feed: {args.rate:g} ticks/s asked, {args.symbols} symbols, "
          f"{args.subscribers} subscribers {'through redis' if args.redis else 'on its socket'}, "
          f"{args.window:g} s measured after {args.warmup:g} s warm-up, "
          f"taskset {'on' if args.pin and shutil.which('taskset') else 'off'}")
    header = ("run", "min ticks/s", "mean ticks/s", "p50 ms", "p99 ms", "max ms", "gaps",
              "dropped", "market CPU", "starved", "reader CPU", "open s")
    print("  ".join(f"{h:>12}" for h in header))
    rows = []
    for number, result in enumerate(results, 1):
        row = (min(result["rates"]), statistics.mean(result["rates"]), result["p50"],
               result["p99"], result["max"], result["gaps"], result["dropped"],
               result["market_cpu"], result["market_starved"], result["reader_cpu"],
               result["open_s"])
        rows.append(row)
        print(format_row(str(number), row))
    median = tuple(statistics.median(column) for column in zip(*rows, strict=True))
    print(format_row("median", median))


def format_row(label: str, row: tuple) -> str:
    low, mean, p50, p99, worst, gaps, dropped, market_cpu, starved, reader_cpu, opened = row
    cells = (label, f"{low:,.0f}", f"{mean:,.0f}", f"{p50:.2f}", f"{p99:.2f}", f"{worst:.2f}",
             f"{gaps:g}", f"{dropped:g}", f"{market_cpu:.0%}", f"{starved:.0%}",
             f"{reader_cpu:.0%}", f"{opened:.2f}")
    return "  ".join(f"{cell:>12}" for cell in cells)


if __name__ == "__main__":
    main()
