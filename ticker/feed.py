"""The feed reader: one greenlet per worker that keeps the ``EventLog`` current.

It connects to the market (``TICKER_FEED``), validates every message with the wire
module, appends ticks to the log and wakes the fan-out; it never writes to a client and
never waits for one. When the feed goes away it marks the log down (streams get a
``status`` event), and reconnects with capped exponential backoff and jitter. On
reconnect the market's hello and snapshot tell whether history continued: the same
epoch at the same seq resumes seamlessly; anything else starts a new log generation,
and every stream gets a snapshot.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable

import gevent

from simulator import address, wire
from ticker import metrics, sources
from ticker.eventlog import EventLog, GapError
from ticker.sources import FeedLost

__all__ = ["FeedReader"]

logger = logging.getLogger(__name__)


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
        self.secret = secret
        self.log = log
        self.on_change = on_change
        self.backoff_min = backoff_min
        self.backoff_max = backoff_max
        self._hello: tuple[str, int, list[dict]] | None = None
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
            if self.log.feed_up:
                delay = self.backoff_min
                self._mark_down()
            gevent.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(self.backoff_max, delay * 2)

    def _session(self) -> None:
        """One connection's life: apply each batch of messages, then wake the fan-out."""
        self._hello = None
        for batch in sources.messages(self.address, self.log, self.secret):
            for item in batch:
                if isinstance(item, wire.WireError):
                    logger.warning("feed sent a bad line: %s", item)
                else:
                    self.apply(item)
            if self._newest_ts:
                metrics.FEED_LAG.set(max(0.0, time.time() - self._newest_ts / 1000))
            self.on_change()

    def apply(self, message: dict) -> None:
        """Apply one feed message to the log.

        Raises:
            FeedLost: the feed skipped ticks or sent them out of order.
        """
        kind = message.get("type")
        try:
            if kind == "tick":
                self._tick(message)
            elif kind == "hello":
                self._hello = wire.parse_hello(message)
            elif kind == "snapshot":
                self._snapshot(message)
            elif kind == "error":
                logger.warning("feed reported: %s", str(message.get("error"))[:200])
        except wire.WireError as exc:
            logger.warning("feed sent a bad %s message: %s", kind, exc)

    def _tick(self, message: dict) -> None:
        quote = wire.parse_quote(message)
        if not self.log.feed_up:
            raise FeedLost("tick before hello and snapshot")
        self._newest_ts = quote["ts"]
        try:
            self.log.append(quote)
        except GapError as exc:
            if quote["seq"] <= self.log.head:
                return
            raise FeedLost(str(exc)) from None

    def _snapshot(self, message: dict) -> None:
        if self._hello is None:
            raise FeedLost("snapshot before hello")
        epoch, _, universe = self._hello
        seq, quotes = wire.parse_snapshot(message)
        log = self.log
        continued = log.epoch == epoch and log.head == seq and set(log.universe) == {
            company["symbol"] for company in universe
        }
        if not continued:
            log.reset(epoch, seq, universe, quotes)
        log.feed_up = True
        metrics.FEED_UP.set(1)
        logger.info(
            "feed %s up: epoch %s at seq %d, %d symbols%s", self.address, epoch, seq,
            len(universe), "" if not continued else " (continued without a gap)",
        )
        self.on_change()

    def _mark_down(self) -> None:
        if self.log.feed_up:
            self.log.feed_up = False
            metrics.FEED_UP.set(0)
            self.on_change()
