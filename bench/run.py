"""The benchmark: each workload against ticker (one gunicorn worker, one core), then the ceiling.

Per run: a fresh market (``python -m simulator run``) and a fresh server, the server
pinned to CPU 0, this process (the load generator) and the market to CPU 1. The load
generator connects, measures a window, stops the market and checks every stream; the
server's CPU seconds (utime + stime of its worker) over the window and its peak RSS
(``VmHWM``) come from /proc. Every figure is the median of ``--runs`` runs, and each of
ticker's is also given as a ratio to the ceiling's. Raw results go to
``bench/results/*.json``, the table to stdout, progress to stderr.

    python -m bench                      # every workload, 3 runs each
    python -m bench --workloads L,B --runs 1 --window 5
    python -m bench --quick              # a few seconds, tiny sizes (the smoke test)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from bench import procs
from bench.loadgen import LoadGen
from bench.profile import Profiler

__all__ = ["WORKLOADS", "Window", "Workload", "main", "measure", "parsed", "workload_options"]

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Workload:
    name: str
    title: str
    streams: int
    symbols: int | None  # per stream; None: every symbol (``/stream``)
    universe: int  # symbols in the market
    rate: float  # ticks per second across the market
    window: float  # seconds measured
    target: str


WORKLOADS = {w.name: w for w in [
    Workload("L", "light", 100, None, 50, 10, 10, "p99 <= 5 ms"),
    Workload("B", "broadcast", 5_000, None, 50, 100, 10,
             "100% delivered, no conflation, p99 <= 60 ms, <= 2 us CPU/event, >= 70% of ceiling"),
    Workload("X", "extreme", 10_000, None, 50, 100, 10,
             "1,000,000 events/s, >= 99.9% delivered unconflated, p99 <= 120 ms"),
    Workload("S", "selective", 10_000, 5, 100, 1_000, 10,
             "every stream converges, >= 99% delivered unconflated, p99 <= 250 ms and <= 1.0x "
             "the ceiling's"),
    Workload("H", "hold", 10_000, 1, 50, 1, 60,
             "all 10,000 held for 60 s, <= 14 KB server RSS per stream, p99 and CPU/event "
             "<= 1.5x the ceiling's"),
    Workload("W", "watchlists", 5_000, 20, 8_000, 20_000, 10,
             ">= 99.5% delivered, no conflation, every stream converges, p99 <= 150 ms"),
]}


def log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def measure(kind: str, work: Workload, tmp: Path, *, seed: int, warmup: float,
            profile: Path | None = None, root: Path = procs.ROOT) -> dict:
    """One run of ``work`` against ``kind`` ("ticker" or "ceiling"): every figure.

    With ``profile``, ``py-spy record`` samples the server's worker during the window
    (from CPU 1, beside the load generator) into that file. ``root``: the checkout
    ticker runs from.
    """
    revision = procs.revision(root if kind == "ticker" else procs.ROOT)
    with procs.market(tmp, symbols=work.universe, rate=work.rate, seed=seed, cpu=1) as market, \
            procs.server(kind, tmp, market.feed, streams=work.streams, cpu=0,
                         root=root) as server:
        pid = server.workers[0]
        idle_kb = procs.memory_kb(pid, "VmRSS")
        window = Window(kind, server, pid, work.window, profile)
        generator = LoadGen("127.0.0.1", server.port, streams=work.streams,
                            symbols=work.symbols, seed=seed, log=log,
                            tape=market.feed.removeprefix("unix:"))
        result = generator.run(warmup=warmup, window=work.window, stop_market=market.stop,
                               settle=15.0, on_window=window)
        peak_kb = procs.memory_kb(pid, "VmHWM")
        errors = server.log.read_text(errors="replace").count("Traceback")
        if kind == "ticker":
            try:
                result["server_metrics"] = _metrics(server.get("/metrics", timeout=30)[1])
            except OSError:  # a worker too busy to answer is a figure missing, not a failure
                result["server_metrics"] = None
        profiled = window.finish()
    result.update(
        kind=kind, workload=work.name, rate=work.rate, seed=seed, revision=revision,
        server_tracebacks=errors, profile=str(profiled) if profiled else None,
        **window.figures(result["events"]),
        server_idle_kb=idle_kb, server_peak_kb=peak_kb,
        server_kb_per_stream=(peak_kb - idle_kb) / max(1, result["opened"] + 1),
    )
    return result


class Window:
    """The server as a measured window begins and ends (called with "start" and "end"):
    its CPU, its wait for a CPU, the machine's load, ticker's passes and the snapshots it
    sent (conflations, once every stream is open); with ``profile``, ``py-spy record`` of
    it during the window (from CPU 1, beside the load)."""

    def __init__(self, kind: str, server: procs.Server, pid: int, seconds: float,
                 profile: Path | None = None) -> None:
        self.kind, self.server, self.pid = kind, server, pid
        self.seconds, self.profile = seconds, profile
        self.marks: dict[str, tuple[float, float, float, float]] = {}
        self.passes: dict[str, dict[float, float] | None] = {}
        self.snapshots: dict[str, float | None] = {}
        self.profiler: Profiler | None = None

    def __call__(self, edge: str) -> None:
        self.marks[edge] = (time.monotonic(), procs.cpu_seconds(self.pid),
                            procs.runqueue_seconds(self.pid), procs.loadavg())
        if self.kind == "ticker":
            self.passes[edge], self.snapshots[edge] = _ticker_metrics(self.server)
        if edge == "start" and self.profile is not None:
            self.profiler = Profiler(self.pid, self.profile, self.seconds, cpu=1)

    @property
    def measured(self) -> bool:
        return len(self.marks) == 2

    def finish(self) -> Path | None:
        """The profile, once written (None without one, or if py-spy failed)."""
        return self.profiler.finish() if self.profiler else None

    def figures(self, events: int) -> dict:
        """The server's own figures over the window, ``events`` delivered in it."""
        (t0, cpu0, queued0, load0), (t1, cpu1, queued1, load1) = (
            self.marks["start"], self.marks["end"])
        cpu = cpu1 - cpu0
        snapshots = self.snapshots.get("start"), self.snapshots.get("end")
        return dict(
            pass_ms=_pass_quantiles(self.passes.get("start"), self.passes.get("end")),
            server_snapshots=None if None in snapshots else snapshots[1] - snapshots[0],
            # The machine's 1-minute load average as the window began and ended: it is shared.
            loadavg_start=load0, loadavg_end=load1,
            server_cpu_s=cpu, server_core=cpu / (t1 - t0),
            server_starved=(queued1 - queued0) / (t1 - t0),
            server_cpu_us_per_event=cpu / events * 1e6 if events else None,
            # What one core would deliver at this batching, were it not shared.
            events_per_cpu_s=events / cpu if cpu else None,
        )


