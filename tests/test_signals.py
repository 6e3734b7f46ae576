"""Every way of stopping the server is quiet: SIGINT, SIGQUIT and SIGTERM to the master, to
a worker, to the whole process group (Ctrl-C), and Ctrl-C on ``./dev demo``. No traceback
in the log, and open streams end within 2 s on SIGTERM and SIGINT."""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.servers import GUNICORN, ROOT, Gunicorn, free_port, run_gunicorn
from tests.sse_client import SSEClient

QUIET = ("Traceback", "failed with", "Exception ignored")


def assert_quiet(log: str) -> None:
    noise = [line for line in log.splitlines() if any(word in line for word in QUIET)]
    assert not noise, log


@contextlib.contextmanager
def gunicorn_in_own_group(tmp_path: Path, feed: str, workers: int = 2):
    """gunicorn as the leader of a new process group, as a terminal runs it."""
    port = free_port()
    log_path = tmp_path / f"gunicorn-{port}.log"
    environment = {k: v for k, v in os.environ.items()
                   if k not in ("PROMETHEUS_MULTIPROC_DIR", "WEB_CONCURRENCY")}
    environment["TICKER_FEED"] = feed
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [GUNICORN, "-c", "gunicorn.conf.py",
             "--bind", f"127.0.0.1:{port}", "--workers", str(workers)],
            cwd=ROOT, env=environment, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Gunicorn(proc, port, log_path, workers)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def streams_end_and_master_exits(server: Gunicorn, send) -> None:
    """Open streams and an idle keep-alive connection, ``send()`` a signal, and check the
    streams end in 2 s and the master in 5 s."""
    clients = [SSEClient(server.url, "/stream") for _ in range(4)]
    idle = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        idle.request("GET", "/healthz")
        assert idle.getresponse().read()
        for client in clients:
            client.next(type="snapshot")
        send()
        for client in clients:
            assert client.read_to_end(timeout=5) < 2
        server.proc.wait(5)
    finally:
        idle.close()
        for client in clients:
            client.close()


@pytest.mark.parametrize("name", ["SIGTERM", "SIGINT"])
def test_a_stop_signal_to_the_master_ends_streams_quietly(tmp_path, market, name):
    with run_gunicorn(tmp_path, market.feed, workers=2) as server:
        streams_end_and_master_exits(
            server, lambda: server.proc.send_signal(getattr(signal, name)))
        assert server.proc.returncode == 0
        assert_quiet(server.output())


def test_sigquit_to_the_master_is_quiet(tmp_path, market):
    with run_gunicorn(tmp_path, market.feed, workers=2) as server:
        server.proc.send_signal(signal.SIGQUIT)
        server.proc.wait(5)
        assert_quiet(server.output())


def test_ctrl_c_to_the_process_group_ends_streams_quietly(tmp_path, market):
    # A terminal's Ctrl-C reaches the master and every worker at once; the master then
    # sends SIGQUIT to the workers as well.
    for _ in range(3):
        with gunicorn_in_own_group(tmp_path, market.feed) as server:
            streams_end_and_master_exits(
                server, lambda: os.killpg(server.proc.pid, signal.SIGINT))
            assert_quiet(server.output())


@pytest.mark.parametrize("name", ["SIGINT", "SIGQUIT", "SIGTERM"])
def test_a_signal_to_a_worker_is_quiet_and_it_is_replaced(tmp_path, market, name):
    with run_gunicorn(tmp_path, market.feed, workers=1) as server:
        [worker] = server.worker_pids()
        with SSEClient(server.url, "/stream") as client:
            client.next(type="snapshot")
            os.kill(worker, getattr(signal, name))
            assert client.read_to_end(timeout=5) < 2
        deadline = time.monotonic() + 15
        while server.worker_pids() in ([], [worker]):
            assert time.monotonic() < deadline, "no new worker"
            time.sleep(0.1)
        server.wait_ready()
        assert server.get("/healthz")[0] == 200
        assert_quiet(server.output())


def test_ctrl_c_on_dev_demo_is_quiet(tmp_path):
    port = free_port()
    log_path = tmp_path / "demo.log"
    environment = {k: v for k, v in os.environ.items()
                   if k not in ("PROMETHEUS_MULTIPROC_DIR", "WEB_CONCURRENCY")}
    environment.update({"BIND": f"127.0.0.1:{port}", "WEB_CONCURRENCY": "2",
                        "TICKER_FEED": f"unix:{tmp_path / 'feed.sock'}"})
    for _ in range(3):
        with open(log_path, "wb") as log:
            demo = subprocess.Popen([str(ROOT / "dev"), "demo"], cwd=ROOT, env=environment,
                                    stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        server = Gunicorn(demo, port, log_path, workers=2)
        try:
            server.wait_ready(timeout=60)
            with SSEClient(server.url, "/stream") as client:
                client.next(type="snapshot")
                os.killpg(demo.pid, signal.SIGINT)
                assert client.read_to_end(timeout=5) < 2
            demo.wait(10)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()
        log = log_path.read_text(errors="replace")
        assert "stopped" in log
        assert_quiet(log)
