"""The ceiling: the least a gevent server can do to send ticker's streams their events.

A raw ``gevent.server.StreamServer``, no WSGI, no Flask: it reads the same market feed,
encodes each tick once into the same ``price`` frame ticker sends (same encoder, same
quote fields, same ``EPOCH-SEQ`` id, so the same size), and sweeps as ticker does:
streams with the same symbols form a group, each tick's frame goes as it arrives to the
groups that want it (an index by symbol), and one sweeper greenlet serves only the groups
with frames waiting, each at most once a pass, writing each socket what it has not had
in one non-blocking write (sockets owed the same frames share one joined chunk). It lets
the feed reader run every 2 ms of a pass, within a group too, so a socket reached late
carries what arrived until then, and pauses ``flush_ms`` between passes. A socket that
cannot take everything keeps the rest in front of its next write. A stream silent for
``heartbeat_s`` gets a comment, as ticker's do (proxies cut silent streams), found at
the front of the streams ordered by their last write. There is no log, no resume, no
conflation, no pacing, no metrics. What ticker does beyond this is what its ratio to the
ceiling measures.

    python -m bench.ceiling --feed unix:/tmp/market.sock --bind 127.0.0.1:8100
"""

from __future__ import annotations

import argparse
import contextlib
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
from ticker.subscriptions import Quiet

__all__ = ["Ceiling"]

_HEADERS = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
            b"X-Accel-Buffering: no\r\nTransfer-Encoding: chunked\r\n\r\n")
_RETRY = sse.encode(retry=2000)
_GIVE_WAY_S = 0.002  # as ticker's sweeper: the feed reader runs at least this often


def _chunk(body: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(body), body)


class _Client:
    __slots__ = ("sock", "fd", "group", "pending", "done")

    def __init__(self, sock: socket.socket, group: _Group, first: bytes) -> None:
        self.sock = sock
        self.group = group
        self.fd = sock.fileno()
        self.pending = [first]
        self.done = Event()


class _Group:
    """The sockets of one subscription and the frames some of them are owed: frame
    number ``base + i`` is ``frames[i]``, and each socket's mark is the number of the
    first frame it has not had."""

    __slots__ = ("members", "frames", "base", "served", "queued")

    def __init__(self) -> None:
        self.members: dict[_Client, int] = {}
        self.frames: list[bytes] = []
        self.base = 0
        self.served = 0  # the pass that last served it
        self.queued = False  # in the dirty groups

    @property
    def end(self) -> int:
        return self.base + len(self.frames)


