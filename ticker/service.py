"""What one worker runs besides its requests: the log, the feed reader and the fan-out.

The feed reader and the sweeper are what every stream depends on, so they run under a
last resort: if either dies of a bug, the traceback is logged, ``/healthz`` turns 503
and the worker is asked to exit, so gunicorn replaces it and its clients resume on
another worker. A worker never goes on looking healthy with nothing moving.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import gevent

from ticker.config import Config
from ticker.eventlog import EventLog
from ticker.fanout import Fanout
from ticker.feed import FeedReader

__all__ = ["READY_WAIT_S", "TickerService"]

logger = logging.getLogger(__name__)

READY_WAIT_S = 5.0  # how long a stream that opens on a worker still booting waits for it


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
        self.failure: str | None = None
        self._on_failure: Callable[[], None] = lambda: None
        self._greenlets: list[gevent.Greenlet] = []

    def start(
        self, stopping: Callable[[], bool] | None = None,
        on_failure: Callable[[], None] | None = None,
    ) -> None:
        """Start reading the feed and sweeping streams; call once gevent has patched the worker.

        Args:
            stopping: polled ten times a second; once it returns True every stream is
                ended, so a worker asked to stop is not held open by its streams.
            on_failure: called once if the feed reader or the sweeper dies (the worker
                should then exit).
        """
        if on_failure is not None:
            self._on_failure = on_failure
        self._greenlets = [
            gevent.spawn(self._guarded, "feed reader", self.feed.run),
            gevent.spawn(self._guarded, "sweeper", self.fanout.run),
        ]
        if stopping is not None:
            self._greenlets.append(gevent.spawn(self._stop_when, stopping))

    def wait_ready(self, last_event_id: str | None, timeout: float = READY_WAIT_S) -> bool:
        """Whether a stream may start now: at once on a ready worker; on one still
        booting, after it is ready or ``timeout`` has passed. False only for a resume
        (``last_event_id``) the worker could not answer exactly yet."""
        return self.feed.ready.wait(timeout) or not last_event_id

    def health(self) -> tuple[dict, bool]:
        """What ``/healthz`` says, and whether the worker is healthy."""
        log = self.log
        body = {
            "feed": "up" if log.feed_up else "down",
            "ready": self.feed.ready.is_set(),
            "epoch": log.epoch,
            "seq": log.head,
            "streams": self.fanout.count,
        }
        if self.failure:
            body["error"] = self.failure
        healthy = self.failure is None and log.feed_up and self.feed.ready.is_set()
        return body, healthy

    def _guarded(self, name: str, run: Callable[[], None]) -> None:
        try:
            run()
        except gevent.GreenletExit:
            raise
        except Exception as exc:
            logger.critical("%s crashed, the worker exits: %r", name, exc, exc_info=True)
            self.failure = f"{name} crashed: {exc!r}"[:200]
            self.stop()
            self._on_failure()

    def _stop_when(self, stopping: Callable[[], bool]) -> None:
        while not stopping():
            gevent.sleep(0.1)
        logger.info("worker stopping: ending %d streams", self.fanout.count)
        self.stop()

    def stop(self) -> None:
        self.fanout.close_all()
        gevent.killall([g for g in self._greenlets if g is not gevent.getcurrent()], block=False)
