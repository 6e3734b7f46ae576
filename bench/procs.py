"""The processes a benchmark runs: the market, ticker under gunicorn, the ceiling.

Each is pinned to a CPU with ``taskset``, logs to a file in a temporary directory,
and is stopped by PID (SIGTERM, then SIGKILL) when its block ends, whatever happened.
Readiness is ``GET /healthz`` answering 200, which both servers do once their feed is up.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

__all__ = [
    "Server", "cpu_seconds", "exit_on_sigterm", "free_port", "loadavg", "market", "memory_kb",
    "revision", "runqueue_seconds", "server", "stop",
]

ROOT = Path(__file__).resolve().parent.parent


def revision(root: Path = ROOT) -> str:
    """The commit the server code comes from, "+changes" if ticker/ differs from it."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                              check=False).stdout.strip()
    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    return commit + ("+changes" if git("status", "--porcelain", "--", "ticker") else "")


def exit_on_sigterm() -> None:
    """Make SIGTERM unwind like Ctrl-C, so every process started is stopped on the way out."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pinned(cpu: int | None, command: list[str]) -> list[str]:
    if cpu is None or not shutil.which("taskset"):
        return command
    return ["taskset", "-c", str(cpu), *command]


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process, from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def runqueue_seconds(pid: int | str) -> float:
    """Time a process has spent runnable but waiting for a CPU (/proc/PID/schedstat).

    On a shared machine this tells "starved" from "idle": a server whose CPU share is
    low while this grows was held back by other processes, not by its own design.
    """
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / 1e9


def loadavg() -> float:
    """The machine's load average over the last minute (/proc/loadavg)."""
    return float(Path("/proc/loadavg").read_text().split()[0])


def memory_kb(pid: int, field: str) -> int:
    """A field of /proc/PID/status in kB: ``VmRSS`` now, ``VmHWM`` at its peak."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def stop(proc: subprocess.Popen, others: list[int] = (), timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL to it and ``others`` (its children) if it lingers."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            for pid in [proc.pid, *others]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            proc.wait()


def _start(command: list[str], log: Path, env: dict[str, str],
           cwd: Path = ROOT) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen(command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env=env)


class Market:
    """A running simulator: its feed address, and a way to stop it early."""

    def __init__(self, proc: subprocess.Popen, feed: str, log: Path) -> None:
        self.proc = proc
        self.feed = feed
        self.log = log

    def stop(self) -> None:
        """Ask the market to close (SIGTERM) and return at once: it flushes what it
        published to its subscribers first, and the load generator must go on reading
        its own copy meanwhile. The ``market`` block's end waits for the process."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)


@contextlib.contextmanager
def market(tmp: Path, *, symbols: int, rate: float, seed: int, cpu: int | None) -> Iterator[Market]:
    """The simulator on a socket in ``tmp``, until the block ends."""
    path = tmp / f"market-{time.monotonic_ns()}.sock"
    log = tmp / "market.log"
    proc = _start(pinned(cpu, [sys.executable, "-m", "simulator", "run", "--feed", f"unix:{path}",
                               "--symbols", str(symbols), "--rate", str(rate),
                               "--seed", str(seed)]), log, dict(os.environ))
    try:
        deadline = time.monotonic() + 20
        while not path.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the market did not start:\n{log.read_text()[-2000:]}")
            time.sleep(0.05)
        yield Market(proc, f"unix:{path}", log)
    finally:
        stop(proc)


class Server:
    """A running server under test: where it listens and which process does the work."""

    def __init__(self, proc: subprocess.Popen, port: int, log: Path) -> None:
        self.proc = proc
        self.port = port
        self.log = log

    @property
    def workers(self) -> list[int]:
        """gunicorn's worker pids; the ceiling is its own worker."""
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        pids = [int(pid) for pid in children.read_text().split()] if children.exists() else []
        return pids or [self.proc.pid]

    def get(self, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}",
                                        timeout=timeout) as answer:
                return answer.status, answer.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited:\n{self.log.read_text()[-2000:]}")
            with contextlib.suppress(OSError):
                if self.get("/healthz", timeout=1.0)[0] == 200:
                    return
            time.sleep(0.1)
        raise TimeoutError(
            f"the server was not ready in {timeout} s:\n{self.log.read_text()[-2000:]}")


@contextlib.contextmanager
def server(kind: str, tmp: Path, feed: str, *, streams: int, cpu: int | None,
           root: Path = ROOT) -> Iterator[Server]:
    """``ticker`` (gunicorn, one worker) or ``ceiling`` reading ``feed``, until the block ends.

    ``root``: the checkout ticker is run from (another commit's, in a ``git worktree``, to
    compare with); the ceiling always comes from this one.
    """
    port = free_port()
    log = tmp / f"{kind}.log"
    if kind == "ticker":
        command = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--workers", "1",
                   "--bind", f"127.0.0.1:{port}", "--backlog", "4096"]
        # Room for the reference stream and the odd API call beside the streams measured.
        env = {"TICKER_FEED": feed, "TICKER_MAX_STREAMS": str(streams + 100),
               "PYTHONPATH": str(root)}
    else:
        root = ROOT
        command = [sys.executable, "-m", "bench.ceiling", "--feed", feed,
                   "--bind", f"127.0.0.1:{port}"]
        env = {}
    environment = {k: v for k, v in os.environ.items()
                   if k not in ("PROMETHEUS_MULTIPROC_DIR", "WEB_CONCURRENCY")}
    environment.update(env)
    proc = _start(pinned(cpu, command), log, environment, cwd=root)
    running = Server(proc, port, log)
    workers: list[int] = []
    try:
        running.wait_ready()
        workers = running.workers
        yield running
    finally:
        stop(proc, workers)