class Ceiling:
    """The market's latest quotes, the groups indexed by symbol, the dirty ones, the sockets."""

    def __init__(self, feed: str, flush_ms: float = 2.0, heartbeat_s: float = 10.0) -> None:
        self.feed = address.parse(feed)
        self.min_pause = flush_ms / 1000
        self.heartbeat_s = heartbeat_s
        self.epoch = ""
        self.head = 0
        self.up = False
        self.quotes: dict[str, bytes] = {}  # symbol: quote JSON
        self.groups: dict[frozenset[str] | None, _Group] = {}
        self.by_symbol: dict[str, list[_Group]] = {}
        self.every: list[_Group] = []  # the groups of every symbol
        self.dirty: dict[_Group, None] = {}  # groups with frames waiting, in that order
        self.behind: dict[_Client, None] = {}  # new sockets, owed their first bytes
        self.quiet = Quiet()  # by the second of the last write
        self.passes = 0
        self.slice_start = 0.0  # when the feed reader last had a turn
        self.wake = Event()

    # The feed ------------------------------------------------------------------------

    def read_feed(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(self.feed.path)
        decoder = wire.Decoder(ticks=True)
        with sock:
            while data := sock.recv(256 * 1024):
                for message in decoder.feed(data):
                    if isinstance(message, wire.Tick):
                        self.tick(message)
                    elif isinstance(message, dict):
                        self._apply(message)
                self.wake.set()
                gevent.sleep(0)  # as ticker's feed reader: a read never shuts out the sweeper
        self.up = False
        down = sse.encode('{"feed":"down"}', event="status")
        for group in self.groups.values():
            self._owe(group, down)
        self.wake.set()

    def tick(self, tick: wire.Tick) -> None:
        """A tick from the market: its frame goes to the groups that want it."""
        self.quotes[tick.symbol] = tick.data
        self.head = tick.seq
        frame = sse.encode_line(tick.data, event="price", id=f"{self.epoch}-{self.head}")
        dirty = self.dirty
        for groups in (self.by_symbol.get(tick.symbol, ()), self.every):
            for group in groups:
                group.frames.append(frame)
                if not group.queued:
                    group.queued = True
                    dirty[group] = None

    def _apply(self, message: dict) -> None:
        kind = message.get("type")
        if kind == "tick":
            self.tick(wire.parse_tick(message))
        elif kind == "hello":
            self.epoch = wire.parse_hello(message)[0]
        elif kind == "snapshot":
            self.head, quotes = wire.parse_snapshot(message)
            self.quotes = {quote["symbol"]: wire.Tick.of(quote).data for quote in quotes}
            self.up = True

    def _owe(self, group: _Group, frame: bytes) -> None:
        group.frames.append(frame)
        group.queued = True
        self.dirty[group] = None

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
        known = self.quotes
        quotes = b",".join(known.values() if key is None else
                           (known[symbol] for symbol in key if symbol in known))
        snapshot = sse.encode_line(b'{"quotes":[%s]}' % quotes, event="snapshot",
                                   id=f"{self.epoch}-{self.head}")
        status = sse.encode('{"feed":"up"}', event="status")
        client = self.join(sock, key, _HEADERS + _chunk(_RETRY + snapshot + status))
        client.done.wait()

    def group_of(self, key: frozenset[str] | None) -> _Group:
        """The group of ``key``'s sockets, made and indexed by symbol if it is new."""
        group = self.groups.get(key)
        if group is None:
            group = self.groups[key] = _Group()
            for symbol in key or ():
                self.by_symbol.setdefault(symbol, []).append(group)
            if key is None:
                self.every.append(group)
        return group

    def join(self, sock: socket.socket, key: frozenset[str] | None, first: bytes) -> _Client:
        """A socket that takes ``key``'s frames from now on, after ``first``."""
        group = self.group_of(key)
        client = _Client(sock, group, first)
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as gunicorn's
        sock.setblocking(False)
        group.members[client] = group.end  # its snapshot holds every frame so far
        self.behind[client] = None
        self.wake.set()
        return client

    def sweep(self) -> None:
        """Forever: wait for frames, serve the groups that have some, pause like ticker."""
        while True:
            due = self.quiet.next_due(self.heartbeat_s)
            self.wake.wait(None if due is None else max(0.0, due - time.monotonic()))
            self.wake.clear()
            self.sweep_once(time.monotonic())
            if self.dirty or self.behind:
                self.wake.set()
            gevent.sleep(self.min_pause)

    def sweep_once(self, now: float) -> None:
        """One pass: the groups with frames waiting, the sockets behind, the heartbeats."""
        self.passes += 1
        later = []
        self.slice_start = time.monotonic()
        while self.dirty:
            # Taken whole (popping a dict's first key is O(n) in CPython); the groups
            # that get frames while this batch is served form the next one.
            batch, self.dirty = self.dirty, {}
            for group in batch:
                if group.served == self.passes:
                    later.append(group)  # more since it was served: the next pass
                    continue
                group.served, group.queued = self.passes, False
                self._serve(group, now)
                self._turn()
        for group in later:
            self.dirty[group] = None
        behind, self.behind = self.behind, {}
        for client in behind:
            self._write(client, b"", now)
        self._heartbeats(now)

    def _turn(self) -> bool:
        """Let the feed reader run if the sweeper has had the loop for ``_GIVE_WAY_S``."""
        if time.monotonic() - self.slice_start < _GIVE_WAY_S:
            return False
        _give_way()
        self.slice_start = time.monotonic()
        return True

    def _serve(self, group: _Group, now: float) -> None:
        """Each socket the frames from its mark to the end, as they are when the sweeper
        gets to it; one chunk for the sockets with the same mark."""
        members = group.members
        low = end = group.end
        chunks: dict[int, bytes] = {}
        for client in list(members):  # not (client, mark) pairs: objects alive a whole pass
            start = members.get(client, end)
            if start >= end:
                continue  # has every frame, or left while the feed reader ran
            data = chunks.get(start)
            if data is None:
                data = chunks[start] = _chunk(
                    b"".join(group.frames[start - group.base:end - group.base]))
            self._write(client, data, now)
            if client in members:
                members[client] = end
            if self._turn() and group.end > end:
                end = group.end  # frames came meanwhile: the sockets not yet reached get them
                chunks.clear()
        del group.frames[:low - group.base]  # every socket has these
        group.base = low

    def _heartbeats(self, now: float) -> None:
        """A comment to each stream silent for ``heartbeat_s`` (to the second)."""
        due = self.quiet.due(now - self.heartbeat_s)
        if due:
            beat = _chunk(sse.encode(comment="heartbeat", id=f"{self.epoch}-{self.head}"))
            for client in due:
                self._write(client, beat, now)

    def _write(self, client: _Client, data: bytes, now: float) -> None:
        """One non-blocking write of what the socket still owes and ``data``.

        What it cannot take waits, as a list (joining would copy the whole backlog on
        every sweep), in front of the next write.
        """
        pending = client.pending
        if not pending:  # the usual case: one write of the new data
            try:
                written = os.write(client.fd, data) if data else 0
            except BlockingIOError:
                written = 0
            except OSError:
                self._drop(client)
                return
            self.quiet.touch(client, now)
            if written < len(data):
                pending.append(data[written:])
                self.behind[client] = None
            return
        if data:
            pending.append(data)
        try:
            written = os.writev(client.fd, pending[:512])  # within IOV_MAX
        except BlockingIOError:
            written = 0
        except OSError:
            self._drop(client)
            return
        while pending and written >= len(pending[0]):
            written -= len(pending.pop(0))
        if written:
            pending[0] = pending[0][written:]
        self.quiet.touch(client, now)
        if pending:
            self.behind[client] = None

    def _drop(self, client: _Client) -> None:
        client.group.members.pop(client, None)
        self.behind.pop(client, None)
        self.quiet.forget(client)
        with contextlib.suppress(OSError):
            client.sock.shutdown(socket.SHUT_RDWR)
        client.done.set()


def _give_way() -> None:
    """Let the loop poll once without blocking and run what is ready (as ticker's sweeper)."""
    hub = gevent.get_hub()
    with hub.loop.timer(0) as timer:
        hub.wait(timer)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--feed", required=True, help="the market, unix:PATH")
    parser.add_argument("--bind", default="127.0.0.1:8100", metavar="HOST:PORT")
    parser.add_argument("--flush-ms", type=float, default=2.0,
                        help="shortest pause between sweeps, as TICKER_FLUSH_MS")
    parser.add_argument("--heartbeat-s", type=float, default=10.0,
                        help="longest silence on a stream, as TICKER_HEARTBEAT_S")
    args = parser.parse_args(argv)
    raise_nofile(1024)
    host, _, port = args.bind.rpartition(":")
    ceiling = Ceiling(args.feed, args.flush_ms, args.heartbeat_s)
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
