"""The market model: prices that move like stocks, one tick at a time.

Pure on purpose: no sockets, no sleep, no clock. The caller owns time. The model keeps
its own clock in seconds since the market opened and says when the next tick is due
(``due``); the caller asks for that tick when its own clock gets there and passes the
wall-clock ``ts`` to stamp on it. Given the same universe and seed, the ticks (when,
which symbol, what price) are the same on every run, however the caller schedules them.

Ticks arrive as a Poisson process at ``rate`` ticks per second across the market, each
for a symbol drawn in proportion to its company's ``activity`` (an alias table: one uniform
draw and O(1) work a tick, whatever the number of symbols), so every symbol also ticks as a
Poisson process, at ``rate * activity / sum of activities``. With every activity 1.0 the
draw is the plain uniform one, so such a market ticks exactly as before activity. A tick
moves its stock by geometric Brownian motion over the market time since that stock's
own previous tick; market time runs ``speed`` times faster than real time, so a day's
worth of movement happens in a few minutes on screen.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from math import exp, log, sqrt

from simulator.universe import Company

__all__ = [
    "MAX_PRICE",
    "MIN_PRICE",
    "TRADING_YEAR",
    "BadPrice",
    "Market",
    "MarketError",
    "UnknownSymbol",
    "alias_table",
]

TRADING_YEAR = 252 * 6.5 * 3600  # seconds of trading in a year, the unit of drift and volatility
MIN_PRICE = 0.01  # one cent: the walk never goes below it, so no price is ever zero
MAX_PRICE = 10_000_000.0  # keeps a runaway walk or a wild injection finite
_PARETO_EXPONENT = -1 / 1.2  # trade sizes: a Pareto tail of index 1.2


class MarketError(ValueError):
    """A request the market refuses; the text is the one-line reason."""


class UnknownSymbol(MarketError, LookupError):
    def __init__(self, symbol: str) -> None:
        super().__init__(f"unknown symbol {symbol[:20]!r}")


class BadPrice(MarketError):
    pass


def alias_table(weights: Sequence[float]) -> tuple[list[float], list[int]]:
    """Walker's alias table (Vose's construction) for drawing index ``i`` with probability
    ``weights[i] / sum(weights)`` in O(1): draw a column ``i`` uniformly, keep it with
    probability ``keep[i]``, else take ``alias[i]``. Weights all 1.0 keep every column.

    Raises:
        ValueError: a weight is not a finite positive number.
    """
    count = len(weights)
    if not all(weight > 0 and math.isfinite(weight) for weight in weights):
        raise ValueError("every activity must be a finite positive number")
    total = math.fsum(weights)
    scaled = [weight * count / total for weight in weights]
    keep, alias = [1.0] * count, list(range(count))
    small = [i for i, p in enumerate(scaled) if p < 1.0]
    large = [i for i, p in enumerate(scaled) if p >= 1.0]
    while small and large:
        less, more = small.pop(), large[-1]
        keep[less], alias[less] = scaled[less], more
        scaled[more] -= 1.0 - scaled[less]
        if scaled[more] < 1.0:
            small.append(large.pop())
    return keep, alias  # what is left in either list is 1.0 up to rounding: kept whole


class _Stock:
    """One symbol's state: the exact price of the walk and the day's published figures."""

    __slots__ = ("symbol", "price", "open", "high", "low", "volume", "last_time", "mu", "sigma",
                 "quote")

    def __init__(self, company: Company) -> None:
        self.symbol = company.symbol
        self.price = float(company.price)
        self.open = self.high = self.low = round(self.price, 2)
        self.volume = 0
        self.last_time = 0.0
        # Ito's correction: the log price drifts at mu - sigma^2/2 for the price to drift at mu.
        self.mu = company.drift - company.volatility ** 2 / 2
        self.sigma = company.volatility
        self.quote: dict = {}


class Market:
    """Every listed stock and the global tick sequence.

    Args:
        universe: the listed companies.
        rng: the only source of randomness; seed it to replay a market.
        rate: ticks per second across the whole market, on average.
        speed: market seconds per real second.
        ts: wall-clock time in ms at which the market opens, stamped on the opening quotes.
    """

    def __init__(self, universe: Sequence[Company], rng: random.Random, *, rate: float = 20.0,
                 speed: float = 600.0, ts: int = 0) -> None:
        if not universe:
            raise ValueError("a market needs at least one company")
        if not (rate > 0 and math.isfinite(rate)):
            raise ValueError(f"rate must be a finite positive number, not {rate!r}")
        self.rate = rate
        self.seq = 0
        self.time = 0.0
        self._rng = rng
        self._random = rng.random
        self._gauss = rng.gauss
        self._mean_gap = 1.0 / rate
        self._years_per_second = speed / TRADING_YEAR
        self._stocks = [_Stock(company) for company in universe]
        self._by_symbol = {stock.symbol: stock for stock in self._stocks}
        self._count = len(self._stocks)
        keep, alias = alias_table([company.activity for company in universe])
        self._keep = keep
        self._alias = [self._stocks[i] for i in alias]
        for stock in self._stocks:
            self._publish(stock, 0, ts, seq=0)
        self.due = -log(1.0 - rng.random()) * self._mean_gap

    def state(self) -> dict:
        """Everything the walk needs to go on from here, as plain JSON-able data."""
        version, internal, gauss_next = self._rng.getstate()
        return {
            "seq": self.seq,
            "time": self.time,
            "due": self.due,
            "rng": [version, list(internal), gauss_next],
            "stocks": [
                {"price": stock.price, "last_time": stock.last_time, "quote": stock.quote}
                for stock in self._stocks
            ],
        }

    @classmethod
    def restore(cls, universe: Sequence[Company], state: dict, *, rate: float) -> Market:
        """The market ``state()`` described, going on at ``rate``: the same next ticks.

        Raises:
            ValueError: ``state`` does not fit ``universe`` or is malformed.
        """
        stocks = state["stocks"]
        if len(stocks) != len(universe):
            raise ValueError(f"{len(stocks)} saved stocks for {len(universe)} companies")
        version, internal, gauss_next = state["rng"]
        rng = random.Random()
        market = cls(universe, rng, rate=rate)
        rng.setstate((version, tuple(internal), gauss_next))  # after __init__ drew from it
        market.seq, market.time, market.due = int(state["seq"]), state["time"], state["due"]
        for stock, saved in zip(market._stocks, stocks, strict=True):
            quote = dict(saved["quote"])
            if quote["symbol"] != stock.symbol:
                raise ValueError(f"saved quote for {quote['symbol']!r}, not {stock.symbol!r}")
            stock.price, stock.last_time = float(saved["price"]), float(saved["last_time"])
            stock.open, stock.high, stock.low = quote["open"], quote["high"], quote["low"]
            stock.volume = int(quote["volume"])
            stock.quote = quote
        if not (market.time <= market.due and market.seq >= 0):
            raise ValueError("saved clock or seq out of order")
        return market

    @property
    def quotes(self) -> list[dict]:
        """The latest quote of every symbol, in the universe's order."""
        return [stock.quote for stock in self._stocks]

    def next_tick(self, ts: int) -> dict:
        """The tick due at ``self.due``: one trade on one symbol, its price moved."""
        random = self._random
        now = self.time = self.due
        self.due = now - log(1.0 - random()) * self._mean_gap  # exponential inter-arrival
        # One draw picks a column and, with its fraction, the column's own stock or its alias.
        column = random() * self._count
        index = int(column)
        stock = (self._stocks[index] if column - index < self._keep[index]
                 else self._alias[index])
        years = (now - stock.last_time) * self._years_per_second
        stock.last_time = now
        shock = stock.sigma * sqrt(years) * self._gauss(0.0, 1.0)
        price = stock.price * exp(stock.mu * years + shock)
        stock.price = MIN_PRICE if price < MIN_PRICE else MAX_PRICE if price > MAX_PRICE else price
        # Round lots, Pareto-distributed: mostly a few hundred shares, now and then thousands.
        size = 100 * min(int((1.0 - random()) ** _PARETO_EXPONENT), 100)
        self.seq += 1
        return self._publish(stock, size, ts, self.seq)

    def inject(self, symbol: str, price: float, ts: int) -> dict:
        """Set ``symbol``'s price, rounded to the cent; the walk goes on from there.

        The injection is a tick of its own (next ``seq``, ``size`` 0).

        Raises:
            UnknownSymbol: no such symbol in this market.
            BadPrice: the price rounds to less than a cent, or is absurdly large.
        """
        stock = self._stock(symbol)
        cents = round(price, 2)
        if not MIN_PRICE <= cents <= MAX_PRICE:
            raise BadPrice(f"price must be between {MIN_PRICE} and {MAX_PRICE:.0f}, not {price!r}")
        stock.price = cents
        stock.last_time = self.time
        self.seq += 1
        return self._publish(stock, 0, ts, self.seq)

    def _stock(self, symbol: str) -> _Stock:
        try:
            return self._by_symbol[symbol]
        except KeyError:
            raise UnknownSymbol(symbol) from None

    @staticmethod
    def _publish(stock: _Stock, size: int, ts: int, seq: int) -> dict:
        price = round(stock.price, 2)
        if price > stock.high:
            stock.high = price
        elif price < stock.low:
            stock.low = price
        stock.volume += size
        opened = stock.open
        stock.quote = {
            "symbol": stock.symbol,
            "price": price,
            "open": opened,
            "high": stock.high,
            "low": stock.low,
            "change": round(price - opened, 2) + 0.0,  # + 0.0 turns -0.0 into 0.0
            "change_pct": round((price - opened) / opened * 100, 2) + 0.0,
            "volume": stock.volume,
            "size": size,
            "ts": ts,
            "seq": seq,
        }
        return stock.quote
