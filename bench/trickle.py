"""Stuck and trickling readers beside normal ones: what do they cost everybody else?

A thousand normal streams are measured twice on one gunicorn worker: alone, then with a
hundred more streams whose clients read one byte a second. The normal streams' p99
latency should barely move, the server's memory should stay bounded, and the trickling
streams should be dropped once their sockets stay full for ``TICKER_STALL_S``.

    python -m bench.trickle --streams 1000 --trickle 100 --window 20
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import tempfile
import threading
import time
from pathlib import Path

from bench.loadgen import LoadGen
from bench.procs import exit_on_sigterm, market, memory_kb, server

__all__ = ["main"]


def trickle(port: int, count: int, stop: threading.Event) -> None:
    """``count`` streams whose clients read one byte a second until ``stop``."""
    socks = []
    for n in range(count):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.bind((f"127.0.1.{n % 250 + 2}", 0))
        sock.connect(("127.0.0.1", port))
        sock.sendall(b"GET /stream HTTP/1.1\r\nHost: trickle\r\n\r\n")
        sock.setblocking(False)
        socks.append(sock)
    while not stop.wait(1.0):
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.recv(1)
    for sock in socks:
        sock.close()


def dropped(srv) -> float:
    _, body = srv.get("/metrics")
    for line in body.decode().splitlines():
        if line.startswith('ticker_streams_dropped_total{reason="stalled"}'):
            return float(line.split()[1])
    return 0.0


def measure(streams: int, trickling: int, window: float) -> dict:
    with tempfile.TemporaryDirectory(prefix="ticker-trickle-") as name:
        tmp = Path(name)
        with market(tmp, symbols=50, rate=100, seed=1, cpu=1) as feed, \
                server("ticker", tmp, feed.feed, streams=streams + trickling, cpu=0) as srv:
            stop = threading.Event()
            slow = threading.Thread(target=trickle, args=(srv.port, trickling, stop))
            slow.start()
            try:
                [worker] = srv.workers
                generator = LoadGen("127.0.0.1", srv.port, streams=streams, symbols=None,
                                    log=lambda line: None)
                result = generator.run(warmup=2.0, window=window)
                generator.close()
                result["server_peak_kb"] = memory_kb(worker, "VmHWM")
                result["stalled_dropped"] = dropped(srv)
            finally:
                stop.set()
                slow.join()
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--trickle", type=int, default=100)
    parser.add_argument("--window", type=float, default=20.0)
    parser.add_argument("--stall", type=float, default=10.0, help="TICKER_STALL_S for the run")
    args = parser.parse_args(argv)
    exit_on_sigterm()
    os.environ["TICKER_STALL_S"] = str(args.stall)  # the server inherits it
    rows = {}
    for label, trickling in (("alone", 0), (f"+{args.trickle} trickling", args.trickle)):
        figures = measure(args.streams, trickling, args.window)
        rows[label] = figures
        lat = figures["latency_ms"]
        print(f"{label:<16} events/s {figures['events_per_s']:>9,.0f}  delivered "
              f"{figures['delivery_ratio']:.4%}  p50 {lat['p50']} ms  p99 {lat['p99']} ms  "
              f"peak RSS {figures['server_peak_kb'] / 1024:.0f} MiB  "
              f"stalled streams dropped {figures['stalled_dropped']:.0f}", flush=True)
    base, loaded = (rows[k]["latency_ms"]["p99"] for k in rows)
    print(f"p99 with trickling readers / alone: {loaded / base:.2f}")
    out = Path(__file__).parent / "results" / f"trickle-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(rows, indent=1, default=str))


if __name__ == "__main__":
    main()
