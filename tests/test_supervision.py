"""A worker whose feed reader or sweeper dies never looks healthy: it says so and exits.

The fault is injected by making the greenlet's own function raise, as a bug would.
"""

from __future__ import annotations

import gevent
import pytest

from tests.market_state import filled_app


def crash():
    raise RuntimeError("a bug")


@pytest.mark.parametrize("part", ["feed", "fanout"])
def test_a_crashed_greenlet_turns_healthz_503_and_asks_the_worker_to_exit(
    part, monkeypatch, caplog,
):
    app = filled_app()
    service = app.extensions["ticker"]
    client = app.test_client()
    assert client.get("/healthz").status_code == 200
    monkeypatch.setattr(getattr(service, part), "run", crash)
    exits = []
    service.start(on_failure=lambda: exits.append(True))
    try:
        gevent.sleep(0.05)
        response = client.get("/healthz")
        assert response.status_code == 503
        assert "crashed" in response.json["error"] and "a bug" in response.json["error"]
        assert exits == [True], "the worker is asked to exit, once"
        assert service.fanout.closing, "its streams are ended, so clients resume elsewhere"
        [record] = [r for r in caplog.records if r.levelname == "CRITICAL"]
        assert record.exc_info and "crashed" in record.getMessage()
    finally:
        service.stop()
