"""The benchmark's own tools work: tiny runs of the load generator against a real market and
gunicorn, and against the ceiling; the delivery benchmark's parts; the profile summary.
Figures of speed are not asserted; the machine is shared."""

from __future__ import annotations

import argparse
import statistics
from dataclasses import replace
from pathlib import Path

import pytest

from bench import feed_path, host, latency, run, send_size, slow, sweep_cost
from bench.framing import ResponseReader, items
from bench.profile import summary

PRICE = (b'event: price\nid: e-7\ndata: {"symbol":"ACME","price":1.5,"ts":1700000000000,'
         b'"seq":7}\n\n')


@pytest.mark.parametrize("cut", range(1, 40))
def test_reader_gives_whole_frames_however_the_bytes_are_split(cut):
    body = PRICE * 3
    wire = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"%x\r\n%b\r\n" % (len(body), body) + b"0\r\n\r\n")
    reader = ResponseReader()
    frames = b"".join(reader.feed(wire[i:i + cut]) for i in range(0, len(wire), cut))
    assert frames == body
    assert reader.ended
    [(kind, parsed)] = items(frames)
    assert (kind, parsed.count, parsed.prices) == ("price", 3, {b"ACME": b"1.5"})


@pytest.mark.parametrize(("kind", "symbols"), [
    ("ticker", None), ("ceiling", None),
    ("ticker", 3), ("ceiling", 3),  # watchlists: groups indexed by symbol
])
def test_a_small_run_counts_every_event_and_checks_out(kind, symbols, tmp_path: Path):
    work = replace(run.WORKLOADS["L"], streams=10, window=2.0, rate=50, symbols=symbols)
    result = run.measure(kind, work, tmp_path, seed=3, warmup=0.5)
    assert result["opened"] == 10 and result["refused"] == result["dropped"] == 0
    assert result["events"] > 0
    assert result["gaps"] == 0 and result["dups"] == 0
    assert result["record"] == "market", "checked against the market's own socket"
    assert result["reference_lost"] == 0 and result["reference_snapshots"] == 0
    assert result["converged"] == 10
    assert 0.99 <= result["delivery_ratio"] <= 1.0
    assert result["latency_ms"]["p50"] is not None
    assert result["server_cpu_s"] >= 0
    assert result["loadavg_start"] >= 0


@pytest.fixture(scope="module")
def reader(tmp_path_factory) -> Path:
    return latency.build(tmp_path_factory.mktemp("reader"))


@pytest.mark.parametrize(("kind", "symbols"), [
    ("ticker", None), ("ceiling", None), ("ticker", 3), ("ceiling", 3)])
def test_the_compiled_reader_counts_every_price_and_how_late(kind, symbols, reader,
                                                            tmp_path: Path):
    work = replace(run.WORKLOADS["L"], streams=10, window=2.0, rate=50, symbols=symbols)
    result = latency.measure(kind, work, tmp_path, reader, seed=3, warmup=0.5)
    assert result["opened"] == 10 and result["refused"] == result["dropped"] == 0
    if symbols is None:  # every stream owed every tick (a few symbols trade more than others)
        assert 0.8 * 10 * 50 <= result["events_per_s"] <= 1.2 * 10 * 50
    else:
        assert result["events_per_s"] > 0
    assert 0 <= result["latency_ms"]["p50"] <= result["latency_ms"]["p99"] <= 1_000
    assert (result["pass_ms"]["p50"] is not None) == (kind == "ticker")
    assert result["server_snapshots"] == (0 if kind == "ticker" else None), "no conflation"


def test_the_reader_is_given_each_workloads_choice_of_symbols():
    targets = latency.targets(replace(run.WORKLOADS["W"], streams=50, universe=300), seed=2)
    assert len(targets) == 50 and len(set(targets)) == 50
    assert all(t.startswith("/stream?symbols=") and t.count(",") == 19 for t in targets)
    assert latency.targets(replace(run.WORKLOADS["B"], streams=3), seed=2) == ["/stream"] * 3


