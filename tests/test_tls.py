"""HTTPS straight from gunicorn: streams, resume, the API and a slow reader, all over TLS."""

from __future__ import annotations

import json
import socket
import ssl
import time
import urllib.request

import pytest

from tests.nginx_proc import make_certificate
from tests.procs import run_simulator
from tests.servers import run_gunicorn
from tests.sse_client import SSEClient


@pytest.fixture
def certificate(tmp_path):
    """A self-signed certificate for 127.0.0.1, and its key, valid for a day."""
    return make_certificate(tmp_path)


@pytest.fixture
def trusting(certificate):
    """A client context that trusts exactly that certificate (and checks the host name)."""
    return ssl.create_default_context(cafile=str(certificate[0]))


def tls_env(certificate) -> dict[str, str]:
    return {"TICKER_TLS_CERT": str(certificate[0]), "TICKER_TLS_KEY": str(certificate[1])}


def seqs(events):
    return [e.json()["seq"] for e in events if e.type == "price"]


def test_a_stream_over_https_gets_its_snapshot_live_prices_and_resumes(
    tmp_path, market, certificate, trusting
):
    with run_gunicorn(tmp_path, market.feed, workers=1, env=tls_env(certificate)) as server:
        url = f"https://127.0.0.1:{server.port}"
        with urllib.request.urlopen(url + "/api/symbols", context=trusting, timeout=10) as r:
            assert r.status == 200 and json.loads(r.read())

        with SSEClient(url, "/stream", ssl_context=trusting) as client:
            assert client.status == 200
            assert client.sock.version() in ("TLSv1.2", "TLSv1.3")
            snapshot = client.next(type="snapshot")
            assert snapshot.json()["quotes"]
            client.read_until(lambda e: len(seqs(client.events)) >= 20, timeout=15)
            first = seqs(client.events)
            # Every symbol is streamed, so every tick arrives: consecutive seqs, none lost.
            assert first == list(range(first[0], first[0] + len(first)))
            assert first[0] == int(snapshot.id.rsplit("-", 1)[1]) + 1
            last_id = client.parser.last_event_id

        time.sleep(0.5)  # ticks pass while disconnected
        with SSEClient(url, "/stream", last_event_id=last_id, ssl_context=trusting) as client:
            assert client.status == 200
            client.read_until(lambda e: len(seqs(client.events)) >= 20, timeout=15)
            resumed = seqs(client.events)
            assert "snapshot" not in {e.type for e in client.events}
            assert resumed == list(range(first[-1] + 1, first[-1] + 1 + len(resumed)))

        # Plain HTTP on the TLS port gets no HTTP answer, and one line in the log.
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as plain:
            plain.sendall(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
            try:
                answer = plain.recv(4096)
            except ConnectionResetError:
                answer = b""
            assert not answer.startswith(b"HTTP/")
        deadline = time.monotonic() + 5
        while "http request" not in server.output() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "Invalid request from ip=127.0.0.1" in server.output()
        assert "Traceback" not in server.output()


def test_a_reader_that_falls_behind_over_tls_catches_up_intact(tmp_path, certificate, trusting):
    # Some 3,000 ticks (over 500 KB) pile up while the client reads nothing: more than the
    # socket buffers on both ends hold, so the server's non-blocking TLS sends come back
    # short and must carry on exactly where they stopped.
    with run_simulator(tmp_path, "--seed", "3", "--symbols", "20", "--rate", "1000") as sim, \
            run_gunicorn(tmp_path, sim.feed, workers=1, env=tls_env(certificate)) as server:
        url = f"https://127.0.0.1:{server.port}"
        with SSEClient(url, "/stream", ssl_context=trusting) as client:
            paused_at = int(client.next(type="snapshot").id.rsplit("-", 1)[1])
            time.sleep(3)
            target = paused_at + 5000
            client.read_until(
                lambda e: e.type == "price" and e.json()["seq"] >= target, timeout=30)
            got = seqs(client.events)
            assert got == sorted(set(got)), "no tick twice, none out of order"
            # It got the backlog, or (paced as a reader that fell behind) was told it
            # skipped some: either way the TLS stream stayed intact to the target.
            told = [e.json() for e in client.events if e.type == "snapshot"][1:]
            assert len(got) > 1000 or (
                told and all(t["reason"] == "lagging" and t["skipped"] > 0 for t in told))
        with urllib.request.urlopen(url + "/healthz", context=trusting, timeout=10) as r:
            assert r.status == 200
        assert "Traceback" not in server.output()
        assert "dropping" not in server.output()
