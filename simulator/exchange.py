"""The market as every feed serves it: the model, its epoch and listing, its replay and
its candles.

Every tick the market makes, due on the clock or injected, passes through ``record``
once: encoded there (``tick_line``), kept in the replay, counted in its candle, and handed
back as the lines to publish. So the socket feed and the Redis feed publish the same bytes,
and the replay and the candles hold exactly what was published. Pure: no socket, no clock.
"""

from __future__ import annotations

import secrets

from simulator import wire
from simulator.candles import Candles
from simulator.model import Market
from simulator.pump import tick_line
from simulator.replay import Replay
from simulator.universe import Company

__all__ = ["Exchange"]


class Exchange:
    """One run of the market: a fresh epoch, or the one a saved state goes on with."""

    def __init__(self, market: Market, universe: list[Company], replay: Replay,
                 epoch: str | None = None) -> None:
        self.market = market
        self.universe = universe
        self.replay = replay
        self.epoch = epoch or secrets.token_hex(6)
        self.listing = [company.listing() for company in universe]
        self.candles = Candles(company.symbol for company in universe)

    def record(self, quotes: list[dict]) -> list[bytes]:
        """The tick lines of ``quotes`` (new ticks, in seq order), kept in the replay and
        counted in the candles."""
        lines = [tick_line(quote) for quote in quotes]
        self.replay.extend(quotes[0]["seq"], lines, quotes[-1]["ts"])
        self.candles.add(quotes)
        return lines

    def hello(self) -> dict:
        market = self.market
        return wire.hello(self.epoch, market.seq, self.listing, market.rate, self.replay.oldest)

    def snapshot(self) -> dict:
        return wire.snapshot(self.market.seq, self.market.quotes)
