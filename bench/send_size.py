"""What one non-blocking ``send`` takes on loopback TCP, by kernel buffer, however fast the
reader: why the sweeper widens the buffer of a stream whose reader took all it was given
(``ticker/fanout.py``) instead of pacing it, and how far.

For each ``SO_SNDBUF`` asked for, one stream is offered 1 MiB through ``writes.send``, as
the sweeper offers a pass's write; the reader then takes every byte, and the next try
comes 10 ms later, as a look comes a pass later.

    python -m bench.send_size
"""

from __future__ import annotations

import argparse
import socket
import statistics
import time

from ticker import writes

__all__ = ["main", "measure"]

_OFFER = b"x" * (1 << 20)


def measure(buffers: list[int], tries: int = 20) -> dict[int, list[int]]:
    """Bytes one send took, each try, for each buffer size asked for (bytes)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    taken: dict[int, list[int]] = {}
    try:
        for size in buffers:
            reader = socket.create_connection(listener.getsockname())
            sender, _ = listener.accept()
            with reader, sender:
                sender.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)
                sender.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sender.setblocking(False)
                taken[size] = []
                for _ in range(tries):
                    sent = writes.send(sender, _OFFER)
                    taken[size].append(sent)
                    received = 0
                    while received < sent:
                        received += len(reader.recv(1 << 20))
                    time.sleep(0.01)  # the next look comes a pass later
    finally:
        listener.close()
    return taken


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tries", type=int, default=20)
    args = parser.parse_args(argv)
    for size, sent in measure([16 << 10, 32 << 10, 64 << 10, 128 << 10], args.tries).items():
        print(f"SO_SNDBUF {size >> 10:>3} KiB: one send takes {statistics.median(sent) / 1024:.0f} "
              f"KiB (median of {len(sent)}; {min(sent) / 1024:.0f} to {max(sent) / 1024:.0f})")


if __name__ == "__main__":
    main()