def test_the_profile_summary_ranks_functions_by_their_own_samples():
    collapsed = ("main (app.py:1);sweep (ticker/fanout.py:10);send (socket.py:5) 6\n"
                 "main (app.py:1);sweep (ticker/fanout.py:10) 3\n"
                 "main (app.py:1);feed (ticker/feed.py:7) 1\n")
    assert summary(collapsed) == [("socket.py:send", 0.6, 0.6), ("fanout.py:sweep", 0.3, 0.9),
                                  ("feed.py:feed", 0.1, 0.1)]
    assert summary("") == []


def test_frames_and_percentiles_of_the_delivery_benchmark():
    body = (b"retry: 2000\n\n" + PRICE + b': heartbeat\nid: e-7\n\n'
            b'event: status\ndata: {"feed":"down"}\n\n')
    assert slow.parse_frames(body) == [
        ("", None), ("price", {"symbol": "ACME", "price": 1.5, "ts": 1700000000000, "seq": 7}),
        ("", None), ("status", {"feed": "down"})]
    assert slow.percentile([], 0.95) is None
    assert slow.percentile(list(range(1, 101)), 0.95) == 95


def test_slow_readers_are_measured_beside_normal_streams():
    result = slow.readers_run(normal=10, symbols=2, slow=2, universe=20, rate=200, window=2.0,
                              bytes_per_s=16 * 1024, buffer=16 * 1024, seed=1)
    assert result["opened"] == 10 and result["gaps"] == 0 and result["converged"] == 10
    readers = result["slow"]
    assert readers["told_down"] == 2 and readers["errors"] == []
    assert readers["converged"] == 2, "their last prices are the market's"
    assert readers["p95_age_ms_worst"] is not None
    assert result["server_peak_kb"] > 0


def test_max_rate_figures_count_prices_and_injections():
    figures = slow.rate_main(argparse.Namespace(ticks=20, max_rate=2, streams=2, duration=4.0,
                                                injections=1))
    assert figures["injected"] == 1
    assert len(figures["inject_shown_s"]) == 2 and None not in figures["inject_shown_s"]
    assert figures["prices_per_s"] is not None and figures["interval_s"] is not None


@pytest.mark.parametrize("general", [False, True], ids=["as-they-are", "general"])
def test_the_feed_path_benchmark_puts_every_tick_in_the_log(general):
    figures = feed_path.measure(symbols=300, ticks=2_000, streams=100, watch=5,
                                general=general, seed=1, behind=1_000)
    assert set(figures) == {"decode", "apply", "index", "total",
                            "the ceiling's apply and index", "catch-up a stream"}
    assert all(value > 0 for value in figures.values())
    assert figures["total"] >= figures["decode"] + figures["apply"]


@pytest.mark.parametrize("symbols", [0, 5], ids=["every-symbol", "5-of-100"])
def test_the_sweep_cost_benchmark_has_both_sweepers_write_the_same_bytes(symbols):
    # measure() raises if a pass of the two wrote different bytes
    figures = sweep_cost.measure(streams=60, symbols=symbols, universe=100, ticks=200,
                                 passes=6, seed=1)
    assert set(figures) == {"ticker", "ceiling"}
    assert all(value > 0 for value in figures.values())


def test_the_host_probe_times_a_loopback_write_and_a_loop():
    figures = host.measure(pairs=10, rounds=3)
    assert set(figures) == {"send_recv_us", "python_loop_ms"}
    assert all(value > 0 for value in figures.values())


def test_one_send_on_loopback_tcp_takes_a_bounded_share_of_a_write_and_more_when_wider():
    # What the fan-out's widening rests on: with the 16 KiB buffer a stream starts with,
    # one send is cut short though the reader reads everything; a wider buffer takes more.
    taken = send_size.measure([16 << 10, 64 << 10], tries=5)
    assert 0 < max(taken[16 << 10]) < 256 << 10
    assert statistics.median(taken[64 << 10]) > max(taken[16 << 10])
