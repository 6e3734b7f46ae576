"""One client that never stops sending cannot stall a worker; running out of descriptors
costs a line a second and no traceback. Against a real gunicorn with one worker."""

from __future__ import annotations

import contextlib
import http.client
import os
import resource
import select
import socket
import threading
import time

import pytest

from tests.servers import run_gunicorn
from tests.sse_client import SSEClient

_PIPELINED = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
ENDLESS = {
    # What one client sends first, then what it sends again and again for as long as it may.
    "request line": (b"GET /healthz?x=", b"a" * 65536),
    "header": (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Endless: ", b"a" * 65536),
    "chunked body": (
        b"POST /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"10000\r\n" + b"a" * 0x10000 + b"\r\n",
    ),
    "pipelined requests": (b"", _PIPELINED * 2000),
}


def attack(port: int, opening: bytes, filler: bytes, stop: threading.Event) -> None:
    """Send ``opening``, then ``filler`` endlessly while reading whatever comes back;
    connect again whenever the server hangs up."""
    while not stop.is_set():
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(opening)
            sock.setblocking(False)
            pending = filler
            while not stop.is_set():
                readable, writable, _ = select.select([sock], [sock], [], 0.5)
                if readable and not sock.recv(1 << 20):
                    break
                if writable:
                    with contextlib.suppress(BlockingIOError):
                        pending = pending[sock.send(pending):] or filler


def poll_healthz(port: int, stop: threading.Event, times: list[float]) -> None:
    """``GET /healthz`` every 0.2 s on a fresh connection; each answer's time, or inf."""
    while not stop.wait(0.2):
        started = time.monotonic()
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            connection.request("GET", "/healthz")
            status = connection.getresponse().status
            times.append(time.monotonic() - started if status == 200 else float("inf"))
        except OSError:
            times.append(float("inf"))
        finally:
            connection.close()


@pytest.mark.parametrize("what", list(ENDLESS))
def test_one_endless_sender_stalls_nobody(tmp_path, market, what):
    with run_gunicorn(tmp_path, market.feed, workers=1) as server, \
            SSEClient(server.url, "/stream") as stream:
        [worker] = server.worker_pids()
        stream.next(type="snapshot")
        stop = threading.Event()
        healthz: list[float] = []
        threads = [
            threading.Thread(target=attack, args=(server.port, *ENDLESS[what], stop)),
            threading.Thread(target=poll_healthz, args=(server.port, stop, healthz)),
        ]
        for thread in threads:
            thread.start()
        arrivals = []
        try:
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                with contextlib.suppress(TimeoutError):
                    stream.next(timeout=max(0.01, deadline - time.monotonic()), type="price")
                    arrivals.append(time.monotonic())
        finally:
            stop.set()
            for thread in threads:
                thread.join(15)
        gaps = [b - a for a, b in zip(arrivals, arrivals[1:], strict=False)]
        # 40 ticks/s over 12 symbols: a healthy stream has a price every few tens of ms.
        assert len(arrivals) > 50, f"the stream got {len(arrivals)} prices in 5 s"
        assert max(gaps) < 2, f"the stream went silent for {max(gaps):.1f} s"
        assert len(healthz) >= 10 and max(healthz) < 2, f"/healthz answered in {healthz}"
        assert server.worker_pids() == [worker], "the worker was not replaced"
        assert "Traceback" not in server.output()


def test_out_of_descriptors_one_line_a_second_then_serving_again(tmp_path, market):
    with run_gunicorn(tmp_path, market.feed, workers=1) as server:
        [worker] = server.worker_pids()
        # Room for 20 more descriptors in the worker: idle connections soon use them up.
        spare = len(os.listdir(f"/proc/{worker}/fd")) + 20
        resource.prlimit(worker, resource.RLIMIT_NOFILE, (spare, spare))
        held = []
        try:
            for _ in range(100):
                held.append(socket.create_connection(("127.0.0.1", server.port), timeout=5))
            started = time.monotonic()
            time.sleep(3)
            lines = [line for line in server.output().splitlines() if "accept failed" in line]
            elapsed = time.monotonic() - started
            assert lines and "EMFILE" in lines[0]
            assert len(lines) <= elapsed + 2, lines
        finally:
            for sock in held:
                sock.close()
        deadline = time.monotonic() + 10
        while server.get("/healthz", timeout=5)[0] != 200:
            assert time.monotonic() < deadline, "the worker did not serve again"
            time.sleep(0.2)
        assert server.get("/api/symbols")[0] == 200
        assert "Traceback" not in server.output()
