"""Reading what a request asks for, and refusing what it should not ask."""

from __future__ import annotations

from simulator.wire import SYMBOL_RE
from ticker.errors import ApiError
from ticker.eventlog import EventLog

__all__ = ["parse_symbols"]


def parse_symbols(text: str | None, log: EventLog, max_symbols: int) -> list[str] | None:
    """The listed symbols a request names, in its order without repeats; ``None`` for all.

    Raises:
        ApiError: 400 for bad syntax or too many, 404 for symbols the market does not
            list, 503 while no feed has told this worker what is listed.
    """
    if text is None or not text.strip():
        _require_universe(log)
        return None
    names = [part.strip().upper() for part in text.split(",")]
    if len(names) > max_symbols:
        raise ApiError(400, f"too many symbols: at most {max_symbols} per request")
    bad = [name for name in names if not SYMBOL_RE.match(name)]
    if bad:
        raise ApiError(400, f"malformed symbol {bad[0][:20]!r}: expected e.g. ACME or BRK.B")
    unique = list(dict.fromkeys(names))
    _require_universe(log)
    unknown = [name for name in unique if name not in log.universe]
    if unknown:
        listed = ", ".join(unknown[:5]) + (" ..." if len(unknown) > 5 else "")
        raise ApiError(404, f"unknown symbol: {listed}")
    return unique


def _require_universe(log: EventLog) -> None:
    if not log.universe:
        raise ApiError(503, "the market feed is not connected yet", retry_after=2)
