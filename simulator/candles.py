"""One-minute candles of every symbol since the market opened, for a chart per symbol.

Strategy: every tick the market publishes (due on the clock or injected) goes through
``add`` once. A candle covers one wall-clock minute (its time is the epoch ms of the
minute's start) and exists only if the symbol traded in it. Each symbol keeps the minute
it is trading in as plain attributes, since that is what every tick touches, and its
finished minutes in ``array``s: the minute as a 32-bit count of minutes since the epoch,
the four prices as 32-bit cents (a price is a whole number of cents, at most
``MAX_PRICE``) and the volume as 64 bits, 28 bytes a candle instead of some 250 as Python
lists. A symbol keeps at most the last 24 hours of minutes, and only minutes 24 hours or
less before the market's newest one are answered or saved, so memory is bounded however
long the market runs: 1,440 candles a symbol at most. Pure: the ticks carry the time.

A candle is ``[t, open, high, low, close, volume]``: ``t`` in epoch ms, prices in dollars
as the quotes have them, ``volume`` the shares traded in that minute (0 for a minute of
injected prices only). ``reply_line`` answers a ``candles`` request with the most recent
candles that fit in one feed line.
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect_right
from collections.abc import Iterable, Iterator
from typing import Any

from simulator import wire
from simulator.model import MAX_PRICE, MIN_PRICE, UnknownSymbol

__all__ = ["INTERVAL_MS", "KEPT_MINUTES", "Candles", "reply_line"]

INTERVAL_MS = 60_000
KEPT_MINUTES = 24 * 60  # a day of minutes per symbol at most


class _Series:
    """One symbol's candles: the finished ones packed, the current one as attributes."""

    __slots__ = ("minutes", "opens", "highs", "lows", "closes", "volumes",
                 "minute", "open", "high", "low", "close", "volume")

    def __init__(self) -> None:
        self.minutes = array("i")  # minutes since the epoch
        self.opens, self.highs, self.lows, self.closes = (array("i") for _ in range(4))  # cents
        self.volumes = array("q")
        self.minute = -1  # the current candle's minute; -1: none yet
        self.open = self.high = self.low = self.close = 0.0
        self.volume = 0

    def start(self, minute: int, price: float, size: int) -> None:
        """Finish the current candle (if any) and open ``minute``'s, dropping what is now
        more than a day older."""
        if self.minute >= 0:
            self.minutes.append(self.minute)
            for column, value in ((self.opens, self.open), (self.highs, self.high),
                                  (self.lows, self.low), (self.closes, self.close)):
                column.append(round(value * 100))
            self.volumes.append(self.volume)
            stale = bisect_right(self.minutes, minute - KEPT_MINUTES)
            if stale:
                for column in self._columns():
                    del column[:stale]
        self.minute = minute
        self.open = self.high = self.low = self.close = price
        self.volume = size

    def rows(self, oldest: int) -> list[list]:
        """Every candle from minute ``oldest`` on, oldest first."""
        if self.minute < oldest:
            return []
        start = bisect_right(self.minutes, oldest - 1)
        rows = [[m * INTERVAL_MS, o / 100, h / 100, lo / 100, c / 100, v]
                for m, o, h, lo, c, v in zip(*(column[start:] for column in self._columns()),
                                             strict=True)]
        rows.append([self.minute * INTERVAL_MS, self.open, self.high, self.low, self.close,
                     self.volume])
        return rows

    def _columns(self) -> tuple[array, ...]:
        return self.minutes, self.opens, self.highs, self.lows, self.closes, self.volumes


