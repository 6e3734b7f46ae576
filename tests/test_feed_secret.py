"""A market with a shared secret (for tcp:// feeds) talks only to who sends it first."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

from tests.procs import ROOT, run_simulator
from tests.servers import free_port, run_gunicorn
from tests.sse_client import SSEClient

SECRET = "s3cret-feed-key"


def first_line(port: int, send: bytes) -> tuple[dict, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(send)
        data = b""
        while b"\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        rest = sock.recv(65536) if b"\n" in data else b""
    return json.loads(data.split(b"\n")[0]), rest


def cli(*args, secret=None):
    env = {"PATH": "/usr/bin:/bin", **({"TICKER_FEED_SECRET": secret} if secret else {})}
    return subprocess.run([sys.executable, "-m", "simulator", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=30)


def test_a_tcp_feed_with_a_secret(tmp_path, monkeypatch):
    port = free_port()
    feed = f"tcp://127.0.0.1:{port}"
    monkeypatch.setenv("TICKER_FEED_SECRET", SECRET)
    with run_simulator(tmp_path, "--feed", feed, "--seed", "2", "--symbols", "5") as market:
        monkeypatch.delenv("TICKER_FEED_SECRET")
        refused, rest = first_line(port, b'{"op":"symbols"}\n')
        assert refused["type"] == "error" and "secret" in refused["error"]
        assert rest == b"", "nothing, not even the hello, before the secret"
        wrong, _ = first_line(port, b'{"op":"auth","secret":"guess"}\n')
        assert wrong["type"] == "error"
        hello, _ = first_line(port, json.dumps({"op": "auth", "secret": SECRET}).encode() + b"\n")
        assert hello["type"] == "hello"

        denied = cli("symbols", "--feed", feed)
        assert denied.returncode != 0 and len(denied.stderr.strip().splitlines()) == 1
        allowed = cli("symbols", "--feed", feed, secret=SECRET)
        assert allowed.returncode == 0 and len(allowed.stdout.splitlines()) == 5

        with run_gunicorn(tmp_path, feed, workers=1,
                          env={"TICKER_FEED_SECRET": SECRET}) as server, \
                SSEClient(server.url, "/stream") as client:
            assert len(client.next(type="snapshot").json()["quotes"]) == 5
            assert client.next(type="price").json()["seq"] > 0
        assert "refused a subscriber without the shared secret" in market.output()
