"""What other SSE servers get wrong: stuck readers, a dying feed, a full worker."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import time
from pathlib import Path

from tests.procs import run_simulator
from tests.servers import run_gunicorn
from tests.sse_client import SSEClient


def metric(server, name):
    """The value of one sample in /metrics."""
    _, _, body = server.get("/metrics")
    for line in body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def worker_rss_kb(server):
    total = 0
    for pid in server.worker_pids():
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


def stuck_reader(server, path):
    """A client that sends its request and then never reads, with a tiny receive window."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", server.port))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    return sock


def test_a_stuck_reader_is_dropped_and_the_others_miss_nothing(tmp_path):
    with run_simulator(tmp_path, "--seed", "3", "--symbols", "20", "--rate", "400") as market, \
         run_gunicorn(tmp_path, market.feed, workers=1, env={"TICKER_STALL_S": "2"}) as server:
        readers = [SSEClient(server.url, "/stream") for _ in range(3)]
        for reader in readers:
            reader.next(type="snapshot")
        rss_before = worker_rss_kb(server)
        stuck = stuck_reader(server, "/stream")
        deadline = time.monotonic() + 40
        dropped = 0.0
        while time.monotonic() < deadline and not dropped:
            for reader in readers:
                reader.read_for(0.2)
            dropped = metric(server, 'ticker_streams_dropped_total{reason="stalled"}')
        assert dropped == 1.0, "the stuck reader was not dropped"
        for reader in readers:
            reader.read_for(0.5)
            got = [e.json()["seq"] for e in reader.events if e.type == "price"]
            assert len(got) > 1000
            assert got == list(range(got[0], got[0] + len(got))), "a reader lost a tick"
            assert not [e for e in reader.events[1:] if e.type == "snapshot"]
        assert worker_rss_kb(server) - rss_before < 20_000, "worker memory grew"
        stuck.settimeout(5)
        received = b""
        while chunk := stuck.recv(65536):
            received += chunk
        assert received.startswith(b"HTTP/1.1 200"), "the stuck socket was closed by the server"
        assert metric(server, "ticker_streams_open") == 3.0
        stuck.close()
        for reader in readers:
            reader.close()


def test_feed_death_is_reported_and_recovery_brings_a_new_snapshot(tmp_path):
    feed_args = ("--seed", "5", "--symbols", "8", "--rate", "50")
    quick_heartbeats = {"TICKER_HEARTBEAT_S": "1"}
    with run_simulator(tmp_path, *feed_args) as market, \
         run_gunicorn(tmp_path, market.feed, workers=2, env=quick_heartbeats) as server, \
         contextlib.ExitStack() as streams:
        clients = [streams.enter_context(SSEClient(server.url, "/stream")) for _ in range(4)]
        epochs = set()
        for client in clients:
            epochs.add(client.next(type="snapshot").id.split("-")[0])
            client.next(type="price")
        os.kill(market.proc.pid, signal.SIGKILL)
        market.proc.wait()
        for client in clients:
            down = client.next(type="status", timeout=10)
            assert down.json() == {"feed": "down"}
        assert server.get("/healthz")[0] == 503
        for client in clients:
            client.parser.comments.clear()
            assert client.read_for(2.5) == []
            assert len(client.parser.comments) >= 2, "heartbeats go on while the feed is down"
        with run_simulator(tmp_path, *feed_args) as revived:
            for client in clients:
                assert client.next(type="status", timeout=15).json() == {"feed": "up"}
                snapshot = client.next(type="snapshot", timeout=10)
                assert snapshot.id.split("-")[0] not in epochs
                assert len(snapshot.json()["quotes"]) == 8
                price = client.next(type="price", timeout=10)
                assert price.id.split("-")[0] == snapshot.id.split("-")[0]
            # Each worker reconnects on its own backoff (at most 5 s apart), and either may
            # answer a request: healthy is 200 from whichever answers, ten times running.
            answers, deadline = [], time.monotonic() + 15
            while answers[-10:] != [200] * 10 and time.monotonic() < deadline:
                answers.append(server.get("/healthz")[0])
                time.sleep(0.05)
            assert answers[-10:] == [200] * 10, answers[-20:]
            assert revived.feed == market.feed


def test_a_full_worker_answers_503_with_retry_after(tmp_path, market):
    with run_gunicorn(tmp_path, market.feed, workers=1, env={"TICKER_MAX_STREAMS": "2"}) as server:
        held = [SSEClient(server.url, "/stream") for _ in range(2)]
        refused = SSEClient(server.url, "/stream")
        assert refused.status == 503
        assert refused.headers["Retry-After"]
        assert json.loads(refused.body())["error"]
        held[0].close()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            retry = SSEClient(server.url, "/stream")
            if retry.status == 200:
                break
            retry.close()
            time.sleep(0.2)
        assert retry.status == 200, "a freed place is given to the next client"
        for client in (retry, refused, held[1]):
            client.close()
