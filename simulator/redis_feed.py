"""The market published into Redis Streams, for ticker instances on many machines.

The same messages as the socket feed, laid out for Redis (``ticker/sources.py`` reads
them): ``ticker:hello`` holds the hello, ``ticker:quotes`` the latest tick line of each
symbol, and ``ticker:ticks`` a stream of tick lines with entry id ``SEQ-0``, trimmed to
about ``TICKS_KEPT`` entries or ``KEPT_SECONDS`` of ticks at the market's rate, whichever
is more (a reader held up for a moment at 20,000 ticks/s must still find its next tick).
Each batch of ticks and the quotes it changes go in one Lua script (``_APPEND``: atomic
like a transaction, and half the market's CPU per tick of a pipeline of one ``XADD`` and
one ``HSET`` per tick, 12 us against 22 as measured), so a reader that takes the quotes
and the stream's last id together always gets a consistent snapshot. Requests (inject,
symbols, replay) come through the list ``ticker:requests``; each names a list of its own
to receive its answer lines.

Redis never holds up the market: the process is monkey-patched (``cli.run`` does it
first), so every Redis call yields to the pump instead of blocking it, and the pump only
hands its batches over to a publisher greenlet. If Redis is slow or away the batches
wait, up to ``MAX_PENDING`` ticks; past that, or on an error, they are given up and,
when Redis answers again (perhaps empty, after a restart), the hello and quotes are
written again and the stream goes on from the current seq. Readers see the gap and
resynchronise with a snapshot.
"""

from __future__ import annotations

import json
import logging
import time
import uuid

import gevent
import gevent.event
import redis

from simulator import wire
from simulator.dispatch import Dispatcher
from simulator.exchange import Exchange
from simulator.lifecycle import stopped_by_signal
from simulator.pump import MAX_SLEEP, pump, tick_line

__all__ = ["HELLO", "KEPT_SECONDS", "QUOTES", "REQUESTS", "TICKS", "TICKS_KEPT", "request",
           "serve"]

HELLO, QUOTES, TICKS, REQUESTS = "ticker:hello", "ticker:quotes", "ticker:ticks", "ticker:requests"
TICKS_KEPT = 20_000  # like a ticker worker's log: what a resume can reach back to
KEPT_SECONDS = 10.0  # at a high rate, the stream keeps this long instead (50 MB at 20,000/s)
MAX_PENDING = 50_000  # ticks waiting for Redis at most; past that, readers resynchronise
REPLY_TTL_S = 30
REPLY_CHUNK = 1024 * 1024  # bytes of answer lines pushed per round trip
RETRY_S = 0.5
SCRIPT_TICKS = 2_000  # ticks appended per script call at most, so Redis is never held long
# KEYS: the stream, the quotes. ARGV: the stream's length to keep, then per tick its entry
# id, its symbol and its line.
_APPEND = """
for i = 2, #ARGV, 3 do
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], ARGV[i], 'm', ARGV[i + 2])
    redis.call('HSET', KEYS[2], ARGV[i + 1], ARGV[i + 2])
end
return (#ARGV - 1) / 3
"""
FLUSH_TIMEOUT = 2.0  # seconds the publisher gets to write what is pending when the market closes

log = logging.getLogger("simulator")


