"""Market-data delivery: slow readers beside normal streams, ``max_rate``, and their cost.

Three measurements, each on one gunicorn worker pinned to CPU 0 (the market and the
clients on CPU 1), each printing its figures and writing them to ``bench/results/``:

``readers``: a market of 20 symbols at 1,200 ticks/s (about 300 KiB/s on a stream of every
symbol) and 1,000 normal streams (2 of the 20 symbols each, from the load generator),
measured alone and then beside 100 slow readers of every symbol, each reading 16 KiB a
second in 1 KiB sips through a small receive buffer (as over a slow link: the bytes wait at
the sender). For the slow readers: the age of every quote they are shown (arrival time
minus its ``ts``), p95 over each reader's last 8 s before the market stops, and whether
their final prices are the market's (the market's own socket, read by the load generator:
every tick). For the normal streams: p99 latency with and without them, and the worker's
peak RSS.

``rate``: a market of one symbol ticking 20 times a second, streams of it with
``max_rate=2``: prices a second, the shortest and longest interval between two, and how
long a price injected into the market (``simulator inject``) took to be shown.

``compare``: workloads B and X (``bench.run``) on ticker as it is and on another checkout
(``--base``, e.g. a ``git worktree`` of the commit before the delivery changes),
alternated, median of ``--runs``.

    python -m bench.slow readers
    python -m bench.slow rate
    git worktree add /tmp/ticker-base 4851d7c~1
    python -m bench.slow compare --base /tmp/ticker-base
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import select
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import procs
from bench.framing import ProtocolError, ResponseReader
from bench.loadgen import LoadGen, raise_nofile
from bench.profile import Profiler
from bench.run import RESULTS, WORKLOADS, log, measure, median_of

__all__ = ["main", "parse_frames", "percentile"]

_SIP = 1024  # bytes a slow reader takes at a time
_LAST_S = 8.0  # the slow readers' ages are judged over their last seconds before the stop


def percentile(values: list[float], share: float) -> float | None:
    """The ``share`` percentile (nearest rank) of ``values``; None if there are none."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(share * len(ordered)) - 1))]


def parse_frames(body: bytes) -> list[tuple[str, dict | None]]:
    """Whole SSE frames as (event type, JSON data); comments and ``retry`` as ("", None)."""
    events = []
    for frame in body.split(b"\n\n"):
        kind, data = "", None
        for line in frame.split(b"\n"):
            if line.startswith(b"event: "):
                kind = line[7:].decode()
            elif line.startswith(b"data: "):
                data = json.loads(line[6:])
        if frame:
            events.append((kind, data))
    return events


# Slow readers --------------------------------------------------------------------------

class _SlowReader:
    """One client on a slow link: its socket, what it was shown, and when."""

    def __init__(self, port: int, number: int, path: bytes, buffer: int) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, buffer)  # before connect
        self.sock.bind((f"127.0.2.{number % 250 + 2}", 0))
        self.sock.connect(("127.0.0.1", port))
        self.sock.sendall(b"GET %s HTTP/1.1\r\nHost: slow\r\n\r\n" % path)
        self.sock.setblocking(False)
        self.reader = ResponseReader()
        self.ages: list[tuple[float, float]] = []  # (arrival, age in ms) of every quote shown
        self.prices: dict[str, float] = {}
        self.lagging = self.skipped = self.received = 0
        self.down = False
        self.error = ""

    def sip(self, size: int) -> None:
        try:
            data = self.sock.recv(size)
        except BlockingIOError:
            return
        except OSError as exc:
            self.error = exc.strerror or str(exc)
            return
        if not data:
            self.error = "closed by the server"
            return
        self.received += len(data)
        try:
            body = self.reader.feed(data)
        except ProtocolError as exc:
            self.error = str(exc)
            return
        now = time.time()
        for kind, data in parse_frames(body):
            if kind == "price":
                quotes = [data]
            elif kind == "snapshot":
                quotes = data["quotes"]
                if data.get("reason") == "lagging":
                    self.lagging += 1
                    self.skipped += data.get("skipped", 0)
            else:
                if kind == "status":
                    self.down = data["feed"] == "down"
                continue
            for quote in quotes:
                self.ages.append((now, now * 1000 - quote["ts"]))
                self.prices[quote["symbol"]] = quote["price"]

    def figures(self, stopped: float) -> dict:
        recent = [age for at, age in self.ages if stopped - _LAST_S <= at < stopped]
        return {"p95_age_ms": percentile(recent, 0.95), "shown": len(self.ages),
                "lagging_snapshots": self.lagging, "skipped": self.skipped,
                "bytes": self.received, "down": self.down, "error": self.error,
                "prices": self.prices}


