"""Scale-out: the same market through a Unix socket and through Redis Streams, compared.

Two gunicorn instances of two workers each (``--workers``) read one market, first
straight from its Unix socket, then through Redis (``XADD`` by the simulator, ``XREAD`` by
every worker), at rising tick rates; a load generator per instance holds a few
all-symbol streams on it. For each transport and rate: ticks/s delivered end to end, the
share delivered, and the latency (receive time minus the tick's ``ts``), so the
difference is what Redis adds.
Same machine, same run, same load.

    python -m bench.scaleout --rates 1000,4000,10000 --streams 20 --window 10
    python -m bench.scaleout --rates 20000 --symbols 8000 --stream-symbols 20 --runs 3

``--symbols`` sizes the market; ``--stream-symbols K`` gives each stream K symbols drawn
at random instead of all (every load generator also holds one all-symbol reference
stream, which checks that every tick arrived). ``--runs`` repeats each measurement and
reports the median of each figure, with ``/proc/loadavg`` beside it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from bench.procs import ROOT, exit_on_sigterm, free_port, stop

__all__ = ["main"]


@contextlib.contextmanager
def process(command: list[str], log: Path, env: dict[str, str] | None = None) -> Iterator[
        subprocess.Popen]:
    """A process logging to ``log``, stopped by PID (SIGTERM, then SIGKILL) at the end."""
    environment = {k: v for k, v in os.environ.items()
                   if k not in ("PROMETHEUS_MULTIPROC_DIR", "WEB_CONCURRENCY", "TICKER_FEED")}
    with open(log, "ab") as out:
        proc = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                env={**environment, **(env or {})})
    try:
        yield proc
    finally:
        stop(proc)


def wait_for(check, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if check():
                return
        time.sleep(0.1)
    raise TimeoutError(f"{what} not ready in {timeout} s")


def healthy(port: int) -> bool:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as answer:
        return answer.status == 200


def measure(feed: str, tmp: Path, *, rate: int, streams: int, window: float, symbols: int,
            stream_symbols: str, workers: int) -> dict:
    """One transport at one rate: market, 2 instances x 2 workers, a load generator each."""
    market_log = tmp / f"market-{rate}-{time.monotonic_ns()}.log"
    with contextlib.ExitStack() as stack:
        stack.enter_context(process(
            [sys.executable, "-m", "simulator", "run", "--feed", feed, "--symbols", str(symbols),
             "--rate", str(rate), "--seed", "1"], market_log))
        wait_for(lambda: " market open on " in market_log.read_text(), "the market")
        ports = [free_port(), free_port()]
        for port in ports:
            stack.enter_context(process(
                [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py",
                 "--workers", str(workers),
                 "--bind", f"127.0.0.1:{port}"], tmp / f"gunicorn-{port}.log",
                {"TICKER_FEED": feed}))
        for port in ports:
            wait_for(lambda port=port: healthy(port), f"gunicorn on {port}")
        generators = [
            subprocess.Popen(
                [sys.executable, "-m", "bench.loadgen", f"http://127.0.0.1:{port}",
                 "--streams", str(streams), "--symbols", stream_symbols,
                 "--window", str(window), "--json"],
                cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            for port in ports
        ]
        results = []
        for generator in generators:
            out, _ = generator.communicate(timeout=window + 120)
            results.append(json.loads(out))
    return {
        "loadavg": Path("/proc/loadavg").read_text().split()[0],
        "ticks_per_s": min(r["ticks_in_window"] / r["window_s"] for r in results),
        "events_per_s": sum(r["events_per_s"] for r in results),
        # None: a reference stream got no tick in the window (its instance fell behind).
        "delivered": least(r["delivery_ratio"] for r in results),
        "snapshots": sum(r["snapshots_in_window"] for r in results),
        "p50_ms": max(r["latency_ms"]["p50"] for r in results),
        "p99_ms": max(r["latency_ms"]["p99"] for r in results),
    }


def least(values) -> float | None:
    """The smallest of ``values``, or None if any is None."""
    values = list(values)
    return None if None in values else min(values)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="1000,4000,10000", help="ticks/s, comma-separated")
    parser.add_argument("--streams", type=int, default=20, help="streams per instance")
    parser.add_argument("--window", type=float, default=10.0)
    parser.add_argument("--symbols", type=int, default=50, help="companies in the market")
    parser.add_argument("--stream-symbols", default="all", metavar="all|K",
                        help="symbols per stream: every one, or K chosen at random")
    parser.add_argument("--transports", default="unix,redis", help="comma-separated")
    parser.add_argument("--runs", type=int, default=1, help="the median of each figure")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers per instance")
    args = parser.parse_args(argv)
    exit_on_sigterm()
    redis_server = shutil.which("redis-server")
    if redis_server is None:
        raise SystemExit("redis-server is needed: apt-get install redis-server")
    rows = []
    with tempfile.TemporaryDirectory(prefix="ticker-scaleout-") as name:
        tmp = Path(name)
        redis_port = free_port()
        with process([redis_server, "--port", str(redis_port), "--bind", "127.0.0.1",
                      "--save", "", "--appendonly", "no", "--dir", name],
                     tmp / "redis.log"):
            transports = {"unix": ("unix socket", f"unix:{tmp}/feed.sock"),
                          "redis": ("redis streams", f"redis://127.0.0.1:{redis_port}/0")}
            for rate in (int(r) for r in args.rates.split(",")):
                for name_, feed in (transports[t] for t in args.transports.split(",")):
                    runs = []
                    for _ in range(args.runs):
                        runs.append(measure(feed, tmp, rate=rate, streams=args.streams,
                                            window=args.window, symbols=args.symbols,
                                            stream_symbols=args.stream_symbols,
                                            workers=args.workers))
                        print(line(rate, name_, runs[-1]), flush=True)
                    figures = {key: median([run[key] for run in runs]) for key in runs[0]}
                    rows.append((rate, name_, {**figures, "runs": runs}))
                    if args.runs > 1:
                        print(line(rate, name_, figures, "median"), flush=True)
    results = ROOT / "bench" / "results" / f"scaleout-{time.strftime('%Y%m%d-%H%M%S')}.json"
    results.write_text(json.dumps([{"rate": r, "transport": n, **f} for r, n, f in rows],
                                  indent=1))


def median(values: list):
    """The median of numbers; None if any is None; text joined as it is."""
    if isinstance(values[0], str):
        return " ".join(values)
    return None if None in values else statistics.median(values)


def line(rate: int, transport: str, figures: dict, label: str = "") -> str:
    delivered = figures["delivered"]
    return (f"{rate:>6} ticks/s  {transport:<13} {label:>6}"
            f"  ticks/s {figures['ticks_per_s']:>8,.0f}"
            f"  events/s {figures['events_per_s']:>9,.0f}"
            f"  delivered {'n/a' if delivered is None else f'{delivered:.4%}'}"
            f"  snapshots {figures['snapshots']:g}"
            f"  p50 {figures['p50_ms']} ms  p99 {figures['p99_ms']} ms"
            f"  loadavg {figures['loadavg']}")


if __name__ == "__main__":
    main()
