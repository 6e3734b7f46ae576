"""Where a server's time goes during a measured window: ``py-spy record`` on its worker.

``Profiler`` samples a process (100 Hz, without pausing it) for a given time into a
collapsed-stack file (one line a stack, ``frame;frame;... count``); ``summary`` reads such
a file into the functions that took the most samples, on their own (self) and with what
they called (total), as shares of the samples of the busy thread.

    python -m bench.profile bench/results/profile-W-ticker-20261201-150000.txt
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

__all__ = ["Profiler", "summary"]


class Profiler:
    """``py-spy record`` of ``pid`` for ``seconds`` into ``out``, started and waited for."""

    def __init__(self, pid: int, out: Path, seconds: float, cpu: int | None) -> None:
        spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        command = [spy, "record", "--pid", str(pid), "--duration", str(max(1, round(seconds))),
                   "--rate", "100", "--nonblocking", "--format", "raw", "--output", str(out)]
        if cpu is not None and shutil.which("taskset"):
            command = ["taskset", "-c", str(cpu), *command]
        self.out = out
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)

    def finish(self, timeout: float = 30.0) -> Path | None:
        """Wait for the record to be written; the file, or None if py-spy failed."""
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return self.out if self.out.exists() else None


def _function(frame: str) -> str:
    """``name (path/to/file.py:123)`` as ``file.py:name``; other frames as they are."""
    name, _, where = frame.partition(" (")
    path = where.rsplit(":", 1)[0]
    return f"{Path(path).name}:{name}" if path else name


def summary(collapsed: str, top: int = 12) -> list[tuple[str, float, float]]:
    """The ``top`` functions by self samples: (function, self share, total share)."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        samples += n
        frames = [_function(f) for f in stack.split(";")]
        own[frames[-1]] += n
        for function in set(frames):
            total[function] += n
    if not samples:
        return []
    return [(f, n / samples, total[f] / samples) for f, n in own.most_common(top)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", type=Path, help="a py-spy raw (collapsed) record")
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args(argv)
    for function, own, total in summary(args.file.read_text(), args.top):
        print(f"{own:6.1%} self {total:6.1%} total  {function}")


if __name__ == "__main__":
    main()
