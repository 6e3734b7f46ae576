"""The ceiling: the least a gevent server can do to send ticker's streams their events.

A raw ``gevent.server.StreamServer``, no WSGI, no Flask: it reads the same market feed,
encodes each tick once into the same ``price`` frame ticker sends (same encoder, same
quote fields, same ``EPOCH-SEQ`` id, so the same size), and one sweeper greenlet writes
each subscription's new frames to every socket of it: one join and one chunk per group,
one non-blocking write per socket per sweep, and the same pacing as ticker's sweeper
(the next sweep no sooner than ``max(flush_ms, half the last sweep)``). A socket that
cannot take everything keeps the rest in front of its next write; there is no log, no
resume, no conflation, no heartbeat, no metrics. What ticker does beyond this is what
its ratio to the ceiling measures.

    python -m bench.ceiling --feed unix:/tmp/market.sock --bind 127.0.0.1:8100
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import time
from urllib.parse import parse_qs, urlsplit

import gevent
from gevent import socket
from gevent.event import Event
from gevent.server import StreamServer

from bench.loadgen import raise_nofile
from simulator import address, wire
from ticker import sse

__all__ = ["Ceiling"]

_HEADERS = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
            b"X-Accel-Buffering: no\r\nTransfer-Encoding: chunked\r\n\r\n")
_RETRY = sse.encode(retry=2000)


def _chunk(body: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(body), body)


def _seq(item: tuple) -> int:
    return item[0]


def _join(items) -> bytes:
    return b"".join(frame for _, _, frame in items)


def _dumps(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))


class _Client:
    __slots__ = ("sock", "fd", "key", "after", "pending", "done")

    def __init__(self, sock: socket.socket, key: frozenset[str] | None, after: int,
                 first: bytes) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.key = key
        self.after = after  # the seq its snapshot is as of
        self.pending = [first]
        self.done = Event()


class Ceiling:
    """The market's latest quotes, the frames since the last sweep, and every socket."""

    def __init__(self, feed: str, flush_ms: float = 2.0) -> None:
        self.feed = address.parse(feed)
        self.min_pause = flush_ms / 1000
        self.epoch = ""
        self.head = 0
        self.up = False
        self.quotes: dict[str, str] = {}  # symbol: quote JSON
        self.new: list[tuple[int, str | None, bytes]] = []  # (seq, symbol or None: all, frame)
        self.groups: dict[frozenset[str] | None, list[_Client]] = {}
        self.joining: list[_Client] = []  # new sockets, written from the next sweep on
        self.wake = Event()

    # The feed ------------------------------------------------------------------------

    def read_feed(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(self.feed.path)
        decoder = wire.Decoder()
        with sock:
            while data := sock.recv(256 * 1024):
                for message in decoder.feed(data):
                    if isinstance(message, dict):
                        self._apply(message)
                self.wake.set()
        self.up = False
        self.new.append((self.head, None, sse.encode('{"feed":"down"}', event="status")))
        self.wake.set()

    def _apply(self, message: dict) -> None:
        kind = message.get("type")
        if kind == "tick":
            quote = wire.parse_quote(message)
            data = self.quotes[quote["symbol"]] = _dumps(quote)
            self.head = quote["seq"]
            frame = sse.encode(data, event="price", id=f"{self.epoch}-{self.head}")
            self.new.append((self.head, quote["symbol"], frame))
        elif kind == "hello":
            self.epoch = wire.parse_hello(message)[0]
        elif kind == "snapshot":
            self.head, quotes = wire.parse_snapshot(message)
            self.quotes = {quote["symbol"]: _dumps(quote) for quote in quotes}
            self.up = True

    # The streams ---------------------------------------------------------------------

    def handle(self, sock: socket.socket, _address) -> None:
        """Read one request; answer ``/healthz``, or open a stream and wait for its end."""
        request = b""
        while b"\r\n\r\n" not in request:
            data = sock.recv(16384)
            if not data or len(request) > 65536:
                return
            request += data
        target = urlsplit(request.split(b" ", 2)[1].decode("latin-1"))
        if target.path == "/healthz":
            status = b"200 OK" if self.up else b"503 Service Unavailable"
            sock.sendall(b"HTTP/1.1 %s\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
                         % status)
            return
        listed = parse_qs(target.query).get("symbols")
        key = frozenset(listed[0].split(",")) if listed else None
        quotes = ",".join(q for s, q in self.quotes.items() if key is None or s in key)
        snapshot = sse.encode(f'{{"quotes":[{quotes}]}}', event="snapshot",
                              id=f"{self.epoch}-{self.head}")
        status = sse.encode('{"feed":"up"}', event="status")
        client = _Client(sock, key, self.head, _HEADERS + _chunk(_RETRY + snapshot + status))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as gunicorn's sockets
        sock.setblocking(False)
        self.joining.append(client)
        self.wake.set()
        client.done.wait()

    def sweep(self) -> None:
        """Forever: wait for frames, write them to every socket, pause like ticker does."""
        while True:
            self.wake.wait()
            self.wake.clear()
            started = time.monotonic()
            new, self.new = self.new, []
            everyone = b"".join(frame for _, _, frame in new)
            by_symbol: dict[str | None, list[tuple[int, str | None, bytes]]] = {}
            for item in new:
                by_symbol.setdefault(item[1], []).append(item)
            for key, members in list(self.groups.items()):
                body = everyone if key is None else _join(self._select(by_symbol, key))
                if body or any(c.pending for c in members):
                    data = _chunk(body) if body else b""
                    for client in list(members):
                        self._write(client, data)
            joining, self.joining = self.joining, []
            for client in joining:
                # Its snapshot already holds the ticks up to ``after``.
                picked = new if client.key is None else self._select(by_symbol, client.key)
                body = _join(item for item in picked if item[0] > client.after)
                self.groups.setdefault(client.key, []).append(client)
                self._write(client, _chunk(body) if body else b"")
            gevent.sleep(max(self.min_pause, (time.monotonic() - started) / 2))

    @staticmethod
    def _select(by_symbol: dict, key: frozenset[str]) -> list[tuple[int, str | None, bytes]]:
        """The frames for the symbols of ``key`` in seq order, then those for all."""
        picked = []
        for symbol in key:
            picked.extend(by_symbol.get(symbol, ()))
        picked.sort(key=_seq)
        picked.extend(by_symbol.get(None, ()))
        return picked

    def _write(self, client: _Client, data: bytes) -> None:
        """One non-blocking write of what the socket still owes and ``data``.

        What it cannot take waits, as a list (joining would copy the whole backlog on
        every sweep), in front of the next write.
        """
        pending = client.pending
        if data:
            pending.append(data)
        if not pending:
            return
        try:
            written = os.writev(client.fd, pending[:512])  # within IOV_MAX
        except BlockingIOError:
            return
        except OSError:
            self._drop(client)
            return
        while pending and written >= len(pending[0]):
            written -= len(pending.pop(0))
        if written:
            pending[0] = pending[0][written:]

    def _drop(self, client: _Client) -> None:
        for members in self.groups.values():
            if client in members:
                members.remove(client)
        with contextlib.suppress(OSError):
            client.sock.shutdown(socket.SHUT_RDWR)
        client.done.set()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--feed", required=True, help="the market, unix:PATH")
    parser.add_argument("--bind", default="127.0.0.1:8100", metavar="HOST:PORT")
    parser.add_argument("--flush-ms", type=float, default=2.0,
                        help="shortest pause between sweeps, as TICKER_FLUSH_MS")
    args = parser.parse_args(argv)
    raise_nofile(1024)
    host, _, port = args.bind.rpartition(":")
    ceiling = Ceiling(args.feed, args.flush_ms)
    server = StreamServer((host, int(port)), ceiling.handle, backlog=4096)
    server.start()
    greenlets = [gevent.spawn(ceiling.read_feed), gevent.spawn(ceiling.sweep)]
    stop = Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        gevent.signal_handler(signum, stop.set)
    stop.wait()
    server.stop(timeout=1)
    gevent.killall(greenlets)


if __name__ == "__main__":
    main()
