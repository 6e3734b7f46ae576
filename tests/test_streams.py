"""Streams end to end: the real simulator, gunicorn with 2 gevent workers, a real SSE client."""

from __future__ import annotations

import json
import time

import pytest

from tests.servers import run_gunicorn, serving_worker
from tests.sse_client import SSEClient


def prices(events):
    return [e for e in events if e.type == "price"]


def seqs(events):
    return [e.json()["seq"] for e in prices(events)]


def symbols_of(server, count):
    status, _, body = server.get("/api/symbols")
    assert status == 200
    return [company["symbol"] for company in json.loads(body)][:count]


def clients_on_two_workers(server, path, **kwargs):
    """Open streams until two are served by different workers; close the rest."""
    first = SSEClient(server.url, path, **kwargs)
    first_pid = serving_worker(server, first.sock)
    for _ in range(40):
        other = SSEClient(server.url, path, **kwargs)
        pid = serving_worker(server, other.sock)
        if pid != first_pid and pid is not None:
            return first, other
        other.close()
    raise AssertionError("every connection landed on the same worker")


def test_snapshot_then_live_prices_for_the_subscribed_symbols_only(server):
    chosen = symbols_of(server, 3)
    with SSEClient(server.url, "/stream?symbols=" + ",".join(chosen)) as client:
        assert client.status == 200
        assert client.headers["Content-Type"] == "text/event-stream"
        assert client.headers["Cache-Control"] == "no-cache"
        assert client.headers["X-Accel-Buffering"] == "no"
        first = client.next()
        assert first.type == "snapshot"
        assert client.parser.retry is not None, "retry: comes before the first event"
        assert sorted(q["symbol"] for q in first.json()["quotes"]) == sorted(chosen)
        live = client.read_until(lambda e: len(prices(client.events)) >= 15, timeout=15)
        events = prices(live)
        assert {e.json()["symbol"] for e in events} <= set(chosen)
        ids = [int(e.id.rsplit("-", 1)[1]) for e in events]
        assert ids == sorted(set(ids)), "ids strictly increase"
        assert [e.json()["seq"] for e in events] == ids
        snapshot_seq = int(first.id.rsplit("-", 1)[1])
        assert ids[0] > snapshot_seq


def test_a_stream_that_ends_is_in_the_access_log_with_its_request(market, tmp_path):
    """A stream lets its request's environ go but for what the access log reads."""
    with run_gunicorn(tmp_path, market.feed, workers=1,
                      args=("--access-logfile", "-")) as server:
        chosen = ",".join(symbols_of(server, 2))
        path = f"/stream?symbols={chosen}"
        headers = {"User-Agent": "ticker-test/1", "Referer": "http://127.0.0.1/page"}
        with SSEClient(server.url, path, headers=headers) as client:
            client.read_until(lambda e: len(prices(client.events)) >= 2, timeout=15)
        deadline = time.monotonic() + 10
        while f'"GET {path} HTTP/1.1" 200' not in server.output():
            assert time.monotonic() < deadline, server.output()[-2000:]
            time.sleep(0.1)
        [line] = [ln for ln in server.output().splitlines() if f"GET {path} " in ln]
        assert line.startswith("127.0.0.1 ")
        assert '"http://127.0.0.1/page" "ticker-test/1"' in line
        assert "Traceback" not in server.output()


def test_one_symbol_route(server):
    [symbol] = symbols_of(server, 1)
    with SSEClient(server.url, f"/stream/{symbol}") as client:
        snapshot = client.next(type="snapshot")
        assert [q["symbol"] for q in snapshot.json()["quotes"]] == [symbol]
        event = client.next(type="price", timeout=15)
        assert event.json()["symbol"] == symbol


