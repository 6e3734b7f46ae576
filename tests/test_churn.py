"""Churn: twenty thousand streams opened and dropped leave nothing behind in the worker."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

from tests.servers import run_gunicorn

CYCLES = 20_000


def cycle(port: int, path: bytes) -> None:
    """Open a stream, wait for its first frames, and drop the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: churn\r\n\r\n")
        data = b""
        while b"event: snapshot" not in data:
            chunk = sock.recv(65536)
            assert chunk, "the server closed a fresh stream"
            data += chunk
        assert data.startswith(b"HTTP/1.1 200")


def footprint(server) -> dict:
    [pid] = server.worker_pids()
    status = Path(f"/proc/{pid}/status").read_text()
    rss = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS"))
    _, _, body = server.get("/healthz")
    streams = int(body.split(b'"streams":')[1].split(b"}")[0])
    return {"fds": len(os.listdir(f"/proc/{pid}/fd")), "rss_kb": rss, "streams": streams}


def settled(server, deadline: float) -> dict:
    """The worker's footprint once every dropped stream has been noticed and freed."""
    while True:
        now = footprint(server)
        if now["streams"] == 0 or time.monotonic() > deadline:
            return now
        time.sleep(0.1)


def test_twenty_thousand_connects_and_disconnects_leave_nothing_behind(tmp_path, market):
    with run_gunicorn(tmp_path, market.feed, workers=1) as server:
        paths = [b"/stream", b"/stream?symbols=" + b",".join(
            c.split(b'"')[0] for c in server.get("/api/symbols")[2].split(b'"symbol":"')[1:4])]
        for n in range(1_000):  # warm up: first use of every code path and allocator arena
            cycle(server.port, paths[n % 2])
        before = settled(server, time.monotonic() + 10)
        for n in range(CYCLES):
            cycle(server.port, paths[n % 2])
        after = settled(server, time.monotonic() + 15)
        assert before["streams"] == after["streams"] == 0
        assert abs(after["fds"] - before["fds"]) <= 2, (before, after)
        assert after["rss_kb"] <= before["rss_kb"] * 1.05, (before, after)
        assert "Traceback" not in server.output()
