"""The rolling-reload benchmark's tools work: a tiny run through one HUP, every stream back
and checked against the market. Its latency figures are not asserted; the machine is shared."""

from __future__ import annotations

from bench import rolling


def test_a_small_rolling_run_brings_every_stream_back_exactly():
    result = rolling.measure(streams=20, symbols=None, workers=2, reloads=1, interval=2.0,
                             steady=1.0, retry_ms=200, seed=3)
    assert result["opened"] == result["open_at_end"] == 20 and result["refused"] == 0
    assert result["comebacks"] >= 20, "the reload ended no stream: nothing was measured"
    assert result["reloads"][0]["all_back"]
    assert (result["lost"], result["duplicated"], result["snapshots"]) == (0, 0, 0)
    assert result["tape_holes"] == 0 and result["final_seq"] > 0
    assert result["steady_latency_ms"]["p99"] is not None
    assert result["worst_ms"] is not None
