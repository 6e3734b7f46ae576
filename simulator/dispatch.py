"""The one answer to a request line, whichever transport brought it (socket or Redis).

Every request gets one answer line, except a replay, which gets its ticks in pieces and
then one reply (or one error and nothing else), and ``symbols``, whose reply a large
universe follows in ``universe`` pieces. The answer comes back as an iterator of
lines the transport sends in order: lazy, so a long replay can be sent a piece at a time
with the event loop running between pieces. Everything the answer depends on (which
ticks a replay covers, what an inject did) is settled when ``answer`` returns, not as the
lines are taken. An inject's tick goes to everyone through ``publish``, the same function
the pump hands its ticks to, before the requester's reply.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import time
from collections.abc import Callable, Iterator

from simulator import wire
from simulator.candles import reply_line
from simulator.exchange import Exchange
from simulator.model import MarketError, UnknownSymbol
from simulator.replay import pieces

__all__ = ["Dispatcher"]

log = logging.getLogger("simulator")


class Dispatcher:
    """Answers the requests of every connection to one exchange."""

    def __init__(self, exchange: Exchange, publish: Callable[[list[dict]], None]) -> None:
        self.exchange = exchange
        self._publish = publish

    def answer(self, item: dict | wire.WireError, who: str) -> Iterator[bytes]:
        """The answer lines to ``item`` (a decoded line, or why it could not be decoded),
        from ``who`` (for the log)."""
        if isinstance(item, wire.WireError):
            return iter([wire.encode(wire.error(str(item)))])
        if item.get("op") == "candles":
            return iter([self._candles(item)])
        try:
            request = wire.parse_request(item)
        except wire.WireError as exc:
            return iter([wire.encode(wire.error(str(exc), _echo_id(item)))])
        if isinstance(request, wire.ReplayRequest):
            return self._replay(request)
        if isinstance(request, wire.SymbolsRequest):  # a reply, then the universe in pieces
            return iter(wire.symbols_reply(request.id, self.exchange.listing))
        return iter([wire.encode(self._one(request, who))])

    def _one(self, request: wire.InjectRequest | wire.AuthRequest, who: str) -> dict:
        if isinstance(request, wire.AuthRequest):  # admitted already: nothing more to check
            return wire.reply(request.id, ok=True)
        market = self.exchange.market
        try:
            quote = market.inject(request.symbol, request.price, time.time_ns() // 1_000_000)
        except MarketError as exc:
            return wire.error(str(exc), request.id)
        self._publish([quote])
        log.info("%s injected %s at %.2f (seq %d)", who, quote["symbol"], quote["price"],
                 quote["seq"])
        return wire.reply(request.id, quote=quote)

    def _candles(self, message: dict) -> bytes:
        """The most recent one-minute candles of one symbol that fit in the answer line."""
        request_id, symbol = message.get("id"), message.get("symbol")
        if not _plain_id(request_id):
            return wire.encode(wire.error("id must be a string or a finite number"))
        if len(json.dumps(request_id)) > wire.MAX_REPLAY_ID:  # leaves the candles room
            reason = f"a candles request's id must be at most {wire.MAX_REPLAY_ID} bytes of JSON"
            return wire.encode(wire.error(reason, request_id))
        if not isinstance(symbol, str) or not symbol:
            return wire.encode(wire.error("candles needs a symbol", request_id))
        try:
            rows = self.exchange.candles.rows(symbol)
        except UnknownSymbol as exc:
            return wire.encode(wire.error(str(exc), request_id))
        return reply_line(symbol, rows, request_id)

    def _replay(self, request: wire.ReplayRequest) -> Iterator[bytes]:
        replay, seq = self.exchange.replay, self.exchange.market.seq
        after = request.after
        if after > seq:
            reason = f"after {after} is ahead of the market (seq {seq})"
            return iter([wire.encode(wire.error(reason, request.id))])
        if after < replay.oldest:
            reason = f"after {after} is older than the replay (oldest {replay.oldest})"
            return iter([wire.encode(wire.error(reason, request.id))])
        until = seq if request.until is None else min(request.until, seq)
        lines = replay.between(after, until)
        done = wire.reply(request.id, after=after, until=until, count=len(lines))
        return itertools.chain(pieces(lines, request.id), [wire.encode(done)])


def _plain_id(value: object) -> bool:
    """Whether ``value`` may be a request's id: absent, a string or a finite number."""
    if isinstance(value, float):
        return math.isfinite(value)
    return value is None or isinstance(value, str | int) and not isinstance(value, bool)


def _echo_id(message: dict) -> object:
    """The id to put on an error for a request that failed to parse: its own, if plain."""
    value = message.get("id")
    return value if isinstance(value, str | int) and not isinstance(value, bool) else None
