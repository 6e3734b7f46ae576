"""The simulator as the tests run it: a real process on a socket under ``tmp_path``.

It is ready once it logs that the market is open: its socket is in place and accepting
by then (a stale socket file left at the path may exist before). It is stopped by PID:
SIGTERM, then SIGKILL if it hangs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class Simulator:
    """A running ``python -m simulator run`` and what the tests need to reach it."""

    def __init__(self, proc: subprocess.Popen, path: Path, log_path: Path) -> None:
        self.proc = proc
        self.path = path
        self.feed = f"unix:{path}"
        self.log_path = log_path

    def output(self) -> str:
        """Its log so far (stdout and stderr)."""
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while " market open on " not in self.output():
            if self.proc.poll() is not None:
                code = self.proc.returncode
                raise RuntimeError(f"simulator exited with {code}:\n{self.output()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"simulator not ready in {timeout} s:\n{self.output()}")
            time.sleep(0.02)

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, then SIGKILL if it does not end in ``timeout``; its exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


@contextlib.contextmanager
def run_simulator(tmp_path: Path, *args: str, wait: bool = True) -> Iterator[Simulator]:
    """``python -m simulator run --feed unix:TMP_PATH/feed.sock ARGS``, stopped at the end.

    Example: ``with run_simulator(tmp_path, "--seed", "1", "--rate", "200") as sim: ...``
    """
    path = Path(tmp_path) / "feed.sock"
    log_path = Path(tmp_path) / f"simulator-{time.monotonic_ns()}.log"
    environment = {k: v for k, v in os.environ.items() if k != "TICKER_FEED"}
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "simulator", "run", "--feed", f"unix:{path}", *args],
            cwd=ROOT, env=environment, stdout=log, stderr=subprocess.STDOUT,
        )
    simulator = Simulator(proc, path, log_path)
    try:
        if wait:
            simulator.wait_ready()
        yield simulator
    finally:
        simulator.stop()