class RedisFeed:
    """Writes the market's ticks and answers its requests through one Redis server."""

    def __init__(self, exchange: Exchange, url: str) -> None:
        self.exchange = exchange
        self.url = url
        self._client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2)
        self._append = self._client.register_script(_APPEND)
        self._kept = max(TICKS_KEPT, round(exchange.market.rate * KEPT_SECONDS))
        self._dispatcher = Dispatcher(exchange, self.publish)
        self._ready = False
        self._pending: list[tuple[list[dict], list[bytes]]] = []
        self._pending_ticks = 0
        self._wake = gevent.event.Event()

    def start(self) -> None:
        """Replace whatever an earlier market left: a new epoch starts a new stream. The
        same epoch restarted from its state goes on with its stream, if that ends where
        the market stopped."""
        with self._client.pipeline(transaction=True) as pipe:
            pipe.get(HELLO)
            pipe.xrevrange(TICKS, count=1)
            hello, newest = pipe.execute()
        goes_on = (_epoch_of(hello) == self.exchange.epoch
                   and newest and newest[0][0] == f"{self.exchange.market.seq}-0".encode())
        with self._client.pipeline(transaction=True) as pipe:
            if not goes_on:
                pipe.delete(TICKS, QUOTES)
            self._announce(pipe)
            pipe.execute()
        self._ready = True

    def _announce(self, pipe: redis.client.Pipeline) -> None:
        """The hello and every quote as of now, which cover whatever was pending."""
        self._pending, self._pending_ticks = [], 0
        pipe.set(HELLO, wire.encode(self.exchange.hello()))
        quotes = self.exchange.market.quotes
        pipe.hset(QUOTES, mapping={q["symbol"]: tick_line(q)[:-1] for q in quotes})

    def publish(self, quotes: list[dict]) -> None:
        """Record ticks and hand them to the publisher; never waits for Redis."""
        self._pending.append((quotes, self.exchange.record(quotes)))
        self._pending_ticks += len(quotes)
        if self._pending_ticks > MAX_PENDING:
            if self._ready:
                log.info("redis at %s is %d ticks behind: they are given up", self.url,
                         self._pending_ticks)
            self._ready = False
            self._pending, self._pending_ticks = [], 0
        self._wake.set()

    def run_publisher(self, stop: gevent.event.Event) -> None:
        """Write the batches handed over, in order, until ``stop`` and nothing pending."""
        while True:
            if not self._ready:
                if stop.is_set():
                    return
                if not self._reannounce():
                    stop.wait(RETRY_S)
            elif self._pending:
                self._write_pending()
            elif stop.is_set():
                return
            else:
                self._wake.clear()
                self._wake.wait(MAX_SLEEP)

    def _write_pending(self) -> None:
        batches, self._pending, self._pending_ticks = self._pending, [], 0
        args: list = []
        for quotes, lines in batches:
            for quote, line in zip(quotes, lines, strict=True):
                args += (f"{quote['seq']}-0", quote["symbol"], line[:-1])
        step = 3 * SCRIPT_TICKS
        try:
            for start in range(0, len(args), step):
                self._append(keys=[TICKS, QUOTES], args=[self._kept, *args[start:start + step]])
        except redis.RedisError as exc:
            if self._ready:
                log.info("lost redis at %s: %s; the market goes on", self.url, exc)
            self._ready = False

    def _reannounce(self) -> bool:
        try:
            with self._client.pipeline(transaction=True) as pipe:
                pipe.delete(TICKS)
                self._announce(pipe)
                pipe.execute()
        except redis.RedisError:
            return False
        log.info("redis at %s is back: hello and quotes written again", self.url)
        self._ready = True
        return True

    def answer_requests(self, stop: gevent.event.Event) -> None:
        """Take requests off the list and answer each one; nothing a request holds or
        does stops the next one from being answered."""
        while not stop.is_set():
            try:
                item = self._client.blpop([REQUESTS], 1)
            except redis.RedisError:
                stop.wait(RETRY_S)
                continue
            if item is None:
                continue
            try:
                self._answer(item[1])
            except redis.RedisError as exc:
                log.info("could not answer a request: %s", exc)
            except Exception as exc:  # a bug must cost one request, never the next ones
                log.error("a request through redis: internal error: %r", exc)

    def _answer(self, raw: bytes) -> None:
        items = wire.Decoder().feed(raw + b"\n")
        message = items[0] if len(items) == 1 else wire.WireError("a request is one line")
        reply_to = message.get("reply_to") if isinstance(message, dict) else None
        if not isinstance(reply_to, str) or not reply_to.startswith("ticker:reply:"):
            log.info("ignored a request with no reply_to")
            return
        chunk, size = [], 0
        for line in self._dispatcher.answer(message, "a client through redis"):
            chunk.append(line)
            size += len(line)
            if size >= REPLY_CHUNK:
                self._push(reply_to, chunk)
                chunk, size = [], 0
        if chunk:
            self._push(reply_to, chunk)

    def _push(self, reply_to: str, lines: list[bytes]) -> None:
        with self._client.pipeline(transaction=True) as pipe:
            pipe.rpush(reply_to, *lines)
            pipe.expire(reply_to, REPLY_TTL_S)
            pipe.execute()


def _epoch_of(hello: bytes | None) -> str | None:
    """The epoch a stored hello names, if it is one."""
    items = wire.Decoder().feed((hello or b"") + b"\n")
    return items[0].get("epoch") if len(items) == 1 and isinstance(items[0], dict) else None


def serve(exchange: Exchange, url: str, seed: int) -> None:
    """Publish ``exchange`` into Redis at ``url`` until SIGINT or SIGTERM.

    Call it in a monkey-patched process, so that Redis I/O yields to the pump.

    Raises:
        redis.RedisError: Redis cannot be reached at the start.
    """
    feed = RedisFeed(exchange, url)
    feed.start()
    market = exchange.market
    log.info("market open on %s: epoch %s, %d symbols, %g ticks/s, seed %d",
             url, exchange.epoch, len(exchange.universe), market.rate, seed)
    with stopped_by_signal(market) as stop:
        workers = [gevent.spawn(feed.run_publisher, stop), gevent.spawn(feed.answer_requests, stop)]
        try:
            pump(market, stop, feed.publish)
        finally:
            stop.set()
            gevent.joinall(workers, timeout=FLUSH_TIMEOUT)
            gevent.killall(workers, timeout=1)


def request(url: str, message: dict, timeout: float) -> dict:
    """Send one request to the market publishing at ``url``; its reply, whole: a reply
    that lists the universe in pieces (``symbols``) comes back with all of it.

    Raises:
        LookupError: no market publishes there, or it did not answer in time.
        redis.RedisError: Redis cannot be reached.
    """
    client = redis.Redis.from_url(url, socket_timeout=timeout + 2, socket_connect_timeout=2)
    try:
        if not client.exists(HELLO):
            raise LookupError(f"no market publishes on {url}")
        reply_to = f"ticker:reply:{uuid.uuid4().hex}"
        client.rpush(REQUESTS, json.dumps({**message, "reply_to": reply_to}))
        deadline = time.monotonic() + timeout
        reply = _answer_line(client, reply_to, deadline, url)
        try:
            left = wire.missing(reply, "universe") if "universe" in reply else 0
            while left > 0:
                piece = _answer_line(client, reply_to, deadline, url)
                left -= len(piece.get("universe", ()))
                reply["universe"].extend(piece.get("universe", ()))
        except (wire.WireError, TypeError) as exc:
            raise LookupError(f"the market on {url} sent a bad reply: {exc}") from None
    finally:
        client.close()
    return reply


def _answer_line(client: redis.Redis, reply_to: str, deadline: float, url: str) -> dict:
    """The next answer line pushed to ``reply_to``, before ``deadline``."""
    answer = client.blpop([reply_to], timeout=max(deadline - time.monotonic(), 0.01))
    if answer is None:
        raise LookupError(f"no reply from the market on {url} in time")
    [line] = wire.Decoder().feed(answer[1] + b"\n")
    if isinstance(line, wire.WireError):
        raise LookupError(f"the market on {url} sent a bad reply: {line}")
    return line
