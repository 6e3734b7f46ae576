"""An app whose worker already knows a small market, for in-process tests.

The market state is the real ``EventLog``, filled the way the feed reader fills it, so
these tests need no running market and no gunicorn.
"""

from __future__ import annotations

from flask import Flask

from ticker.app import create_app

UNIVERSE = [
    {"symbol": "AAA", "name": "Aaa Corp", "sector": "Tech"},
    {"symbol": "BRK.B", "name": "Brk Holdings", "sector": "Finance"},
    {"symbol": "CCC", "name": "Ccc Ltd", "sector": "Energy"},
]


def quote(symbol: str, seq: int) -> dict:
    return {"symbol": symbol, "price": 12.5, "open": 12.0, "high": 13.0, "low": 11.0,
            "change": 0.5, "change_pct": 4.17, "volume": 100, "size": 100, "ts": 1, "seq": seq}


def filled_app(**config) -> Flask:
    """``create_app(config)`` with the three-symbol market above at seq 3, feed up, and
    the worker ready (its log as exact as the market's replay could make it)."""
    app = create_app({"feed": "unix:/nonexistent/feed.sock", **config})
    service = app.extensions["ticker"]
    service.log.reset("ep1", 3, UNIVERSE, [quote("AAA", 1), quote("BRK.B", 2), quote("CCC", 3)])
    service.log.feed_up = True
    service.feed.ready.set()
    return app
