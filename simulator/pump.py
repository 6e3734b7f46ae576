"""The pump: the market model on a real clock, and the one encoding of a tick.

One greenlet wakes every two milliseconds or so, takes every tick that has come due from
the model and hands them, as one batch per wake, to whoever publishes them. It never
waits on anyone: what publishing costs is the publisher's to keep short.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import gevent
import gevent.event

from simulator.model import Market

__all__ = ["pump", "tick_line"]

BATCH_INTERVAL = 0.002  # seconds between pump wakes; each wake costs a write a subscriber
MAX_SLEEP = 0.1  # seconds between pump wakes at the least, so a stop is seen quickly
YIELD = 1e-6  # a sleep just long enough to let the event loop go round once
MAX_BATCH = 500  # ticks per pump wake at most, so catching up never starves the writers
MAX_LAG = 1.0  # after a longer stall the market skips ahead instead of bursting

log = logging.getLogger("simulator")


def tick_line(quote: dict) -> bytes:
    """``wire.encode(wire.tick(quote))``, byte for byte, at a third of the cost.

    Ticks are the hot path: at 50,000 a second, the generic encoder alone would take
    most of a CPU. A quote from the model is known and plain (``wire.QUOTE_FIELDS`` in
    that order, a symbol matching ``wire.SYMBOL_RE``, finite numbers), and Python's
    ``repr`` of a float or an int is exactly what ``json`` writes, so a format string
    gives the same bytes.
    """
    return (
        f'{{"type":"tick","symbol":"{quote["symbol"]}","price":{quote["price"]!r},'
        f'"open":{quote["open"]!r},"high":{quote["high"]!r},"low":{quote["low"]!r},'
        f'"change":{quote["change"]!r},"change_pct":{quote["change_pct"]!r},'
        f'"volume":{quote["volume"]!r},"size":{quote["size"]!r},"ts":{quote["ts"]!r},'
        f'"seq":{quote["seq"]!r}}}\n'
    ).encode()



def pump(market: Market, stop: gevent.event.Event, publish: Callable[[list[dict]], None]) -> None:
    """Run ``market`` on the real clock until ``stop``: every tick that comes due goes to
    ``publish`` in batches (one per wake), each tick produced once. A restored market goes
    on from its own clock, not from its opening."""
    origin = time.monotonic() - market.time
    while not stop.is_set():
        now = time.monotonic() - origin
        if now - market.due > MAX_LAG:
            log.info("market stalled for %.1f s; skipping ahead", now - market.due)
            origin += now - market.due
            now = market.due
        if market.due <= now:
            ts = time.time_ns() // 1_000_000
            quotes = []
            while market.due <= now and len(quotes) < MAX_BATCH:
                quotes.append(market.next_tick(ts))
            publish(quotes)
        # Ahead: sleep till the next tick is due, at least a batch interval. Behind: let the
        # writers and readers run once and come back; sleep(0) would come back before the
        # loop polls a single socket. (gevent.sleep costs half of stop.wait(timeout).)
        wait = market.due - (time.monotonic() - origin)
        gevent.sleep(min(max(wait, BATCH_INTERVAL), MAX_SLEEP) if wait > 0 else YIELD)
