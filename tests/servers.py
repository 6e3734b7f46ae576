"""gunicorn as the tests run it: a real process on a free loopback port, stopped by PID."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The console script, as operators run it: a master re-executed on USR2 runs the same
# command again, and `python -m gunicorn` would put gunicorn's own package (with its
# `http` module) first on the new master's path.
GUNICORN = str(Path(sys.executable).with_name("gunicorn"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Gunicorn:
    """A running gunicorn master and what the tests need to reach it."""

    def __init__(self, proc: subprocess.Popen, port: int, log_path: Path, workers: int) -> None:
        self.proc = proc
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        self.workers = workers

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def get(self, path: str, timeout: float = 5.0, headers: dict | None = None):
        """``(status, headers, body)`` of one request; errors are answers too."""
        request = urllib.request.Request(self.url + path, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, response.headers, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers, exc.read()

    def worker_pids(self) -> list[int]:
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        return [int(pid) for pid in children.read_text().split()] if children.exists() else []

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Until every worker has logged that its feed is up."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.proc.returncode}:\n{self.output()}")
            if self.output().count(" up: epoch ") >= self.workers:
                return
            time.sleep(0.05)
        raise TimeoutError(f"gunicorn not ready in {timeout} s:\n{self.output()}")

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, then SIGKILL (master and workers) if it does not end in ``timeout``."""
        if self.proc.poll() is None:
            workers = self.worker_pids()
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                for pid in [self.proc.pid, *workers]:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                self.proc.wait()
        return self.proc.returncode


@contextlib.contextmanager
def run_gunicorn(
    tmp_path: Path, feed: str, *, workers: int = 2, env: dict | None = None,
    args: tuple[str, ...] = (), wait: bool = True, port: int | None = None,
) -> Iterator[Gunicorn]:
    """gunicorn with our gunicorn.conf.py, reading ``feed``, stopped when the block ends."""
    port = port or free_port()
    log_path = tmp_path / f"gunicorn-{port}-{time.monotonic_ns()}.log"
    environment = {k: v for k, v in os.environ.items()
                   if k not in ("PROMETHEUS_MULTIPROC_DIR", "WEB_CONCURRENCY")}
    environment.update({"TICKER_FEED": feed, **(env or {})})
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [GUNICORN, "-c", "gunicorn.conf.py",
             "--bind", f"127.0.0.1:{port}", "--workers", str(workers), *args],
            cwd=ROOT, env=environment, stdout=log, stderr=subprocess.STDOUT,
        )
    server = Gunicorn(proc, port, log_path, workers)
    try:
        if wait:
            server.wait_ready()
        yield server
    finally:
        server.stop()


def serving_worker(server: Gunicorn, client: socket.socket) -> int | None:
    """The pid of the gunicorn worker holding the other end of ``client``'s connection.

    Found the way ``ss -p`` does it: the connection's socket inode in /proc/net/tcp, then
    the worker whose file descriptors include that inode.
    """
    local_port = client.getsockname()[1]
    inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1].endswith(f":{server.port:04X}") and fields[2].endswith(f":{local_port:04X}"):
            inode = fields[9]
            break
    if inode is None:
        return None
    target = f"socket:[{inode}]"
    for pid in server.worker_pids():
        fd_dir = Path(f"/proc/{pid}/fd")
        with contextlib.suppress(OSError):
            for fd in fd_dir.iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) == target:
                        return pid
    return None
