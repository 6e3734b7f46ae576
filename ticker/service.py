"""What one worker runs besides its requests: the log, the feed reader and the fan-out."""

from __future__ import annotations

import logging
from collections.abc import Callable

import gevent

from simulator import address, wire
from ticker import sources
from ticker.config import Config
from ticker.eventlog import EventLog
from ticker.fanout import Fanout, History
from ticker.feed import FeedReader

__all__ = ["TickerService"]

logger = logging.getLogger(__name__)


class TickerService:
    """The per-worker market state and the two greenlets that keep streams fed."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.log = EventLog(config.log_size)
        self.fanout = Fanout(
            self.log,
            max_streams=config.max_streams,
            max_streams_per_client=config.max_streams_per_client,
            heartbeat_s=config.heartbeat_s,
            retry_ms=config.retry_ms,
            flush_ms=config.flush_ms,
            stall_s=config.stall_s,
            catch_up_bytes=config.catch_up_bytes,
        )
        self.feed = FeedReader(
            config.feed, self.log, self.fanout.wake, secret=config.feed_secret or None
        )
        where = address.parse(config.feed)
        self.history: History | None = None
        if isinstance(where, address.RedisAddress):
            self.history = lambda after, until: _quotes(sources.history(where.url, after, until))
        self._greenlets: list[gevent.Greenlet] = []

    def start(self, stopping: Callable[[], bool] | None = None) -> None:
        """Start reading the feed and sweeping streams; call once gevent has patched the worker.

        Args:
            stopping: polled ten times a second; once it returns True every stream is
                ended, so a worker asked to stop is not held open by its streams.
        """
        self._greenlets = [gevent.spawn(self.feed.run), gevent.spawn(self.fanout.run)]
        if stopping is not None:
            self._greenlets.append(gevent.spawn(self._stop_when, stopping))

    def _stop_when(self, stopping: Callable[[], bool]) -> None:
        while not stopping():
            gevent.sleep(0.1)
        logger.info("worker stopping: ending %d streams", self.fanout.count)
        self.stop()

    def stop(self) -> None:
        self.fanout.close_all()
        gevent.killall([g for g in self._greenlets if g is not gevent.getcurrent()], block=False)


def _quotes(ticks: list[dict] | None) -> list[dict] | None:
    """Validated quotes of ticks read back from the source; None if any is unreadable."""
    if ticks is None:
        return None
    try:
        return [wire.parse_quote(tick) for tick in ticks]
    except wire.WireError:
        return None
