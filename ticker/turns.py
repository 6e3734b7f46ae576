"""Giving the event loop a turn: one poll of every socket, without blocking, then go on.

``gevent.sleep(0)`` may resume before the loop has polled a single socket, and any positive
sleep waits a whole millisecond (libev's timer resolution), so a timer due at once is the
cheapest way (about 3 us) to let readers and writers that are ready run.
"""

from __future__ import annotations

import gevent

__all__ = ["poll_once"]


def poll_once() -> None:
    """Let the loop poll sockets once and run what is ready, then return."""
    hub = gevent.get_hub()
    with hub.loop.timer(0) as timer:
        hub.wait(timer)
