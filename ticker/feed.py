"""The feed reader: one greenlet per worker that keeps the ``EventLog`` current.

It connects to the market (``TICKER_FEED``), validates every message with the wire
module, appends ticks to the log and wakes the fan-out; it never writes to a client and
never waits for one. When the feed goes away it marks the log down (streams get a
``status`` event), and reconnects with capped exponential backoff and jitter.

On every connect the market's hello and snapshot say where history stands, and the reader
makes the log exact before it calls the feed up:
- the same epoch at the same seq: it carries on;
- the same epoch further on (the market ran, or restarted from its saved state, while
  this worker was away): it asks the market's replay for the ticks in between, holds the
  live ticks until they are in, and carries on without a gap;
- anything else (a new worker, a new market): a new log generation from the snapshot,
  then the market's replay fills the log backwards (``backfill``), so a worker that has
  just booted resumes a stream as far back as one that has run for hours.
The worker is ``ready`` once the first of these is done. A resume from further back than
the log reaches is read from the source too (``history``): the market's replay over its
socket, or the stream kept in Redis.
"""

from __future__ import annotations

import itertools
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import gevent
import redis
from gevent.event import AsyncResult, Event

from simulator import address, redis_feed, wire
from ticker import metrics, sources
from ticker.eventlog import EventLog, GapError
from ticker.sources import FeedLost

__all__ = ["FeedReader"]

logger = logging.getLogger(__name__)

HISTORY_TIMEOUT = 5.0  # seconds a stream waits for the market's replay before a snapshot


@dataclass
class _Replay:
    """A replay request in flight: the ticks ``after < seq <= until`` as they come."""

    after: int
    until: int
    done: Callable[[list[wire.Tick] | None], None]
    ticks: list[wire.Tick] = field(default_factory=list)
    broken: bool = False

    def result(self, count: object) -> list[wire.Tick] | None:
        """The ticks, if they are all there, in order, as the reply counts them."""
        expected = range(self.after + 1, self.after + 1 + len(self.ticks))
        whole = (
            not self.broken and count == len(self.ticks) == self.until - self.after
            and all(tick.seq == seq for tick, seq in zip(self.ticks, expected, strict=True))
        )
        return self.ticks if whole else None


@dataclass
class _Hello:
    epoch: str
    universe: list[dict]
    rate: float
    oldest: int | None
    count: int  # companies in the universe: the hello's own, then "universe" pieces

    @property
    def whole(self) -> bool:
        return len(self.universe) >= self.count


@dataclass
class _Snapshot:
    seq: int
    quotes: list[dict]
    count: int  # quotes in all: the snapshot's own, then "quotes" pieces


