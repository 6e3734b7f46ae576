"""The market's process lifecycle: open the feed, run until a signal, close cleanly."""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import signal
from collections.abc import Iterator

import gevent
import gevent.event

from simulator.address import Address
from simulator.exchange import Exchange
from simulator.listener import file_id, listen
from simulator.model import Market
from simulator.subscribers import Feed

__all__ = ["serve", "stopped_by_signal"]

log = logging.getLogger("simulator")


@contextlib.contextmanager
def stopped_by_signal(market: Market) -> Iterator[gevent.event.Event]:
    """An event the first SIGINT or SIGTERM sets; says how the market closed, at the end."""
    stop = gevent.event.Event()
    received = []

    def on_signal(signum: signal.Signals) -> None:
        received.append(signum.name)
        stop.set()

    handlers = [gevent.signal_handler(s, on_signal, s) for s in (signal.SIGINT, signal.SIGTERM)]
    try:
        yield stop
    finally:
        for handler in handlers:
            handler.cancel()
    log.info("market closed on %s after %d ticks", received[0] if received else "request",
             market.seq)


def serve(exchange: Exchange, address: Address, seed: int, secret: str | None = None) -> None:
    """Publish ``exchange`` on ``address`` until SIGINT or SIGTERM.

    Raises:
        FeedError: the feed cannot start.
    """
    listener = listen(address)
    ours = file_id(address)
    feed = Feed(exchange, listener, secret)
    market = exchange.market
    log.info("market open on %s: epoch %s, %d symbols, %g ticks/s, seed %d",
             address, exchange.epoch, len(exchange.universe), market.rate, seed)
    # What startup made (modules, Faker's data) lives until exit; left to the collector,
    # every full collection would scan it for ~15 ms, a stall in every subscriber's feed.
    gc.freeze()
    try:
        with stopped_by_signal(market) as stop:
            feed.run(stop)
    finally:
        if ours and file_id(address) == ours:  # not if another market took the path
            os.unlink(address.path)
        listener.close()
