"""Latency apart from the load generator: a compiled reader on a workload's streams.

The load generator (``bench/loadgen.py``) checks every event against the market, and at
half a million events a second and more it needs its whole core: an event can wait in
its socket for as long as the generator takes to come round, so its p99 is the server's
and the tool's together. ``bench/reader.c`` does the least a reader can (one ``recv``
per readiness, chunks undone, each price's ``ts`` taken from the time it was read) and
checks nothing else, so what it measures is the server's and the kernel's share. It is
built with the machine's C compiler into the run's temporary directory.

Each run starts its own market and server as ``python -m bench`` does (the server pinned
to CPU 0, the market and the reader to CPU 1), opens the workload's streams (the same
choice of symbols), warms up, and measures a window; the table gives the medians of the
runs, for ticker and for the ceiling, with ticker's pass (its own share) beside them, and
the snapshots ticker sent in the windows (conflations: every stream is open before a
window begins), the most of any run.

    python -m bench.latency --workloads B,X --runs 3
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from bench import procs
from bench.run import RESULTS, WORKLOADS, Window, Workload, parsed, workload_options
from simulator import universe

__all__ = ["build", "measure", "targets"]

SOURCE = Path(__file__).resolve().parent / "reader.c"


def build(where: Path) -> Path:
    """The reader, compiled into ``where``.

    Raises:
        RuntimeError: no C compiler, or it refused the source.
    """
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise RuntimeError("the reader needs a C compiler (cc or gcc)")
    binary = where / "reader"
    done = subprocess.run([compiler, "-O2", "-o", str(binary), str(SOURCE)],
                          capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"the reader did not build:\n{done.stderr[-2000:]}")
    return binary


def targets(work: Workload, seed: int) -> list[str]:
    """One request target per stream: every symbol, or the workload's own choice."""
    if work.symbols is None:
        return ["/stream"] * work.streams
    symbols = sorted(company.symbol for company in universe.create(work.universe, seed))
    rng = random.Random(seed)
    return ["/stream?symbols=" + ",".join(sorted(rng.sample(symbols, work.symbols)))
            for _ in range(work.streams)]


def measure(kind: str, work: Workload, tmp: Path, reader: Path, *, seed: int,
            warmup: float, profile: Path | None = None) -> dict:
    """One run of ``work`` against ``kind`` ("ticker" or "ceiling"), read by ``reader``;
    with ``profile``, ``py-spy record`` of the server's worker during the window."""
    paths = tmp / "targets.txt"
    paths.write_text("\n".join(targets(work, seed)) + "\n")
    with procs.market(tmp, symbols=work.universe, rate=work.rate, seed=seed, cpu=1) as market, \
            procs.server(kind, tmp, market.feed, streams=work.streams, cpu=0) as server:
        window = Window(kind, server, server.workers[0], work.window, profile)
        command = procs.pinned(1, [str(reader), "127.0.0.1", str(server.port), str(paths),
                                   str(warmup), str(work.window), "500"])
        with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as proc:
            for line in proc.stdout:
                edge = line.strip()
                if edge in ("start", "end"):
                    window(edge)
                elif edge.startswith("{"):
                    result = json.loads(edge)
        profiled = window.finish()
        if proc.returncode or not window.measured:
            raise RuntimeError(f"the reader failed (exit {proc.returncode})")
    result.update(
        kind=kind, workload=work.name, seed=seed, revision=procs.revision(),
        profile=str(profiled) if profiled else None, **window.figures(result["events"]),
    )
    return result


def _median(runs: list[dict], *keys: str) -> float | None:
    values = []
    for run in runs:
        value = run
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, (int, float)):
            values.append(value)
    return statistics.median(values) if values else None


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _most(runs: list[dict], key: str) -> str:
    """The largest of a figure over the runs ("-" where the server does not tell it)."""
    values = [run[key] for run in runs if run.get(key) is not None]
    return f"{max(values):,.0f}" if values else "-"


def table(rows: list[tuple[Workload, dict[str, list[dict]]]]) -> str:
    head = ("| workload | server | streams | events/s | p50 ms | p99 ms | max ms "
            "| pass p50/p99 ms | conflations | server core +starved | reader core | load "
            "| p99 target |")
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    limits = {"L": 5, "B": 60, "X": 120, "S": 250, "W": 150}
    for work, runs in rows:
        ceiling_p99 = _median(runs["ceiling"], "latency_ms", "p99")
        for kind in ("ticker", "ceiling"):
            r = runs[kind]
            if not r:
                continue
            p99 = _median(r, "latency_ms", "p99")
            ratio = (f" ({p99 / ceiling_p99:.2f}x)" if kind == "ticker" and p99 and ceiling_p99
                     else "")
            limit = limits.get(work.name)
            verdict = "" if kind != "ticker" or limit is None else (
                f"{limit} ms: " + ("met" if p99 is not None and p99 <= limit else "missed"))
            lines.append(
                f"| {work.name} {work.title} | {kind} | {_median(r, 'opened'):,.0f} "
                f"| {_median(r, 'events_per_s'):,.0f} | {_ms(_median(r, 'latency_ms', 'p50'))} "
                f"| {_ms(p99)}{ratio} | {_ms(_median(r, 'latency_ms', 'max'))} "
                f"| {_ms(_median(r, 'pass_ms', 'p50'))}/{_ms(_median(r, 'pass_ms', 'p99'))} "
                f"| {_most(r, 'server_snapshots')} "
                f"| {_median(r, 'server_core'):.0%} +{_median(r, 'server_starved'):.0%} "
                f"| {_median(r, 'reader_cpu'):.0%} | {_median(r, 'loadavg_start'):.1f} "
                f"| {verdict} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    workload_options(parser, "B,X")
    args = parsed(parser, argv)
    procs.exit_on_sigterm()
    if len(os.sched_getaffinity(0)) > 1:
        os.sched_setaffinity(0, {1})
    rows, everything = [], []
    with tempfile.TemporaryDirectory(prefix="ticker-latency-") as build_dir:
        reader = build(Path(build_dir))
        for name in args.workloads.split(","):
            work = WORKLOADS[name]
            if args.window:
                work = replace(work, window=args.window)
            runs: dict[str, list[dict]] = {"ticker": [], "ceiling": []}
            for number in range(1, args.runs + 1):
                for kind in runs:
                    print(f"{work.name}: {kind}, run {number} of {args.runs}", file=sys.stderr,
                          flush=True)
                    profile = None
                    if args.profile and number == 1:
                        RESULTS.mkdir(exist_ok=True)
                        profile = RESULTS / time.strftime(
                            f"profile-latency-{work.name}-{kind}-%H%M%S.txt")
                    with tempfile.TemporaryDirectory(prefix="ticker-latency-") as tmp:
                        try:
                            runs[kind].append(measure(kind, work, Path(tmp), reader,
                                                      seed=number, warmup=args.warmup,
                                                      profile=profile))
                        except (RuntimeError, OSError, ValueError) as exc:
                            print(f"  run failed: {str(exc).splitlines()[0]}", file=sys.stderr)
            rows.append((work, runs))
            everything.append({"workload": work.name, "runs": runs})
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / time.strftime("latency-%Y%m%d-%H%M%S.json")
    path.write_text(json.dumps(everything, indent=1))
    print(table(rows))
    print(f"raw results: {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