def _ticker_metrics(server: procs.Server) -> tuple[dict[float, float] | None, float | None]:
    """ticker's ``ticker_pass_seconds`` histogram now (upper bound to cumulative count),
    and its ``ticker_snapshots_sent_total``."""
    try:
        text = server.get("/metrics", timeout=10)[1].decode()
    except OSError:
        return None, None
    buckets, snapshots = {}, None
    for line in text.splitlines():
        if line.startswith('ticker_pass_seconds_bucket{le="'):
            bound, _, count = line.removeprefix('ticker_pass_seconds_bucket{le="').partition('"} ')
            buckets[float(bound)] = float(count)
        elif line.startswith("ticker_snapshots_sent_total "):
            snapshots = float(line.split()[1])
    return buckets, snapshots


def _pass_quantiles(start: dict | None, end: dict | None) -> dict:
    """p50 and p99 of the sweep passes in the window, from the histogram's buckets (linear
    within a bucket, as Prometheus' ``histogram_quantile``), in milliseconds."""
    if not start or not end:
        return {"p50": None, "p99": None}
    bounds = sorted(end)
    counts = [end[b] - start.get(b, 0.0) for b in bounds]
    total = counts[-1]
    out = {}
    for name, q in (("p50", 0.50), ("p99", 0.99)):
        if not total:
            out[name] = None
            continue
        rank, lower, below = q * total, 0.0, 0.0
        for bound, cumulative in zip(bounds, counts, strict=True):
            if cumulative >= rank:
                upper = bound if bound != float("inf") else lower
                share = (rank - below) / (cumulative - below) if cumulative > below else 1.0
                out[name] = round(1000 * (lower + (upper - lower) * share), 1)
                break
            lower, below = bound, cumulative
    return out


def _metrics(text: bytes) -> dict:
    wanted = ("ticker_events_sent_total", "ticker_snapshots_sent_total", "ticker_writes_total",
              "ticker_streams_open")
    found = {}
    for line in text.decode().splitlines():
        name, _, value = line.partition(" ")
        if name in wanted:
            found[name] = float(value)
    return found


def median_of(runs: list[dict]) -> dict:
    """Each numeric figure's median over the runs that have it (figures nested one level,
    such as ``latency_ms``, each on its own); the rest from the first run.

    A figure a run could not measure (``None``: no events in its window, a market that
    did not settle, a server that does not tell it) is left out of its median rather than
    spoiling it.
    """
    def median(values: list, first):
        numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        return statistics.median(numbers) if numbers else first

    merged = dict(runs[0])
    for key, first in runs[0].items():
        if isinstance(first, dict):
            merged[key] = {k: median([(r.get(key) or {}).get(k) for r in runs], v)
                           for k, v in first.items()}
        else:
            merged[key] = median([r.get(key) for r in runs], first)
    merged["runs"] = len(runs)
    return merged