def read_slowly(port: int, count: int, bytes_per_s: int, buffer: int, stopped, out) -> None:
    """``count`` slow readers of every symbol until each has been told the feed is down
    (the market stopped at ``stopped.value``, set by the parent) or a minute after that."""
    with contextlib.suppress(OSError):
        os.sched_setaffinity(0, {1})
    raise_nofile(count + 64)
    readers = [_SlowReader(port, n, b"/stream", buffer) for n in range(count)]
    period = _SIP / bytes_per_s
    tick = time.monotonic()
    while True:
        for reader in readers:
            if not (reader.error or reader.down):
                reader.sip(_SIP)
        if stopped.value and (all(r.down or r.error for r in readers)
                              or time.time() > stopped.value + 60):
            break
        tick += period
        time.sleep(max(0.0, tick - time.monotonic()))
    out.put([reader.figures(stopped.value) for reader in readers])
    for reader in readers:
        reader.sock.close()


def readers_run(*, normal: int, symbols: int, slow: int, universe: int, rate: float,
                window: float, bytes_per_s: int, buffer: int, seed: int,
                profile: Path | None = None) -> dict:
    """One run: ``normal`` streams measured, beside ``slow`` slow readers (0: alone);
    with ``profile``, py-spy records the worker during the window into that file."""
    context = multiprocessing.get_context("fork")
    with tempfile.TemporaryDirectory(prefix="ticker-slow-") as name:
        tmp = Path(name)
        with procs.market(tmp, symbols=universe, rate=rate, seed=seed, cpu=1) as market, \
                procs.server("ticker", tmp, market.feed, streams=normal + slow, cpu=0) as srv:
            [worker] = srv.workers
            idle_kb = procs.memory_kb(worker, "VmRSS")
            stopped, out = context.Value("d", 0.0), context.Queue()
            child = None
            if slow:
                child = context.Process(target=read_slowly, daemon=True, args=(
                    srv.port, slow, bytes_per_s, buffer, stopped, out))
                child.start()
            try:
                def stop_market() -> None:
                    stopped.value = time.time()
                    market.stop()

                generator = LoadGen("127.0.0.1", srv.port, streams=normal, symbols=symbols,
                                    seed=seed, log=lambda line: None,
                                    tape=market.feed.removeprefix("unix:"))
                marks: dict[str, tuple[float, float]] = {}
                profiler = None

                def on_window(edge: str) -> None:
                    nonlocal profiler
                    marks[edge] = (time.monotonic(), procs.cpu_seconds(worker))
                    if edge == "start" and profile is not None:
                        profiler = Profiler(worker, profile, window, cpu=1)

                load = procs.loadavg()
                result = generator.run(warmup=5.0, window=window, stop_market=stop_market,
                                       settle=15.0, on_window=on_window)
                result["loadavg_start"] = load
                result["profile"] = str(profiler.finish()) if profiler else None
                (t0, cpu0), (t1, cpu1) = marks["start"], marks["end"]
                result["server_core"] = (cpu1 - cpu0) / (t1 - t0)
                result["server_idle_kb"] = idle_kb
                result["server_peak_kb"] = procs.memory_kb(worker, "VmHWM")
                final = {s.decode(): float(p) for s, p in generator.tally.tape_prices.items()}
                readers = out.get(timeout=90) if child else []
            finally:
                if child:
                    child.join(10)
                    if child.is_alive():
                        child.kill()
                        child.join()
    ages = [r["p95_age_ms"] for r in readers if r["p95_age_ms"] is not None]
    result["slow"] = {
        "readers": slow,
        "p95_age_ms_median": statistics.median(ages) if ages else None,
        "p95_age_ms_worst": max(ages) if ages else None,
        "with_ages": len(ages),
        "converged": sum(r["prices"] == final for r in readers),
        "told_down": sum(r["down"] for r in readers),
        "errors": sorted({r["error"] for r in readers if r["error"]})[:5],
        "lagging_snapshots": sum(r["lagging_snapshots"] for r in readers),
        "skipped": sum(r["skipped"] for r in readers),
        "read_bytes_per_s": statistics.median(r["bytes"] for r in readers) / (
            window + 5) if readers else None,
    }
    return result