class FeedReader:
    """Reads one feed address into one log, forever, reconnecting as needed."""

    def __init__(
        self,
        feed: str,
        log: EventLog,
        on_change: Callable[[], None],
        *,
        secret: str | None = None,
        backoff_min: float = 0.1,
        backoff_max: float = 5.0,
    ) -> None:
        self.address = address.parse(feed)
        self.log = log
        self.on_change = on_change
        self.backoff_min = backoff_min
        self.backoff_max = backoff_max
        self.ready = Event()
        self._connection = sources.Connection(self.address, log, secret)
        self._hello: _Hello | None = None
        self._snapshot_part: _Snapshot | None = None  # a snapshot still coming in pieces
        self._synced = False  # the snapshot of this connection is applied
        self._held: list[wire.Tick] | None = None  # live ticks waiting for a gap to be filled
        self._replays: dict[int, _Replay] = {}
        self._answers: dict[int, AsyncResult] = {}  # one-line requests in flight
        self._ids = itertools.count(1)
        self._newest_ts = 0

    def run(self) -> None:
        delay = self.backoff_min
        while True:
            try:
                self._session()
            except (OSError, FeedLost) as exc:
                reason = str(exc) or type(exc).__name__
                if self.log.feed_up:
                    logger.warning("feed %s lost: %s", self.address, reason)
                else:
                    logger.debug("feed %s unreachable: %s", self.address, reason)
            finally:
                self._abandon()
            if self.log.feed_up:
                delay = self.backoff_min
                self._mark_down()
            gevent.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(self.backoff_max, delay * 2)

    def _session(self) -> None:
        """One connection's life: apply each batch of messages, then wake the fan-out."""
        self._hello, self._snapshot_part, self._synced = None, None, False
        for batch in self._connection.batches():
            for item in batch:
                if isinstance(item, wire.WireError):
                    logger.warning("feed sent a bad line: %s", item)
                else:
                    self.apply(item)
            if self._newest_ts:
                metrics.FEED_LAG.set(max(0.0, time.time() - self._newest_ts / 1000))
            self.on_change()
            # A large read (a replay) must not keep the sweeper from the streams.
            gevent.sleep(0)

    def _abandon(self) -> None:
        """The connection is gone: requests in flight will never be answered (a gap or a
        fill left undone is taken up again by the next connection)."""
        replays, self._replays = self._replays, {}
        answers, self._answers = self._answers, {}
        self._hello, self._snapshot_part, self._synced, self._held = None, None, False, None
        for replay in replays.values():
            replay.done(None)
        for answer in answers.values():
            answer.set(None)

    # Messages -----------------------------------------------------------------------

    def apply(self, message: dict | wire.Tick) -> None:
        """Apply one feed message to the log.

        Raises:
            FeedLost: the feed skipped ticks or sent them out of order.
        """
        if isinstance(message, wire.Tick):
            self._tick(message)
            return
        kind = message.get("type")
        try:
            if kind == "tick":
                self._tick(wire.parse_tick(message))
            elif kind == "hello":
                self._hello = _parse_hello(message)
            elif kind == "universe" and "id" not in message:
                self._universe_piece(message)
            elif kind == "snapshot":
                self._snapshot_piece(_parse_snapshot(message))
            elif kind == "quotes":
                self._quotes_piece(message)
            elif kind == "replay":
                self._replay_piece(message)
            elif kind in ("reply", "error") and message.get("id") in self._replays:
                replay = self._replays.pop(message["id"])
                replay.done(replay.result(message.get("count")) if kind == "reply" else None)
            elif kind in ("reply", "error") and message.get("id") in self._answers:
                self._answers.pop(message["id"]).set(message)
            elif kind == "error":
                logger.warning("feed reported: %s", str(message.get("error"))[:200])
        except wire.WireError as exc:
            logger.warning("feed sent a bad %s message: %s", kind, exc)

    def _tick(self, tick: wire.Tick) -> None:
        if self._held is not None:
            self._held.append(tick)
            return
        if not self._synced:
            raise FeedLost("tick before hello and snapshot")
        self._newest_ts = tick.ts
        try:
            self.log.append(tick)
        except GapError as exc:
            if tick.seq <= self.log.head:
                return
            raise FeedLost(str(exc)) from None

    def _replay_piece(self, message: dict) -> None:
        replay = self._replays.get(message.get("id"))
        ticks = message.get("ticks")
        if replay is None:
            return
        if not isinstance(ticks, list):
            replay.broken = True
            return
        try:
            replay.ticks.extend(wire.parse_tick(t) for t in ticks if isinstance(t, dict))
        except wire.WireError:
            replay.broken = True

    def _universe_piece(self, message: dict) -> None:
        hello = self._hello
        if hello is None or hello.whole:
            raise FeedLost("a universe piece out of place")
        hello.universe.extend(wire.parse_universe(message))

    def _snapshot_piece(self, snapshot: _Snapshot) -> None:
        hello = self._hello
        if hello is None or not hello.whole:
            raise FeedLost("snapshot before the whole hello")
        self._snapshot_part = snapshot
        if len(snapshot.quotes) >= snapshot.count:
            self._snapshot()

    def _quotes_piece(self, message: dict) -> None:
        part = self._snapshot_part
        if part is None:
            raise FeedLost("a quotes piece out of place")
        _, more = wire.parse_snapshot({"seq": part.seq, **message})
        part.quotes.extend(more)
        if len(part.quotes) >= part.count:
            self._snapshot()

    def _snapshot(self) -> None:
        hello, part = self._hello, self._snapshot_part
        seq, quotes = part.seq, part.quotes
        self._snapshot_part = None
        self._synced = True
        log = self.log
        same = log.epoch == hello.epoch and set(log.universe) == {
            company["symbol"] for company in hello.universe
        }
        if same and log.head == seq:
            self._up("continued without a gap", ready=True)
        elif same and log.head < seq and hello.oldest is not None and hello.oldest <= log.head:
            # The market went on without us: fetch what we missed before going on.
            self._held = []
            self._ask_replay(log.head, seq, lambda ticks: self._fill_gap(ticks, seq, quotes))
        else:
            log.reset(hello.epoch, seq, hello.universe, quotes, hello.rate)
            reach = max(seq - log.capacity, hello.oldest if hello.oldest is not None else seq)
            if reach < seq and self._connection.accepts_requests:
                self._up("new log; filling it from the market's replay", ready=False)
                self._ask_replay(reach, seq, self._backfill)
            else:
                self._up("new log", ready=True)

    def _fill_gap(self, ticks: list[wire.Tick] | None, seq: int, quotes: list[dict]) -> None:
        log, hello = self.log, self._hello
        if hello is None:
            return  # the connection is gone
        held, self._held = self._held or [], None
        if ticks is None:
            logger.warning("feed %s: the ticks after %d could not be had; starting over at %d",
                           self.address, log.head, seq)
            log.reset(hello.epoch, seq, hello.universe, quotes, hello.rate)
        for tick in ticks or []:
            log.append(tick)
        for tick in held:
            self._tick(tick)
        self._up(f"{len(ticks or [])} missed ticks filled from the market's replay", ready=True)

    def _backfill(self, ticks: list[wire.Tick] | None) -> None:
        if self._hello is None:
            return  # the connection is gone
        try:
            added = self.log.backfill(ticks) if ticks else 0
        except GapError as exc:
            logger.warning("feed %s: replay does not fit the log: %s", self.address, exc)
            added = 0
        logger.info("feed %s: log filled with %d earlier ticks", self.address, added)
        self.ready.set()

    def _up(self, how: str, *, ready: bool) -> None:
        log = self.log
        log.feed_up = True
        metrics.FEED_UP.set(1)
        if ready:
            self.ready.set()
        logger.info("feed %s up: epoch %s at seq %d, %d symbols (%s)", self.address, log.epoch,
                    log.head, len(log.universe), how)
        self.on_change()

    def _mark_down(self) -> None:
        if self.log.feed_up:
            self.log.feed_up = False
            metrics.FEED_UP.set(0)
            self.on_change()

    # Reaching back --------------------------------------------------------------------

    def _ask_replay(self, after: int, until: int,
                    done: Callable[[list[wire.Tick] | None], None]) -> None:
        number = next(self._ids)
        self._replays[number] = _Replay(after, until, done)
        try:
            self._connection.send({"op": "replay", "after": after, "until": until, "id": number})
        except FeedLost:
            self._replays.pop(number).done(None)

    def ask(self, message: dict) -> dict | None:
        """One request to the market and its one-line answer (a reply or an error), or
        None if the market cannot be asked now or did not answer in ``HISTORY_TIMEOUT``."""
        if isinstance(self.address, address.RedisAddress):
            try:
                return redis_feed.request(self.address.url, message, HISTORY_TIMEOUT)
            except (LookupError, redis.RedisError):
                return None
        number = next(self._ids)
        answer: AsyncResult = AsyncResult()
        self._answers[number] = answer
        try:
            self._connection.send({**message, "id": number})
        except FeedLost:
            self._answers.pop(number, None)
            return None
        answer.wait(HISTORY_TIMEOUT)
        self._answers.pop(number, None)
        return answer.value if answer.ready() else None

    def history(self, after: int, until: int) -> list[wire.Tick] | None:
        """The ticks ``after < seq <= until`` from the source, or None if it lacks any.

        Waits (in the calling greenlet) for the market's replay, at most
        ``HISTORY_TIMEOUT``; over Redis, reads the stream.
        """
        if until <= after:
            return []
        if isinstance(self.address, address.RedisAddress):
            return _ticks(sources.history(self.address.url, after, until))
        if not self._connection.accepts_requests:
            return None
        answer: AsyncResult = AsyncResult()
        self._ask_replay(after, until, answer.set)
        answer.wait(HISTORY_TIMEOUT)
        return answer.value if answer.ready() else None


def _count(message: dict, listed: int) -> int:
    """How many items a message split into pieces has in all (one piece: what it lists)."""
    count = message.get("count", listed)
    if isinstance(count, bool) or not isinstance(count, int) or count < listed:
        raise wire.WireError("count must be an integer, at least what the first piece lists")
    return count


def _parse_hello(message: dict) -> _Hello:
    epoch, _, universe = wire.parse_hello(message)
    rate, oldest = message.get("rate"), message.get("oldest")
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not math.isfinite(rate):
        rate = 0.0
    if isinstance(oldest, bool) or not isinstance(oldest, int) or oldest < 0:
        oldest = None
    return _Hello(epoch, universe, float(rate), oldest, _count(message, len(universe)))


def _parse_snapshot(message: dict) -> _Snapshot:
    seq, quotes = wire.parse_snapshot(message)
    return _Snapshot(seq, quotes, _count(message, len(quotes)))


def _ticks(ticks: list[dict | wire.Tick] | None) -> list[wire.Tick] | None:
    """Validated ticks read back from the source; None if any is unreadable."""
    if ticks is None:
        return None
    try:
        return [wire.parse_tick(tick) for tick in ticks]
    except wire.WireError:
        return None