def verdict(work: Workload, t: dict, ceiling: dict) -> str:
    """Which parts of ``work``'s target ``t`` (ticker's medians) misses; "met" if none."""
    p99 = t["latency_ms"]["p99"] or float("inf")
    delivered = t["delivery_ratio"] or 0.0
    cpu = t["server_cpu_us_per_event"] or 9e9
    ceiling_p99 = ceiling["latency_ms"]["p99"] or float("inf")
    ceiling_cpu = ceiling["server_cpu_us_per_event"] or float("inf")
    unconflated = (t["snapshots_in_window"] == 0, f"{t['snapshots_in_window']:g} snapshots")
    converged = (t["converged"] == t["opened"], f"{t['converged']} of {t['opened']} converged")
    checks = {
        "L": [(p99 <= 5, f"p99 {p99:g} ms")],
        "B": [(delivered >= 0.99995, f"delivered {delivered:.3%}"), unconflated,
              (p99 <= 60, f"p99 {p99:g} ms"),
              (cpu <= 2, f"{cpu:.2f} us CPU/event"),
              (t["events_per_s"] >= 0.7 * ceiling["events_per_s"], "under 70% of the ceiling")],
        "X": [(t["events_per_s"] >= 1e6, f"{t['events_per_s']:,.0f} events/s"),
              (delivered >= 0.999, f"delivered {delivered:.3%}"),
              (p99 <= 120, f"p99 {p99:g} ms")],
        "S": [converged, (delivered >= 0.99, f"delivered {delivered:.3%}"),
              (p99 <= 250, f"p99 {p99:g} ms"),
              (p99 <= ceiling_p99, f"p99 {p99 / ceiling_p99:.2f}x the ceiling's")],
        "H": [(t["server_kb_per_stream"] <= 14, f"{t['server_kb_per_stream']:.1f} KB/stream"),
              (t["opened"] == work.streams and t["open_at_window_end"] == work.streams
               and t["dropped"] == 0, f"{t['open_at_window_end']:g} held"),
              (p99 <= 1.5 * ceiling_p99, f"p99 {p99 / ceiling_p99:.2f}x the ceiling's"),
              (cpu <= 1.5 * ceiling_cpu, f"CPU/event {cpu / ceiling_cpu:.2f}x the ceiling's")],
        "W": [(delivered >= 0.995, f"delivered {delivered:.3%}"), unconflated, converged,
              (p99 <= 150, f"p99 {p99:g} ms")],
    }[work.name]
    missed = [why for ok, why in checks if not ok]
    return "met" if not missed else "MISSED: " + ", ".join(missed)


def _g(value) -> str:
    return "-" if value is None else f"{value:g}"


def _ratio(a, b) -> str:
    return f"{a / b:.2f}" if a is not None and b else "-"


def table(rows: list[tuple[Workload, dict, dict]]) -> str:
    """One line per workload and server, ticker's with its ratio to the ceiling."""
    head = ("| workload | server | streams | events/s | delivered | snapshots | gaps/dups "
            "| converged | p50 ms | p99 ms | max ms | pass p50/p99 ms | CPU us/event "
            "| server core +starved | KB/stream | tool core +starved | load | target |")
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for work, ticker, ceiling in rows:
        for kind, r in (("ticker", ticker), ("ceiling", ceiling)):
            lat = r["latency_ms"]
            ratio = kind == "ticker"
            events = f"{r['events_per_s']:,.0f}" + (
                f" ({_ratio(r['events_per_s'], ceiling['events_per_s'])}x)" if ratio else "")
            p99 = f"{lat['p99']}" + (f" ({_ratio(lat['p99'], ceiling['latency_ms']['p99'])}x)"
                                     if ratio else "")
            cpu = r["server_cpu_us_per_event"]
            cpu_text = "-" if cpu is None else f"{cpu:.2f}" + (
                f" ({_ratio(cpu, ceiling['server_cpu_us_per_event'])}x)" if ratio else "")
            delivered = "-" if r["delivery_ratio"] is None else f"{r['delivery_ratio']:.3%}"
            lines.append(
                f"| {work.name} {work.title} | {kind} | {r['opened']:,.0f} | {events} "
                f"| {delivered} | {r['snapshots_in_window']:g} | {_g(r['gaps'])}/{_g(r['dups'])} "
                f"| {_g(r['converged'])} | {lat['p50']} | {p99} | {lat['max']} "
                f"| {_g(r['pass_ms']['p50'])}/{_g(r['pass_ms']['p99'])} | {cpu_text} "
                f"| {r['server_core']:.0%} +{r['server_starved']:.0%} "
                f"| {r['server_kb_per_stream']:.1f} "
                f"| {r['loadgen_cpu']:.0%} +{r['loadgen_starved']:.0%} "
                f"| {r['loadavg_start']:.1f} "
                f"| {verdict(work, r, ceiling) if ratio else ''} |")
    return "\n".join(lines)


