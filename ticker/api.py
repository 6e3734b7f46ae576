"""The JSON API, health and metrics: small reads of the worker's market state."""

from __future__ import annotations

import math

from flask import Blueprint, Response, current_app, jsonify, request

from ticker import access, metrics
from ticker.errors import ApiError
from ticker.eventlog import EventLog
from ticker.listing import Listing
from ticker.validation import parse_symbols

__all__ = ["bp"]

bp = Blueprint("api", __name__)

_RETRY_AFTER_S = 5
_LISTING_KEY = "ticker.listing"  # app.extensions: (universe, epoch, Listing) last served


@bp.get("/api/symbols")
def symbols() -> Response:
    """Every listed company (that the token grants): ``symbol``, ``name`` and ``sector``.

    Cacheable: a weak ``ETag`` that ``If-None-Match`` turns into a 304, ``no-cache`` so a
    browser keeps the listing but asks each time whether it still holds, and gzip for a
    client that accepts it. The full listing is built once per universe.
    """
    service = current_app.extensions["ticker"]
    log = service.log
    chosen = parse_symbols(None, log, service.config.max_symbols, access.granted())
    if chosen is None:
        listing = _full_listing(log)
    else:
        listing = Listing.of(log.epoch or "", [log.universe[symbol] for symbol in chosen])
    headers = {"ETag": listing.etag, "Cache-Control": "no-cache", "Vary": "Accept-Encoding"}
    if request.if_none_match.contains_weak(listing.opaque_tag):
        return Response(status=304, headers=headers)
    if request.accept_encodings.quality("gzip") > 0:
        headers["Content-Encoding"] = "gzip"
        return Response(listing.gzipped, headers=headers, content_type="application/json")
    return Response(listing.body, headers=headers, content_type="application/json")


def _full_listing(log: EventLog) -> Listing:
    """The listing of every symbol ``log`` knows, built again only when its universe changes
    (a new universe is a new dict: see ``EventLog.reset``)."""
    cached = current_app.extensions.get(_LISTING_KEY)
    if cached is None or cached[0] is not log.universe or cached[1] != log.epoch:
        listing = Listing.of(log.epoch or "", list(log.universe.values()))
        cached = current_app.extensions[_LISTING_KEY] = (log.universe, log.epoch, listing)
    return cached[2]


@bp.get("/api/snapshot")
def snapshot() -> Response:
    """The latest quote of each requested symbol (``?symbols=A,B``; none: all)."""
    service = current_app.extensions["ticker"]
    chosen = parse_symbols(
        request.args.get("symbols"), service.log, service.config.max_symbols, access.granted()
    )
    return Response(service.log.quotes_json(chosen), mimetype="application/json")


@bp.get("/api/candles/<symbol>")
def candles(symbol: str) -> Response:
    """Today's one-minute candles of one symbol, from the market itself, so that every
    worker of every instance answers the same: ``[t, open, high, low, close, volume]``."""
    service = current_app.extensions["ticker"]
    if "," in symbol:
        raise ApiError(400, "one symbol per /api/candles/<SYMBOL>")
    [chosen] = parse_symbols(symbol, service.log, 1, access.granted())
    answer = service.feed.ask({"op": "candles", "symbol": chosen})
    if answer is None or answer.get("type") != "reply":
        raise ApiError(503, "the market did not answer", retry_after=_RETRY_AFTER_S)
    rows, interval = answer.get("candles"), answer.get("interval")
    if not _candles(rows) or isinstance(interval, bool) or not isinstance(interval, int):
        raise ApiError(503, "the market sent candles that cannot be read",
                       retry_after=_RETRY_AFTER_S)
    return jsonify(symbol=chosen, interval=interval, candles=rows)


def _candles(rows: object) -> bool:
    """Whether ``rows`` are candles: lists of six finite numbers."""
    return isinstance(rows, list) and all(
        isinstance(row, list) and len(row) == 6
        and all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
                for v in row)
        for row in rows
    )


@bp.get("/healthz")
def healthz() -> tuple[Response, int]:
    """200 while this worker reads the feed with its log exact, 503 otherwise (or broken)."""
    body, healthy = current_app.extensions["ticker"].health()
    return jsonify(body), 200 if healthy else 503


@bp.get("/metrics")
def prometheus() -> Response:
    body, content_type = metrics.exposition()
    return Response(body, content_type=content_type)