def readers_main(args: argparse.Namespace) -> dict:
    rows: dict[str, list[dict]] = {"alone": [], "slow": []}
    for number in range(1, args.runs + 1):
        for label, slow in (("alone", 0), ("slow", args.slow)):
            log(f"readers: {label}, run {number} of {args.runs}")
            rows[label].append(readers_run(
                normal=args.normal, symbols=args.normal_symbols, slow=slow,
                universe=args.universe, rate=args.rate, window=args.window,
                bytes_per_s=args.read_bytes, buffer=args.buffer, seed=number,
                profile=RESULTS / time.strftime(f"profile-slow-{label}-%H%M%S.txt")
                if args.profile and number == 1 else None))
    medians = {label: median_of(runs) for label, runs in rows.items()}
    _save("readers-runs", {"runs": rows, "median": medians})
    for label, m in medians.items():
        lat = m["latency_ms"]
        print(f"{label:<6} normal: {m['opened']:,.0f} streams, {m['events_per_s']:,.0f} "
              f"events/s, delivered {m['delivery_ratio']}, p50 {lat['p50']} ms, p99 "
              f"{lat['p99']} ms; worker {m['server_core']:.0%} of its core, peak RSS "
              f"{m['server_peak_kb'] / 1024:.1f} MiB; "
              f"load {m['loadavg_start']:.1f}")
    for number, run in enumerate(rows["slow"], 1):
        s = run["slow"]
        print(f"slow readers, run {number}: p95 age (median of readers) "
              f"{s['p95_age_ms_median']} ms, worst reader {s['p95_age_ms_worst']} ms; "
              f"final prices = market's: {s['converged']} of {s['readers']}; told the feed "
              f"was down: {s['told_down']}; lagging snapshots {s['lagging_snapshots']} "
              f"({s['skipped']:,} ticks skipped); read {s['read_bytes_per_s']:,.0f} B/s each; "
              f"errors {s['errors']}")
    alone, slow = medians["alone"], medians["slow"]
    if alone["latency_ms"]["p99"] and slow["latency_ms"]["p99"]:
        print(f"normal p99 with slow readers / alone: "
              f"{slow['latency_ms']['p99'] / alone['latency_ms']['p99']:.2f}")
    print(f"worker peak RSS with slow readers / alone: "
          f"{slow['server_peak_kb'] / alone['server_peak_kb']:.2f}")
    return {"runs": rows, "median": medians}


# max_rate -------------------------------------------------------------------------------

def rate_main(args: argparse.Namespace) -> dict:
    """Streams of one symbol ticking ``--ticks`` a second, with ``max_rate``."""
    with tempfile.TemporaryDirectory(prefix="ticker-rate-") as name:
        tmp = Path(name)
        with procs.market(tmp, symbols=1, rate=args.ticks, seed=1, cpu=1) as market, \
                procs.server("ticker", tmp, market.feed, streams=args.streams, cpu=0) as srv:
            symbol = json.loads(srv.get("/api/symbols")[1])[0]["symbol"]
            path = f"/stream/{symbol}?max_rate={args.max_rate:g}"
            with contextlib.ExitStack() as sockets:
                socks = [sockets.enter_context(socket.create_connection(("127.0.0.1", srv.port)))
                         for _ in range(args.streams)]
                readers = {sock: ResponseReader() for sock in socks}
                shown = {sock: [] for sock in socks}  # (arrival, seq) of every price
                for sock in socks:
                    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: rate\r\n\r\n".encode())
                injected = []  # the market's quotes of the injected prices
                injecting = None  # the inject command running now, without blocking the reads
                started = time.time()
                every = args.duration / (args.injections + 1)
                while time.time() < started + args.duration:
                    for sock in select.select(socks, [], [], 0.01)[0]:
                        body = readers[sock].feed(sock.recv(65536))
                        now = time.time()
                        shown[sock] += [(now, data["seq"]) for kind, data in parse_frames(body)
                                        if kind == "price"]
                    if injecting is not None and injecting.poll() is not None:
                        injected.append(json.loads(injecting.communicate()[0]))
                        injecting = None
                    elif injecting is None and time.time() >= started + every * (
                            len(injected) + 1) and len(injected) < args.injections:
                        injecting = subprocess.Popen(
                            [sys.executable, "-m", "simulator", "inject", symbol,
                             f"{4321.5 + len(injected):g}", "--feed", market.feed],
                            stdout=subprocess.PIPE, text=True, cwd=procs.ROOT)
                if injecting is not None:
                    injecting.communicate()
    per_second, gaps, delays = [], [], []
    for arrivals in shown.values():
        times = [at for at, _ in arrivals if at >= started + 2]  # after the first snapshot
        if len(times) > 1:
            per_second.append((len(times) - 1) / (times[-1] - times[0]))
            gaps += [b - a for a, b in zip(times, times[1:], strict=False)]
        for quote in injected:
            first = next((at for at, seq in arrivals if seq >= quote["seq"]), None)
            delays.append(None if first is None else first - quote["ts"] / 1000)
    figures = {
        "symbol": symbol, "ticks_per_s": args.ticks, "max_rate": args.max_rate,
        "streams": args.streams, "duration_s": args.duration,
        "prices_per_s": [min(per_second), statistics.median(per_second), max(per_second)]
        if per_second else None,
        "interval_s": [min(gaps), statistics.median(gaps), max(gaps)] if gaps else None,
        "within_0_4_s": sum(g < 0.4 for g in gaps),
        "injected": len(injected),
        "inject_shown_s": [None if d is None else round(d, 3) for d in delays],
    }
    print(json.dumps(figures, indent=1))
    return figures


