"""Scale-out: the same market through a Unix socket and through Redis Streams, compared.

Two gunicorn instances of two workers each read one market, first straight from its Unix
socket, then through Redis (``XADD`` by the simulator, ``XREAD`` by every worker), at
rising tick rates; a load generator per instance holds a few all-symbol streams on it.
For each transport and rate: ticks/s delivered end to end, the share delivered, and the
latency (receive time minus the tick's ``ts``), so the difference is what Redis adds.
Same machine, same run, same load.

    python -m bench.scaleout --rates 1000,4000,10000 --streams 20 --window 10
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
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


def measure(feed: str, tmp: Path, *, rate: int, streams: int, window: float) -> dict:
    """One transport at one rate: market, 2 instances x 2 workers, a load generator each."""
    market_log = tmp / f"market-{rate}-{time.monotonic_ns()}.log"
    with contextlib.ExitStack() as stack:
        stack.enter_context(process(
            [sys.executable, "-m", "simulator", "run", "--feed", feed, "--symbols", "50",
             "--rate", str(rate), "--seed", "1"], market_log))
        wait_for(lambda: " market open on " in market_log.read_text(), "the market")
        ports = [free_port(), free_port()]
        for port in ports:
            stack.enter_context(process(
                [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--workers", "2",
                 "--bind", f"127.0.0.1:{port}"], tmp / f"gunicorn-{port}.log",
                {"TICKER_FEED": feed}))
        for port in ports:
            wait_for(lambda port=port: healthy(port), f"gunicorn on {port}")
        generators = [
            subprocess.Popen(
                [sys.executable, "-m", "bench.loadgen", f"http://127.0.0.1:{port}",
                 "--streams", str(streams), "--window", str(window), "--json"],
                cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            for port in ports
        ]
        results = []
        for generator in generators:
            out, _ = generator.communicate(timeout=window + 120)
            results.append(json.loads(out))
    return {
        "ticks_per_s": min(r["ticks_in_window"] / r["window_s"] for r in results),
        "events_per_s": sum(r["events_per_s"] for r in results),
        "delivered": min(r["delivery_ratio"] for r in results),
        "snapshots": sum(r["snapshots_in_window"] for r in results),
        "p50_ms": max(r["latency_ms"]["p50"] for r in results),
        "p99_ms": max(r["latency_ms"]["p99"] for r in results),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="1000,4000,10000", help="ticks/s, comma-separated")
    parser.add_argument("--streams", type=int, default=20, help="streams per instance")
    parser.add_argument("--window", type=float, default=10.0)
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
            for rate in (int(r) for r in args.rates.split(",")):
                for name_, feed in (("unix socket", f"unix:{tmp}/feed-{rate}.sock"),
                                    ("redis streams", f"redis://127.0.0.1:{redis_port}/0")):
                    figures = measure(feed, tmp, rate=rate, streams=args.streams,
                                      window=args.window)
                    rows.append((rate, name_, figures))
                    print(f"{rate:>6} ticks/s  {name_:<13}  ticks/s {figures['ticks_per_s']:>8,.0f}"
                          f"  events/s {figures['events_per_s']:>9,.0f}"
                          f"  delivered {figures['delivered']:.4%}"
                          f"  snapshots {figures['snapshots']}"
                          f"  p50 {figures['p50_ms']} ms  p99 {figures['p99_ms']} ms",
                          flush=True)
    results = ROOT / "bench" / "results" / f"scaleout-{time.strftime('%Y%m%d-%H%M%S')}.json"
    results.write_text(json.dumps([{"rate": r, "transport": n, **f} for r, n, f in rows],
                                  indent=1))


if __name__ == "__main__":
    main()
