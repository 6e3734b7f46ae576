"""The chart: events/s delivered and p99 latency against the number of streams, ticker and ceiling.

Each point is one workload like B and X (every stream subscribed to all 50 symbols, the
market at 100 ticks/s, one gunicorn worker on one core), run as ``bench.run`` runs it;
with ``--runs`` above 1 each point is the median. The figures go to
``bench/results/chart-*.json``, and ``--from`` redraws a chart from such a file.

    python -m bench.chart                         # measure, then draw bench/chart.png
    python -m bench.chart --from bench/results/chart-20260101-120000.json
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from bench import procs
from bench.run import RESULTS, WORKLOADS, log, measure, median_of

__all__ = ["draw", "main"]

KINDS = ("ticker", "ceiling")


def collect(counts: list[int], runs: int, window: float) -> dict:
    """Median figures per server and number of streams."""
    base = WORKLOADS["X"]
    points: dict[str, list[dict]] = {kind: [] for kind in KINDS}
    for count in counts:
        work = replace(base, streams=count, window=window)
        for kind in KINDS:
            results = []
            for number in range(1, runs + 1):
                log(f"{count:,} streams: {kind}, run {number} of {runs}")
                with tempfile.TemporaryDirectory(prefix="ticker-chart-") as tmp:
                    results.append(measure(kind, work, Path(tmp), seed=number, warmup=2.0))
            median = median_of(results)
            points[kind].append({"streams": count, "events_per_s": median["events_per_s"],
                                 "p99_ms": median["latency_ms"]["p99"],
                                 "delivery_ratio": median["delivery_ratio"],
                                 "server_cpu_us_per_event": median["server_cpu_us_per_event"]})
    return {"date": time.strftime("%Y-%m-%d"), "rate": base.rate, "universe": base.universe,
            "runs": runs, "window_s": window, "points": points}


def draw(data: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    fig, (left, right) = pyplot.subplots(1, 2, figsize=(11, 4.2), dpi=110)
    styles = {"ticker": ("tab:blue", "o", "ticker (gunicorn + Flask, 1 worker)"),
              "ceiling": ("tab:gray", "s", "ceiling (raw gevent StreamServer)")}
    for kind in KINDS:
        color, marker, label = styles[kind]
        pts = data["points"][kind]
        streams = [p["streams"] for p in pts]
        left.plot(streams, [p["events_per_s"] for p in pts], marker=marker, color=color,
                  label=label)
        right.plot(streams, [p["p99_ms"] for p in pts], marker=marker, color=color, label=label)
    every = sorted({p["streams"] for pts in data["points"].values() for p in pts})
    left.plot(every, [n * data["rate"] for n in every], ls=":", color="tab:green",
              label="owed: streams x ticks/s")
    left.set(xlabel="streams (each: all symbols)", ylabel="price events/s delivered",
             title="Throughput, one core")
    left.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:,.0f}"))
    right.set(xlabel="streams (each: all symbols)", ylabel="p99 latency, ms (log)",
              title="p99 latency (receive time - tick ts)", yscale="log")
    for axes in (left, right):
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8)
    runs = "one run" if data["runs"] == 1 else f"median of {data['runs']} runs"
    fig.suptitle(f"ticker vs ceiling: {data['universe']} symbols, {data['rate']:g} ticks/s, "
                 f"{runs} per point, {data['date']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(out)
    log(f"chart: {out}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", default="100,1000,2500,5000,10000", metavar="N,N,...")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--window", type=float, default=8.0, help="seconds measured per point")
    parser.add_argument("--from", dest="source", type=Path, help="redraw from this JSON")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "chart.png")
    args = parser.parse_args(argv)
    if args.source:
        data = json.loads(args.source.read_text())
    else:
        procs.exit_on_sigterm()
        if len(os.sched_getaffinity(0)) > 1:
            os.sched_setaffinity(0, {1})
        data = collect([int(n) for n in args.streams.split(",")], args.runs, args.window)
        RESULTS.mkdir(exist_ok=True)
        path = RESULTS / time.strftime("chart-%Y%m%d-%H%M%S.json")
        path.write_text(json.dumps(data, indent=1))
        log(f"figures: {path}")
    draw(data, args.out)


if __name__ == "__main__":
    main()