def test_ticks_reach_both_workers_with_the_same_ids(server):
    a, b = clients_on_two_workers(server, "/stream")
    with a, b:
        got_a = prices(a.read_for(3))
        got_b = prices(b.read_for(1))
        by_id_a = {e.id: e.data for e in got_a}
        common = [e for e in got_b if e.id in by_id_a]
        assert len(common) >= 10
        for event in common:
            assert by_id_a[event.id] == event.data
            assert event.id.endswith(f"-{event.json()['seq']}")


def test_resume_on_the_other_worker_is_exact(server):
    chosen = symbols_of(server, 4)
    path = "/stream?symbols=" + ",".join(chosen)
    with SSEClient(server.url, path) as reference:
        reference.next(type="snapshot")
        first, other = clients_on_two_workers(server, path)
        other.close()
        with first:
            first_pid = serving_worker(server, first.sock)
            first.read_until(lambda e: len(prices(first.events)) >= 5, 15)
            before = prices(first.events)
            last_id = first.parser.last_event_id
        time.sleep(1.0)  # ticks pass while disconnected
        for _ in range(40):
            second = SSEClient(server.url, path, last_event_id=last_id)
            if serving_worker(server, second.sock) != first_pid:
                break
            second.close()
        else:
            raise AssertionError("no reconnect landed on the other worker")
        with second:
            second.read_until(lambda e: len(prices(second.events)) >= 20, 20)
            assert all(e.type != "snapshot" for e in second.events), "exact resume, no snapshot"
            union = before + prices(second.events)
            end = union[-1].json()["seq"]
            reached_end = lambda e: e.type == "price" and e.json()["seq"] >= end  # noqa: E731
            wanted = reference.read_until(reached_end, 20)
            expected = [(e.id, e.data) for e in prices(reference.events)
                        if before[0].json()["seq"] <= e.json()["seq"] <= end]
            assert wanted
            assert [(e.id, e.data) for e in union] == expected


@pytest.mark.parametrize(
    "last_event_id",
    ["garbage", "zzzzzz-5", "-1", "", "x" * 4096, "\u00e9\u00e9-1"],
    ids=["garbage", "other-epoch", "negative", "empty", "4KiB", "non-ascii"],
)
def test_a_bad_last_event_id_is_treated_as_absent(server, last_event_id):
    with SSEClient(server.url, "/stream", last_event_id=last_event_id) as client:
        assert client.status == 200
        first = client.next()
        assert first.type == "snapshot"
        assert first.json()["reason"] == ("restart" if last_event_id == "zzzzzz-5" else "new")


def test_an_id_far_ahead_of_the_market_is_unknown_not_waited_for(server):
    with SSEClient(server.url, "/stream") as client:
        first = client.next()
    epoch, seq = first.id.rsplit("-", 1)
    # Minutes of ticks ahead: another worker cannot be that far along.
    with SSEClient(server.url, "/stream", last_event_id=f"{epoch}-{int(seq) + 100_000}") as client:
        snapshot = client.next()
        assert snapshot.type == "snapshot" and snapshot.json()["reason"] == "new"
        assert client.read_until(lambda e: e.type == "price", 15)[-1].type == "price"


def test_lasteventid_query_parameter_resumes_too(server):
    with SSEClient(server.url, "/stream") as client:
        client.read_until(lambda e: len(prices(client.events)) >= 3, 15)
        last = client.parser.last_event_id
    with SSEClient(server.url, f"/stream?lastEventId={last}") as client:
        event = client.next(type="price")
        assert event.json()["seq"] > int(last.rsplit("-", 1)[1])
        assert "snapshot" not in {e.type for e in client.events}


def test_sigterm_ends_every_stream_within_two_seconds(server):
    clients = [SSEClient(server.url, "/stream") for _ in range(6)]
    try:
        for client in clients:
            client.next(type="snapshot")
        started = time.monotonic()
        server.proc.terminate()
        for client in clients:
            client.read_to_end(timeout=5)
            assert client.ended
        assert time.monotonic() - started < 2.0
    finally:
        for client in clients:
            client.close()
    server.proc.wait(5)
    assert server.proc.returncode == 0
    assert "Traceback" not in server.output()
