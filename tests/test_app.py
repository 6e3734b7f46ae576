"""The JSON API and error answers, in-process with Flask's test client."""

from __future__ import annotations

import pytest

from tests.market_state import UNIVERSE, filled_app
from ticker.app import create_app


@pytest.fixture
def app():
    return filled_app(max_symbols=3)


@pytest.fixture
def client(app):
    return app.test_client()


def test_symbols_lists_the_universe(client):
    response = client.get("/api/symbols")
    assert response.status_code == 200
    assert response.json == UNIVERSE


def test_snapshot_in_requested_order(client):
    response = client.get("/api/snapshot?symbols=ccc,AAA")
    assert [q["symbol"] for q in response.json] == ["CCC", "AAA"]
    assert response.json[0]["price"] == 12.5
    assert len(client.get("/api/snapshot").json) == 3


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/api/snapshot?symbols=A$B", 400),
        ("/api/snapshot?symbols=AAA,,CCC", 400),
        ("/api/snapshot?symbols=" + "A" * 11, 400),
        ("/api/snapshot?symbols=AAA,CCC,BRK.B,AAA", 400),  # over the limit of 3, repeats counted
        ("/api/snapshot?symbols=ZZZ", 404),
        ("/stream?symbols=1AB", 400),
        ("/stream?symbols=AAA,BRK.B,CCC,AAA", 400),
        ("/stream/ZZZ", 404),
        ("/stream/AAA,CCC", 400),
        ("/stream?symbols=AAA&max_rate=0", 400),
        ("/stream?symbols=AAA&max_rate=nan", 400),
        ("/stream?symbols=AAA&max_rate=inf", 400),
        ("/stream/AAA?max_rate=101", 400),
        ("/stream/AAA?max_rate=fast", 400),
        ("/stream/AAA?max_rate=", 400),
        ("/no/such/route", 404),
    ],
)
def test_errors_are_json_with_a_reason(client, path, status):
    response = client.get(path)
    assert response.status_code == status
    assert response.is_json and response.json["error"]


def test_wrong_method_is_a_json_405(client):
    response = client.post("/api/symbols")
    assert response.status_code == 405
    assert response.json["error"] and "GET" in response.headers["Allow"]


def test_healthz_follows_the_feed(app, client):
    ok = client.get("/healthz")
    assert ok.status_code == 200 and ok.json["feed"] == "up" and ok.json["seq"] == 3
    app.extensions["ticker"].log.feed_up = False
    down = client.get("/healthz")
    assert down.status_code == 503 and down.json["feed"] == "down"


def test_healthz_is_503_until_the_log_is_filled():
    app = filled_app()
    app.extensions["ticker"].feed.ready.clear()
    response = app.test_client().get("/healthz")
    assert response.status_code == 503 and response.json["ready"] is False


def test_no_universe_yet_is_503_with_retry_after():
    client = create_app({"feed": "unix:/nonexistent/feed.sock"}).test_client()
    response = client.get("/api/symbols")
    assert response.status_code == 503 and response.headers["Retry-After"]
    assert client.get("/stream?symbols=a$").status_code == 400


def test_metrics_exposition_has_the_contract_names(client):
    text = client.get("/metrics").get_data(as_text=True)
    for name in ("ticker_streams_open", "ticker_events_sent_total",
                 "ticker_snapshots_sent_total", "ticker_resumes_total"):
        assert f"\n{name} " in text or text.startswith(f"{name} ")


def test_page_and_favicon(client):
    with client.get("/") as page:
        assert page.status_code == 200 and b"<html" in page.data
    with client.get("/favicon.ico") as icon:
        assert icon.status_code == 200 and b"<svg" in icon.data


def test_a_stopping_worker_tells_browsers_to_reconnect_rather_than_refusing(app, client):
    # Any status but 200 would make a browser's EventSource give up for good.
    app.extensions["ticker"].fanout.closing = True
    response = client.get("/stream?symbols=AAA")
    assert response.status_code == 200
    assert response.content_type == "text/event-stream"
    assert response.data == b"retry: 2000\n\n"