def workload_options(parser: argparse.ArgumentParser, default: str) -> None:
    """The options of every runner of workloads: which, how many runs, how long, py-spy."""
    parser.add_argument("--workloads", default=default, metavar="L,B,X,S,H,W")
    parser.add_argument("--runs", type=int, default=3, help="the median of these is reported")
    parser.add_argument("--window", type=float, help="seconds measured (default: per workload)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds after the ramp")
    parser.add_argument("--profile", action="store_true",
                        help="py-spy record each server's worker during the first run's window")


def parsed(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """The arguments, with ``--workloads`` checked against the workloads there are."""
    args = parser.parse_args(argv)
    unknown = set(args.workloads.split(",")) - set(WORKLOADS)
    if unknown:
        parser.error(f"unknown workloads: {', '.join(sorted(unknown))}")
    return args


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    workload_options(parser, ",".join(WORKLOADS))
    parser.add_argument("--rate", type=float,
                        help="the market's ticks/s (default: per workload; a machine too busy "
                             "for a workload's market can still run it slower)")
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes and a short window: checks the tools, measures nothing")
    return parsed(parser, argv)


def main(argv: list[str] | None = None) -> dict:
    """Run the chosen workloads; print the table; return what was written to JSON."""
    args = parse_args(argv)
    procs.exit_on_sigterm()
    if len(os.sched_getaffinity(0)) > 1:
        os.sched_setaffinity(0, {1})  # the load generator's CPU; the server has CPU 0
    failures: list[str] = []
    rows, report = [], {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "workloads": [],
                        "failures": failures, "unfinished": {}}
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / time.strftime("bench-%Y%m%d-%H%M%S.json")
    for name in args.workloads.split(","):
        work = WORKLOADS[name]
        if args.quick:
            work = replace(work, streams=min(work.streams, 20), window=2.0,
                           universe=min(work.universe, 200), rate=min(work.rate, 1_000))
        if args.window:
            work = replace(work, window=args.window)
        if args.rate:
            work = replace(work, rate=args.rate)
        runs: dict[str, list[dict]] = {"ticker": [], "ceiling": []}
        for number in range(1, args.runs + 1):
            for kind in runs:
                log(f"{work.name} {work.title}: {kind}, run {number} of {args.runs}")
                profile = None
                if args.profile and number == 1:
                    RESULTS.mkdir(exist_ok=True)
                    profile = RESULTS / time.strftime(f"profile-{work.name}-{kind}-%H%M%S.txt")
                with tempfile.TemporaryDirectory(prefix="ticker-bench-") as tmp:
                    try:
                        runs[kind].append(measure(kind, work, Path(tmp), seed=number,
                                                  warmup=0.5 if args.quick else args.warmup,
                                                  profile=profile))
                    except (RuntimeError, OSError, ValueError) as exc:
                        # A run that could not measure (a server that never got ready on
                        # a loaded machine, a worker that died): told, left out of the median.
                        log(f"  run failed: {str(exc).splitlines()[0]}")
                        failures.append(f"{work.name} {kind} run {number}: {exc}"[:2000])
                # Every run is on disk as soon as it ends, should the rest never come.
                report["unfinished"] = {"workload": asdict(work), "runs": runs}
                path.write_text(json.dumps(report, indent=1))
        report["unfinished"] = {}
        if not (runs["ticker"] and runs["ceiling"]):
            log(f"{work.name}: no run of each server measured; left out of the table")
            report["workloads"].append({"workload": asdict(work), "runs": runs,
                                        "median": None, "verdict": "not measured"})
            continue
        ticker, ceiling = median_of(runs["ticker"]), median_of(runs["ceiling"])
        rows.append((work, ticker, ceiling))
        report["workloads"].append({"workload": asdict(work), "runs": runs,
                                    "median": {"ticker": ticker, "ceiling": ceiling},
                                    "verdict": verdict(work, ticker, ceiling)})
    path.write_text(json.dumps(report, indent=1))
    print(table(rows))
    log(f"raw results: {path}")
    return report


if __name__ == "__main__":
    main()
