"""The price of the shipped nginx: the same streams direct to gunicorn and through
``deploy/nginx/ticker.conf``, latency (arrival minus the tick's ``ts``) side by side.

One market, one gunicorn and one nginx serve every run; runs alternate direct and proxied,
each a fresh load generator (plain HTTP/1.1: it speaks no TLS, so this is the proxying
alone, not the encryption). Gunicorn (one worker) is pinned to CPU 0; this process, the
market and nginx share CPU 1. Reported: the median over runs of each side's p50, p99 and
max, and nginx's CPU per event, with ``/proc/loadavg``, since the machine is shared.

    python -m bench.proxy                          # 1,000 streams, 3 runs a side, 10 s each
    python -m bench.proxy --streams 100 --runs 1 --window 3
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench import procs
from bench.loadgen import LoadGen
from tests.nginx_proc import run_nginx
from tests.procs import run_simulator
from tests.servers import run_gunicorn

__all__ = ["main", "measure"]

RESULTS = Path(__file__).resolve().parent / "results"


def log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def pin(pids: list[int], cpu: int) -> None:
    if len(os.sched_getaffinity(0)) > 1:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.sched_setaffinity(pid, {cpu})


def measure(*, streams: int, runs: int, window: float, rate: float, symbols: int) -> dict:
    """Alternate direct and proxied runs of ``streams`` streams of every symbol."""
    pin([0], 1)
    sides: dict[str, list[dict]] = {"direct": [], "proxied": []}
    with tempfile.TemporaryDirectory(prefix="bench-proxy-") as tmp, \
            run_simulator(Path(tmp), "--symbols", str(symbols), "--rate", str(rate),
                          "--seed", "1") as market, \
            run_gunicorn(Path(tmp), market.feed, workers=1, env={
                # Behind the proxy every stream comes from 127.0.0.1.
                "TICKER_MAX_STREAMS_PER_CLIENT": str(streams + 100),
                "TICKER_MAX_STREAMS": str(streams + 100)}) as web, \
            run_nginx(Path(tmp), web.port) as proxy:
        pin([web.proc.pid, *web.worker_pids()], 0)
        pin([market.proc.pid, proxy.proc.pid, *proxy.worker_pids()], 1)
        for run in range(runs):
            for side, port in (("direct", web.port), ("proxied", proxy.plain_port)):
                nginx_cpu = sum(map(procs.cpu_seconds, proxy.worker_pids()))
                generator = LoadGen("127.0.0.1", port, streams=streams, symbols=None,
                                    log=log)
                result = generator.run(warmup=2.0, window=window)
                result["nginx_cpu_s"] = sum(map(procs.cpu_seconds, proxy.worker_pids())) \
                    - nginx_cpu
                sides[side].append(result)
                lat = result["latency_ms"]
                log(f"run {run + 1} {side}: {result['opened']} streams, "
                    f"{result['events_per_s']:,.0f} events/s, p50 {lat['p50']} ms, "
                    f"p99 {lat['p99']} ms, max {lat['max']} ms")
        errors = proxy.output().count("[error]") + web.output().count("Traceback")

    def median(side: str, key: str) -> float:
        return round(statistics.median(r["latency_ms"][key] for r in sides[side]), 1)

    proxied = sides["proxied"]
    events = sum(r["events"] for r in proxied)
    return {
        "streams": streams, "runs": runs, "window_s": window, "rate": rate,
        "symbols": symbols, "revision": procs.revision(),
        "loadavg": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
        "errors_in_logs": errors,
        **{f"{side}_{key}_ms": median(side, key) for side in sides
           for key in ("p50", "p99", "max")},
        "events_per_s": statistics.median(r["events_per_s"] for r in proxied),
        "nginx_cpu_us_per_event": sum(r["nginx_cpu_s"] for r in proxied) / events * 1e6
        if events else None,
        "runs_raw": sides,
    }


def report(r: dict) -> str:
    return "\n".join([
        f"{r['streams']:,} streams of every symbol, {r['rate']:g} ticks/s, "
        f"{r['events_per_s']:,.0f} events/s, median of {r['runs']} runs of {r['window_s']:g} s"
        f" (loadavg {r['loadavg']}, revision {r['revision']})",
        "| path | p50 ms | p99 ms | max ms |",
        "|---|---|---|---|",
        *(f"| {side} | {r[f'{side}_p50_ms']} | {r[f'{side}_p99_ms']} | {r[f'{side}_max_ms']} |"
          for side in ("direct", "proxied")),
        f"nginx: {r['nginx_cpu_us_per_event']:.2f} us of CPU per event; "
        f"errors in the logs: {r['errors_in_logs']}",
    ])


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3, help="runs on each side")
    parser.add_argument("--window", type=float, default=10.0, help="seconds measured a run")
    parser.add_argument("--rate", type=float, default=50.0, help="the market's ticks/s")
    parser.add_argument("--symbols", type=int, default=50, help="the market's symbols")
    args = parser.parse_args(argv)
    procs.exit_on_sigterm()
    result = measure(streams=args.streams, runs=args.runs, window=args.window, rate=args.rate,
                     symbols=args.symbols)
    print(report(result))
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / time.strftime("proxy-%Y%m%d-%H%M%S.json")
    path.write_text(json.dumps(result, indent=1))
    log(f"raw results: {path}")
    return result


if __name__ == "__main__":
    main()
