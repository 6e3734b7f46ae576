"""The JSON API, health and metrics: small reads of the worker's market state."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify, request

from ticker import access, metrics
from ticker.validation import parse_symbols

__all__ = ["bp"]

bp = Blueprint("api", __name__)


@bp.get("/api/symbols")
def symbols() -> Response:
    """Every listed company (that the token grants): ``symbol``, ``name`` and ``sector``."""
    service = current_app.extensions["ticker"]
    universe = service.log.universe
    chosen = parse_symbols(None, service.log, service.config.max_symbols, access.granted())
    return jsonify([universe[symbol] for symbol in chosen or universe])


@bp.get("/api/snapshot")
def snapshot() -> Response:
    """The latest quote of each requested symbol (``?symbols=A,B``; none: all)."""
    service = current_app.extensions["ticker"]
    chosen = parse_symbols(
        request.args.get("symbols"), service.log, service.config.max_symbols, access.granted()
    )
    return jsonify(service.log.quote_list(chosen))


@bp.get("/healthz")
def healthz() -> tuple[Response, int]:
    """200 while this worker reads the feed with its log exact, 503 otherwise (or broken)."""
    body, healthy = current_app.extensions["ticker"].health()
    return jsonify(body), 200 if healthy else 503


@bp.get("/metrics")
def prometheus() -> Response:
    body, content_type = metrics.exposition()
    return Response(body, content_type=content_type)