class Candles:
    """The candles of every listed symbol.

    Args:
        symbols: the market's symbols; any other is unknown.
    """

    def __init__(self, symbols: Iterable[str]) -> None:
        self._series: dict[str, _Series | None] = dict.fromkeys(symbols)  # made on first tick
        self.minute = -1  # the newest minute any symbol traded in

    def add(self, quotes: list[dict]) -> None:
        """Count ``quotes``, ticks of listed symbols in ``seq`` order, into their minutes.

        A tick stamped before its symbol's current minute (the wall clock stepped back)
        counts in the current one: candles never go back in time.
        """
        series_of = self._series
        for quote in quotes:
            minute = quote["ts"] // INTERVAL_MS
            price = quote["price"]
            series = series_of[quote["symbol"]]
            if series is None:
                series = series_of[quote["symbol"]] = _Series()
            if minute > series.minute:
                series.start(minute, price, quote["size"])
                if minute > self.minute:
                    self.minute = minute
                continue
            if price > series.high:
                series.high = price
            elif price < series.low:
                series.low = price
            series.close = price
            series.volume += quote["size"]

    def rows(self, symbol: str) -> list[list]:
        """``symbol``'s candles of the last 24 hours of the market, oldest first.

        Raises:
            UnknownSymbol: not a listed symbol.
        """
        try:
            series = self._series[symbol]
        except KeyError:
            raise UnknownSymbol(symbol) from None
        return [] if series is None else series.rows(self.minute - KEPT_MINUTES + 1)

    def saved(self) -> Iterator[tuple[str, list[list]]]:
        """``(symbol, rows)`` for every symbol with candles, for a state file."""
        for symbol, series in self._series.items():
            if series is not None and (rows := self.rows(symbol)):
                yield symbol, rows

    def restore(self, symbol: str, rows: list) -> None:
        """Put back ``symbol``'s candles as ``saved`` gave them, before any tick.

        Raises:
            ValueError: not a listed symbol, or ``rows`` are not candles in time order.
        """
        if symbol not in self._series or self._series[symbol] is not None:
            raise ValueError(f"candles for {symbol[:20]!r}, unlisted or twice")
        if not isinstance(rows, list) or not rows:
            raise ValueError(f"{symbol}'s candles are not a list of candles")
        series = _Series()
        for row in rows:
            minute, opened, high, low, close, volume = _checked(row)
            if minute <= series.minute:
                raise ValueError(f"{symbol}'s candles are not in time order")
            series.start(minute, opened, volume)
            series.high, series.low, series.close = high, low, close
        self._series[symbol] = series
        self.minute = max(self.minute, series.minute)


def _checked(row: Any) -> tuple[int, float, float, float, float, int]:
    """A saved candle as ``(minute, open, high, low, close, volume)``.

    Raises:
        ValueError: it is not a candle.
    """
    if not isinstance(row, list) or len(row) != 6:
        raise ValueError("a candle is not a list of six numbers")
    t, opened, high, low, close, volume = row
    whole = [isinstance(v, int) and not isinstance(v, bool) for v in (t, volume)]
    prices = [isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
              and MIN_PRICE <= v <= MAX_PRICE and round(v * 100) / 100 == v
              for v in (opened, high, low, close)]
    if not (all(whole) and all(prices) and t >= 0 and t % INTERVAL_MS == 0 and volume >= 0):
        raise ValueError(f"not a candle (whole minutes, prices in cents): {str(row)[:80]}")
    if not low <= min(opened, close) <= max(opened, close) <= high:
        raise ValueError(f"a candle's prices are not within its low and high: {str(row)[:80]}")
    return t // INTERVAL_MS, float(opened), float(high), float(low), float(close), volume


def reply_line(symbol: str, rows: list[list], request_id: Any = None,
               limit: int = wire.MAX_LINE) -> bytes:
    """The answer to a ``candles`` request: one line of at most ``limit`` bytes, newline
    included, with the most recent of ``rows`` (oldest first) that fit, oldest first."""
    line = wire.encode(wire.reply(request_id, symbol=symbol, interval=INTERVAL_MS, candles=[]))
    head, tail = line.split(b'"candles":[]', 1)  # the first: an id's quotes are escaped
    head += b'"candles":['
    tail = b"]" + tail
    room = limit - len(head) - len(tail)
    texts: list[str] = []
    for t, opened, high, low, close, volume in reversed(rows):
        # Python's repr of a float or an int is exactly what json writes.
        text = f"[{t},{opened!r},{high!r},{low!r},{close!r},{volume}]"
        room -= len(text) + (1 if texts else 0)
        if room < 0:
            break
        texts.append(text)
    return head + ",".join(reversed(texts)).encode() + tail
