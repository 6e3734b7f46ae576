"""The feed server: the market's ticks published to every subscriber of a socket.

Strategy: the pump (``simulator.pump``) encodes each tick once and the feed hands the
same bytes, joined into one batch, to every subscriber's outgoing queue. Each subscriber
has a writer greenlet that drains its queue with one write per wake, and a reader
greenlet that answers its requests by putting the reply in that same queue, so replies
interleave with ticks in order. The market never waits on anyone: a subscriber whose
queue grows past ``QUEUE_LIMIT`` bytes is dropped, and the market and the others go on.
A long answer (a replay, in pieces) is the reader's to pace: it queues a piece, lets the
event loop go round, and waits while the subscriber has more than ``ANSWER_BACKLOG`` bytes
to take, so it never floods the queue nor holds up the ticks.

Everything runs in one OS thread; a greenlet only yields at a socket call or a sleep,
so a tick's seq order, the snapshot a new subscriber gets and the first tick it is
sent can never disagree.
"""

from __future__ import annotations

import contextlib
import hmac
import itertools
import logging

import gevent
import gevent.event
from gevent import socket

from simulator import wire
from simulator.dispatch import Dispatcher
from simulator.exchange import Exchange
from simulator.pump import YIELD, pump

__all__ = ["QUEUE_LIMIT", "Feed", "Subscriber"]

QUEUE_LIMIT = 8 * 1024 * 1024  # bytes a subscriber may fall behind before it is dropped
AUTH_TIMEOUT = 5.0  # seconds a subscriber has to send the shared secret, when one is set
FLUSH_TIMEOUT = 2.0  # seconds subscribers get to take what is queued when the market closes
READ_SIZE = 64 * 1024
ANSWER_BACKLOG = 1024 * 1024  # bytes queued past which a long answer waits for the subscriber
BACKLOG_WAIT = 0.01  # seconds between looks at a backlog

log = logging.getLogger("simulator")


class Subscriber:
    """One connection: its outgoing queue and the writer greenlet that drains it."""

    def __init__(self, number: int, sock: socket.socket) -> None:
        self.number = number
        self.sock = sock
        self.queued = 0  # bytes pushed and not yet written, in-flight write included
        self.gone = False
        self._queue: list[bytes] = []
        self._wake = gevent.event.Event()
        self._finishing = False
        self.writer = gevent.spawn(self._write)

    def push(self, data: bytes) -> None:
        self._queue.append(data)
        self.queued += len(data)
        self._wake.set()

    def finish(self) -> None:
        """Write what is queued, then close: no more data will come."""
        self._finishing = True
        self._wake.set()

    def close(self) -> None:
        """Close now, dropping whatever is queued."""
        self.writer.kill(block=False)
        self.sock.close()

    def _write(self) -> None:
        queue = self._queue
        try:
            while True:
                while not queue:
                    if self._finishing:
                        return
                    self._wake.clear()
                    self._wake.wait()
                data = queue[0] if len(queue) == 1 else b"".join(queue)
                queue.clear()
                # One send() nearly always takes it all; sendall() costs twice as much.
                sent = self.sock.send(data)
                if sent < len(data):
                    self.sock.sendall(memoryview(data)[sent:])
                self.queued -= len(data)
        except OSError:
            pass  # the peer is gone; the reader notices and says so
        finally:
            self.sock.close()


