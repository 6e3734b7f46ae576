"""The market published into Redis Streams, for ticker instances on many machines.

The same messages as the socket feed, laid out for Redis (``ticker/sources.py`` reads
them): ``ticker:hello`` holds the hello, ``ticker:quotes`` the latest tick line of each
symbol, and ``ticker:ticks`` a stream of tick lines with entry id ``SEQ-0``, trimmed to
about ``TICKS_KEPT`` entries. Each batch of ticks and the quotes it changes go in one
transaction, so a reader that takes the quotes and the stream's last id together always
gets a consistent snapshot. Requests (inject, symbols) come through the list
``ticker:requests``; each names a list of its own to receive its one reply.

If Redis goes away the market keeps moving; when Redis is back (perhaps empty, after a
restart) the hello and quotes are written again and the stream goes on from the current
seq. Readers see the gap and resynchronise with a snapshot.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
import uuid

import gevent
import gevent.event
import redis

from simulator import wire
from simulator.lifecycle import stopped_by_signal
from simulator.model import Market, MarketError
from simulator.pump import pump, tick_line
from simulator.universe import Company

__all__ = ["HELLO", "QUOTES", "REQUESTS", "TICKS", "TICKS_KEPT", "request", "serve"]

HELLO, QUOTES, TICKS, REQUESTS = "ticker:hello", "ticker:quotes", "ticker:ticks", "ticker:requests"
TICKS_KEPT = 20_000  # like a ticker worker's log: what a resume can reach back to
REPLY_TTL_S = 30
RETRY_S = 0.5

log = logging.getLogger("simulator")


class RedisFeed:
    """Writes the market's ticks and answers its requests through one Redis server."""

    def __init__(self, market: Market, universe: list[Company], url: str) -> None:
        self.market = market
        self.url = url
        self.epoch = secrets.token_hex(6)
        self._listing = [company.listing() for company in universe]
        self._client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2)
        self._ready = False
        self._next_try = 0.0

    def start(self) -> None:
        """Replace whatever an earlier market left: a new epoch starts a new stream."""
        with self._client.pipeline(transaction=True) as pipe:
            pipe.delete(TICKS, QUOTES)
            self._announce(pipe)
            pipe.execute()
        self._ready = True

    def _announce(self, pipe: redis.client.Pipeline) -> None:
        market = self.market
        pipe.set(HELLO, wire.encode(wire.hello(self.epoch, market.seq, self._listing, market.rate)))
        pipe.hset(QUOTES, mapping={q["symbol"]: tick_line(q).rstrip() for q in market.quotes})

    def publish(self, quotes: list[dict]) -> None:
        """Append ticks to the stream and the quotes, in one transaction."""
        if not self._ready and time.monotonic() < self._next_try:
            return
        try:
            with self._client.pipeline(transaction=True) as pipe:
                if not self._ready:
                    pipe.delete(TICKS)
                    self._announce(pipe)
                latest = {}
                for quote in quotes:
                    line = tick_line(quote).rstrip()
                    pipe.xadd(TICKS, {"m": line}, id=f"{quote['seq']}-0",
                              maxlen=TICKS_KEPT, approximate=True)
                    latest[quote["symbol"]] = line
                if latest:
                    pipe.hset(QUOTES, mapping=latest)
                pipe.execute()
        except redis.RedisError as exc:
            if self._ready:
                log.info("lost redis at %s: %s; the market goes on", self.url, exc)
            self._ready = False
            self._next_try = time.monotonic() + RETRY_S
            return
        if not self._ready:
            log.info("redis at %s is back: hello and quotes written again", self.url)
            self._ready = True

    def answer_requests(self, stop: gevent.event.Event) -> None:
        """Take requests off the list (blocking in a thread) and answer each one."""
        threads = gevent.get_hub().threadpool
        while not stop.is_set():
            try:
                item = threads.apply(self._client.blpop, ([REQUESTS], 1))
            except redis.RedisError:
                gevent.sleep(RETRY_S)
                continue
            if item is None:
                continue
            [message] = wire.Decoder().feed(item[1] + b"\n") or [wire.WireError("empty")]
            reply_to = message.get("reply_to") if isinstance(message, dict) else None
            if not isinstance(reply_to, str) or not reply_to.startswith("ticker:reply:"):
                log.info("ignored a request with no reply_to")
                continue
            answer = self._answer(message)
            try:
                with self._client.pipeline(transaction=True) as pipe:
                    pipe.rpush(reply_to, wire.encode(answer))
                    pipe.expire(reply_to, REPLY_TTL_S)
                    pipe.execute()
            except redis.RedisError as exc:
                log.info("could not answer a request: %s", exc)

    def _answer(self, message: dict | wire.WireError) -> dict:
        if isinstance(message, wire.WireError):
            return wire.error(str(message))
        try:
            request = wire.parse_request(message)
        except wire.WireError as exc:
            return wire.error(str(exc))
        if isinstance(request, wire.SymbolsRequest):
            return wire.reply(request.id, universe=self._listing)
        try:
            quote = self.market.inject(request.symbol, request.price, time.time_ns() // 1_000_000)
        except MarketError as exc:
            return wire.error(str(exc), request.id)
        self.publish([quote])
        log.info("injected %s at %.2f (seq %d)", quote["symbol"], quote["price"], quote["seq"])
        return wire.reply(request.id, quote=quote)


def serve(market: Market, universe: list[Company], url: str, seed: int) -> None:
    """Publish ``market`` into Redis at ``url`` until SIGINT or SIGTERM.

    Raises:
        redis.RedisError: Redis cannot be reached at the start.
    """
    feed = RedisFeed(market, universe, url)
    feed.start()
    log.info("market open on %s: epoch %s, %d symbols, %g ticks/s, seed %d",
             url, feed.epoch, len(universe), market.rate, seed)
    with stopped_by_signal(market) as stop:
        requests = gevent.spawn(feed.answer_requests, stop)
        try:
            pump(market, stop, feed.publish)
        finally:
            requests.join(timeout=2)


def request(url: str, message: dict, timeout: float) -> dict:
    """Send one request to the market publishing at ``url``; its reply.

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
        answer = client.blpop([reply_to], timeout=timeout)
    finally:
        client.close()
    if answer is None:
        raise LookupError(f"no reply from the market on {url} within {timeout:g} s")
    [reply] = wire.Decoder().feed(answer[1] + b"\n")
    if isinstance(reply, wire.WireError):
        raise LookupError(f"the market on {url} sent a bad reply: {reply}")
    return reply
