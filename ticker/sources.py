"""Where a worker's feed messages come from: a market's socket, or Redis Streams.

Each source yields batches of wire messages (the same hello, snapshot and tick objects,
whatever the transport), so the feed reader applies them all one way. A source raises
``FeedLost`` (or an ``OSError``) when its connection ends; the reader reconnects. A
market's socket also takes requests (``Connection.send``): the reader asks it for the
ticks it lacks, and the answers come back among the ticks.

Redis layout, written by the simulator (``simulator/redis_feed.py``):

- ``ticker:hello``: the hello message of the market now publishing (epoch, universe);
- ``ticker:quotes``: a hash, symbol to its latest tick line;
- ``ticker:ticks``: a stream of tick lines whose entry ids are ``SEQ-0``, so an event id
  ``EPOCH-SEQ`` names the same entry on every instance, and what a client missed is an
  ``XRANGE`` away. Ticks and quotes change in one transaction, so they always agree.

Each worker reads the stream itself with ``XREAD BLOCK`` (no consumer group: every worker
needs every tick).
"""

from __future__ import annotations

from collections.abc import Iterator

import redis
from gevent import socket
from gevent.lock import Semaphore

from simulator import address, wire
from ticker.eventlog import EventLog

__all__ = ["HELLO", "QUOTES", "TICKS", "Connection", "FeedLost", "history"]

HELLO, QUOTES, TICKS = "ticker:hello", "ticker:quotes", "ticker:ticks"
_READ_SIZE = 256 * 1024
_BLOCK_MS = 1000


class FeedLost(ConnectionError):
    """The feed ended, restarted or broke the protocol: reconnect and resynchronise."""


Batch = list[dict | wire.Tick | wire.WireError]


class Connection:
    """One connection to a feed source: its messages, and a way to send it requests."""

    def __init__(self, where: address.Address, log: EventLog, secret: str | None) -> None:
        self.where = where
        self._log = log
        self._secret = secret
        self._sock: socket.socket | None = None
        self._sending = Semaphore()

    def batches(self) -> Iterator[Batch]:
        """The source's messages, a batch at a time, for as long as the connection lasts.

        ``secret``: the market's shared secret, sent first on a socket feed when set.
        """
        if isinstance(self.where, address.RedisAddress):
            return _redis_messages(self.where.url, self._log)
        return self._socket_messages(self.where)

    @property
    def accepts_requests(self) -> bool:
        """Whether ``send`` can reach the source now (a market socket, connected)."""
        return self._sock is not None

    def send(self, message: dict) -> None:
        """Send one request line to the market; its answer comes among the messages.

        Raises:
            FeedLost: not connected to a market's socket.
        """
        sock = self._sock
        if sock is None:
            raise FeedLost("not connected to a market")
        with self._sending:  # whole lines, even when several greenlets ask at once
            try:
                sock.sendall(wire.encode(message))
            except OSError as exc:
                raise FeedLost(f"cannot write to the market: {exc}") from None

    def _socket_messages(self, where: address.UnixAddress | address.TcpAddress) -> Iterator[Batch]:
        if isinstance(where, address.UnixAddress):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            target: object = where.path
        else:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            target = (where.host, where.port)
        try:
            sock.connect(target)
            if self._secret:
                sock.sendall(wire.encode(wire.auth(self._secret)))
            self._sock = sock
            decoder = wire.Decoder(ticks=True)
            while data := sock.recv(_READ_SIZE):
                yield decoder.feed(data)
            raise FeedLost("feed closed the connection")
        finally:
            self._sock = None
            sock.close()


def _connect(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2)


def _decode(value: bytes) -> dict | wire.WireError:
    """One message kept in Redis; a value has no line limit (a hello of 10,000 companies)."""
    [item] = wire.Decoder(max_line=len(value) + 1).feed(value + b"\n") or [
        wire.WireError("empty entry")]
    return item


def _decode_tick(value: bytes) -> dict | wire.Tick | wire.WireError:
    """One entry of the stream: a tick line, read as a socket feed's are."""
    return wire.read_tick(value) or _decode(value)


def _redis_messages(url: str, log: EventLog) -> Iterator[Batch]:
    client = _connect(url)
    try:
        raw_hello = client.get(HELLO)
        if raw_hello is None:
            raise FeedLost(f"no market publishes on {url}")
        hello = _decode(raw_hello)
        if isinstance(hello, wire.WireError):
            raise FeedLost(f"bad hello on {url}: {hello}")
        if hello.get("epoch") == log.epoch and _continues(client, log.head):
            # Same market, and Redis still holds every tick since ours: carry on exactly.
            last = log.head
            snapshot = wire.snapshot(last, log.quote_list(None))
        else:
            hello, last, snapshot = _synchronise(client)
        yield [hello, snapshot]
        epoch = hello.get("epoch")
        while True:
            reply = client.xread({TICKS: f"{last}-0"}, count=10_000, block=_BLOCK_MS)
            if not reply:
                current = _decode(client.get(HELLO) or b"{}")
                if isinstance(current, wire.WireError) or current.get("epoch") != epoch:
                    raise FeedLost("the market restarted")
                continue
            entries = reply[0][1]
            last = int(entries[-1][0].split(b"-", 1)[0])
            yield [_decode_tick(fields[b"m"]) for _, fields in entries]
    except redis.RedisError as exc:
        raise FeedLost(f"redis: {exc}") from None
    finally:
        client.close()


def _continues(client: redis.Redis, head: int) -> bool:
    after = client.xrange(TICKS, f"{head + 1}-0", "+", count=1)
    if after:
        return after[0][0] == f"{head + 1}-0".encode()
    newest = client.xrevrange(TICKS, "+", "-", count=1)
    return bool(newest) and newest[0][0] == f"{head}-0".encode()


def _synchronise(client: redis.Redis) -> tuple[dict | wire.WireError, int, dict]:
    """The market's state at one stream position: its latest quotes and that position."""
    with client.pipeline(transaction=True) as pipe:
        pipe.get(HELLO)
        pipe.hgetall(QUOTES)
        pipe.xrevrange(TICKS, "+", "-", count=1)
        raw_hello, raw_quotes, newest = pipe.execute()
    hello = _decode(raw_hello or b"{}")
    last = int(newest[0][0].split(b"-", 1)[0]) if newest else int(hello.get("seq", 0))
    quotes = [q for q in map(_decode, raw_quotes.values()) if isinstance(q, dict)]
    return hello, last, wire.snapshot(last, quotes)


def history(url: str, after: int, until: int) -> list[dict | wire.Tick] | None:
    """The ticks ``after < seq <= until`` still held in Redis, or None if any is gone.

    Used when a client resumes from further back than a worker's own log reaches.
    """
    if until <= after:
        return []
    client = _connect(url)
    try:
        entries = client.xrange(TICKS, f"{after + 1}-0", f"{until}-0")
    except redis.RedisError:
        return None
    finally:
        client.close()
    if len(entries) != until - after or entries[0][0] != f"{after + 1}-0".encode():
        return None
    ticks = [_decode_tick(fields[b"m"]) for _, fields in entries]
    return None if any(isinstance(t, wire.WireError) for t in ticks) else ticks
