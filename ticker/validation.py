"""Reading what a request asks for, and refusing what it should not ask."""

from __future__ import annotations

import math

from simulator.wire import SYMBOL_RE
from ticker.errors import ApiError
from ticker.eventlog import EventLog

__all__ = ["MAX_RATE", "MIN_RATE", "parse_max_rate", "parse_symbols"]


def parse_symbols(
    text: str | None, log: EventLog, max_symbols: int, allowed: frozenset[str] | None = None,
) -> list[str] | None:
    """The listed symbols a request names, in its order without repeats; ``None`` for all.

    ``allowed`` is what the request's token grants (``None``: everything). Naming no
    symbols then means every listed symbol the token grants, in listing order.

    Raises:
        ApiError: 400 for bad syntax or too many, 403 for symbols the token does not
            grant, 404 for symbols the market does not list, 503 while no feed has told
            this worker what is listed.
    """
    if text is None or not text.strip():
        _require_universe(log)
        if allowed is None:
            return None
        granted = [name for name in log.universe if name in allowed]
        if not granted:
            raise ApiError(403, "this token grants none of the listed symbols")
        return granted
    names = [part.strip().upper() for part in text.split(",")]
    if len(names) > max_symbols:
        raise ApiError(400, f"too many symbols: at most {max_symbols} per request")
    bad = [name for name in names if not SYMBOL_RE.match(name)]
    if bad:
        raise ApiError(400, f"malformed symbol {bad[0][:20]!r}: expected e.g. ACME or BRK.B")
    unique = list(dict.fromkeys(names))
    denied = [name for name in unique if allowed is not None and name not in allowed]
    if denied:
        raise ApiError(403, f"this token does not grant {_listing(denied)}")
    _require_universe(log)
    unknown = [name for name in unique if name not in log.universe]
    if unknown:
        raise ApiError(404, f"unknown symbol: {_listing(unknown)}")
    return unique


MIN_RATE, MAX_RATE = 0.1, 100.0  # max_rate: updates a second per symbol


def parse_max_rate(text: str | None) -> float | None:
    """A stream's ``max_rate``: at most that many ``price`` events a second per symbol.

    Raises:
        ApiError: 400 unless a number from ``MIN_RATE`` to ``MAX_RATE``.
    """
    if text is None:
        return None
    try:
        rate = float(text)
    except ValueError:
        rate = math.nan
    if not MIN_RATE <= rate <= MAX_RATE:  # nan fails too
        raise ApiError(400, f"max_rate must be a number from {MIN_RATE:g} to {MAX_RATE:g} "
                            "(price events a second per symbol)")
    return rate


def _listing(names: list[str]) -> str:
    return ", ".join(names[:5]) + (" ..." if len(names) > 5 else "")


def _require_universe(log: EventLog) -> None:
    if not log.universe:
        raise ApiError(503, "the market feed is not connected yet", retry_after=2)
