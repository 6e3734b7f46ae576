"""The benchmark's own tools work: a tiny run of the load generator against a real market and
gunicorn, and against the ceiling. Figures of speed are not asserted; the machine is shared."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from bench import run
from bench.framing import ResponseReader, items

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


@pytest.mark.parametrize("kind", ["ticker", "ceiling"])
def test_a_small_run_counts_every_event_and_checks_out(kind, tmp_path: Path):
    work = replace(run.WORKLOADS["L"], streams=10, window=2.0, rate=50)
    result = run.measure(kind, work, tmp_path, seed=3, warmup=0.5)
    assert result["opened"] == 10 and result["refused"] == result["dropped"] == 0
    assert result["events"] > 0
    assert result["gaps"] == 0 and result["dups"] == 0
    assert result["reference_lost"] == 0
    assert result["converged"] == 10
    assert 0.99 <= result["delivery_ratio"] <= 1.0
    assert result["latency_ms"]["p50"] is not None
    assert result["server_cpu_s"] >= 0