# B and X before and after -------------------------------------------------------------

def compare_main(args: argparse.Namespace) -> dict:
    """B and X on ticker here and on ``--base``, alternated run by run."""
    roots = {"here": procs.ROOT, "base": args.base.resolve()}
    report = {}
    for name in args.workloads.split(","):
        work = WORKLOADS[name]
        runs: dict[str, list[dict]] = {label: [] for label in roots}
        for number in range(1, args.runs + 1):
            for label, root in roots.items():
                log(f"{name}: ticker {label} ({procs.revision(root)}), run {number}")
                with tempfile.TemporaryDirectory(prefix="ticker-compare-") as tmp:
                    runs[label].append(measure("ticker", work, Path(tmp), seed=number,
                                               warmup=2.0, root=root))
        report[name] = {label: median_of(r) for label, r in runs.items()}
        for label, m in report[name].items():
            lat = m["latency_ms"]
            print(f"{name} {label:<5} {m['revision']}: {m['events_per_s']:,.0f} events/s, "
                  f"delivered {m['delivery_ratio']}, snapshots {m['snapshots_in_window']}, "
                  f"p50 {lat['p50']} ms, p99 {lat['p99']} ms, {m['server_cpu_us_per_event']} "
                  f"us CPU/event, {m['server_kb_per_stream']:.1f} KB/stream, load "
                  f"{m['loadavg_start']:.1f}", flush=True)
        _save("compare-runs", report)
    return report


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parts = parser.add_subparsers(dest="part", required=True)
    readers = parts.add_parser("readers", help="slow readers beside normal streams")
    readers.add_argument("--normal", type=int, default=1000, help="normal streams")
    readers.add_argument("--normal-symbols", type=int, default=2, help="symbols per normal one")
    readers.add_argument("--slow", type=int, default=100, help="slow readers (every symbol)")
    readers.add_argument("--universe", type=int, default=20, help="symbols in the market")
    readers.add_argument("--rate", type=float, default=1200, help="the market's ticks/s")
    readers.add_argument("--read-bytes", type=int, default=16 * 1024,
                         help="bytes a second each slow reader takes")
    readers.add_argument("--buffer", type=int, default=16 * 1024,
                         help="each slow reader's receive buffer (SO_RCVBUF)")
    readers.add_argument("--window", type=float, default=20.0)
    readers.add_argument("--runs", type=int, default=1)
    readers.add_argument("--profile", action="store_true",
                         help="py-spy record the worker during the first run's windows")
    rate = parts.add_parser("rate", help="max_rate on a busy symbol")
    rate.add_argument("--ticks", type=float, default=20, help="the symbol's ticks a second")
    rate.add_argument("--max-rate", type=float, default=2)
    rate.add_argument("--streams", type=int, default=10)
    rate.add_argument("--duration", type=float, default=20.0)
    rate.add_argument("--injections", type=int, default=4)
    compare = parts.add_parser("compare", help="B and X here and on another checkout")
    compare.add_argument("--base", type=Path, required=True, help="the other checkout")
    compare.add_argument("--workloads", default="B,X")
    compare.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    procs.exit_on_sigterm()
    if len(os.sched_getaffinity(0)) > 1:
        os.sched_setaffinity(0, {1})
    figures = {"readers": readers_main, "rate": rate_main, "compare": compare_main}[args.part](
        args)
    _save(args.part, {"args": {k: str(v) for k, v in vars(args).items()}, "figures": figures})
    return figures


def _save(part: str, figures: dict) -> None:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / time.strftime(f"slow-{part}-%Y%m%d-%H%M%S.json")
    path.write_text(json.dumps(figures, indent=1, default=str))
    log(f"raw results: {path}")


if __name__ == "__main__":
    main()