class Feed:
    """The market, its subscribers, and the greenlets that serve them."""

    def __init__(self, exchange: Exchange, listener: socket.socket,
                 secret: str | None = None) -> None:
        self.exchange = exchange
        self._secret = secret
        self._listener = listener
        self._subscribers: set[Subscriber] = set()
        self._numbers = itertools.count(1)
        self._dispatcher = Dispatcher(exchange, self._publish)

    def run(self, stop: gevent.event.Event) -> None:
        """Accept subscribers and publish ticks until ``stop`` is set."""
        acceptor = gevent.spawn(self._accept)
        try:
            pump(self.exchange.market, stop, self._publish)
        finally:
            acceptor.kill()
            for subscriber in list(self._subscribers):
                subscriber.finish()
            # What was published goes out before the market closes, so a subscriber's
            # last quotes are the market's final prices.
            gevent.joinall([s.writer for s in self._subscribers], timeout=FLUSH_TIMEOUT)
            for subscriber in list(self._subscribers):
                subscriber.close()

    def _publish(self, quotes: list[dict]) -> None:
        self._broadcast(b"".join(self.exchange.record(quotes)))

    # The market side ------------------------------------------------------------

    def _broadcast(self, data: bytes) -> None:
        behind = []
        for subscriber in self._subscribers:
            subscriber.push(data)
            if subscriber.queued > QUEUE_LIMIT:
                behind.append(subscriber)
        for subscriber in behind:
            self._drop(subscriber)

    def _drop(self, subscriber: Subscriber) -> None:
        log.info("subscriber %d dropped: %.1f MiB behind", subscriber.number,
                 subscriber.queued / 2**20)
        subscriber.gone = True
        self._subscribers.discard(subscriber)
        subscriber.close()

    # The subscriber side --------------------------------------------------------

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except OSError as exc:  # out of file descriptors, most likely: wait, go on
                log.info("cannot accept a subscriber: %s", exc.strerror or exc)
                gevent.sleep(0.1)
                continue
            gevent.spawn(self._serve, sock)

    def _serve(self, sock: socket.socket) -> None:
        if sock.family != socket.AF_UNIX:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        decoder, early = wire.Decoder(), []
        if self._secret is not None:
            early = self._admit(sock, decoder)
            if early is None:
                sock.close()
                return
        subscriber = Subscriber(next(self._numbers), sock)
        exchange = self.exchange
        subscriber.push(b"".join(wire.split(exchange.hello(), {"type": "universe"})
                                 + wire.split(exchange.snapshot(), {"type": "quotes"})))
        self._subscribers.add(subscriber)
        log.info("subscriber %d joined (%d now)", subscriber.number, len(self._subscribers))
        try:
            for item in early:
                self._respond(subscriber, item)
            self._read(subscriber, decoder)
        except OSError:
            pass  # reset by the peer, or closed by a drop
        except Exception as exc:  # a bug must cost one subscriber, never the market
            log.error("subscriber %d: internal error: %r", subscriber.number, exc)
        finally:
            if not subscriber.gone:
                self._subscribers.discard(subscriber)
                subscriber.finish()
                log.info("subscriber %d left (%d now)", subscriber.number,
                         len(self._subscribers))

    def _admit(self, sock: socket.socket, decoder: wire.Decoder) -> list | None:
        """Whether the first line is the shared secret; the lines that came after it.

        A market with a secret sends nothing, not even its hello, before it has it.
        """
        items: list = []
        try:
            with gevent.Timeout(AUTH_TIMEOUT):
                while not items:
                    data = sock.recv(READ_SIZE)
                    if not data:
                        return None
                    items = decoder.feed(data)
        except (gevent.Timeout, OSError):
            return None
        first, rest = items[0], items[1:]
        try:
            request = wire.parse_request(first) if isinstance(first, dict) else None
        except wire.WireError:
            request = None
        if isinstance(request, wire.AuthRequest) and hmac.compare_digest(
            request.secret.encode(), self._secret.encode()
        ):
            return rest
        log.info("refused a subscriber without the shared secret")
        with contextlib.suppress(OSError):
            sock.sendall(wire.encode(wire.error("this market needs its shared secret first")))
        return None

    def _read(self, subscriber: Subscriber, decoder: wire.Decoder) -> None:
        while not subscriber.gone:
            data = subscriber.sock.recv(READ_SIZE)
            if not data:
                return
            for item in decoder.feed(data):
                self._respond(subscriber, item)
            if subscriber.queued > QUEUE_LIMIT:
                self._drop(subscriber)

    def _respond(self, subscriber: Subscriber, item: dict | wire.WireError) -> None:
        """Queue the answer to one request line; a long one (a replay) a line at a time,
        letting the market run between lines and waiting while the subscriber is behind."""
        lines = self._dispatcher.answer(item, f"subscriber {subscriber.number}")
        subscriber.push(next(lines))
        for line in lines:
            gevent.sleep(YIELD)
            while subscriber.queued > ANSWER_BACKLOG and not subscriber.gone:
                gevent.sleep(BACKLOG_WAIT)
            if subscriber.gone:
                return
            subscriber.push(line)
