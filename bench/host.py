"""How fast the host is right now, apart from any server: run it before and after a set.

This VM's speed moves by two to three times within an hour, whatever ``/proc/loadavg``
says, so a figure is only comparable with one taken in the same spell. Two probes: the
CPU time of a 2 KB loopback TCP ``send`` and its ``recv`` (what a sweep's writes cost the
kernel), and the wall time of a pure Python loop (what the sweep's own code costs).

    python -m bench.host
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import statistics
import time

__all__ = ["main", "measure"]


def measure(pairs: int = 200, rounds: int = 5, size: int = 2048) -> dict[str, float]:
    """Microseconds a loopback send and recv (median of ``rounds``), milliseconds a loop."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(pairs)
    connected = []
    try:
        for _ in range(pairs):
            client = socket.create_connection(server.getsockname())
            accepted, _ = server.accept()
            accepted.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            client.setblocking(False)
            connected.append((accepted, client))
        data = b"x" * size
        per_pair = []
        for _ in range(rounds):
            started, count = time.process_time(), 0
            for _ in range(25):
                for sender, _ in connected:
                    sender.send(data)
                    count += 1
                for _, receiver in connected:
                    with contextlib.suppress(BlockingIOError):
                        receiver.recv(65536)
            per_pair.append((time.process_time() - started) / count * 1e6)
    finally:
        for pair in connected:
            for sock in pair:
                sock.close()
        server.close()
    started = time.perf_counter()
    sum(range(10**7))
    loop_ms = (time.perf_counter() - started) * 1000
    return {"send_recv_us": statistics.median(per_pair), "python_loop_ms": loop_ms}


def main(argv: list[str] | None = None) -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args(argv)
    figures = measure()
    with open("/proc/loadavg") as loadavg:
        load = loadavg.read().split()[0]
    print(f"loopback send+recv {figures['send_recv_us']:.1f} us; python sum(range(1e7)) "
          f"{figures['python_loop_ms']:.0f} ms; load {load}")


if __name__ == "__main__":
    main()
