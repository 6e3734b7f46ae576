"""The SSE routes: validate, open a stream on the fan-out, hand gunicorn its first bytes.

The fan-out enforces both stream limits (per worker, and per client address so one
client cannot take them all); a refusal is a 503 with ``Retry-After``.
"""

from __future__ import annotations

from collections.abc import Iterator

from flask import Blueprint, Response, current_app, request
from gevent.socket import wait_read

from ticker import access
from ticker.errors import ApiError
from ticker.fanout import Fanout, Refused, Stream
from ticker.validation import parse_symbols

__all__ = ["SSE_HEADERS", "bp"]

bp = Blueprint("streams", __name__)

SSE_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}
_CONTENT_TYPE = "text/event-stream"
_RETRY_AFTER_S = 5


@bp.get("/stream")
def stream_many() -> Response:
    """``/stream?symbols=A,B,C``: one stream for many symbols (no ``symbols``: all)."""
    return _open(request.args.get("symbols"))


@bp.get("/stream/<symbol>")
def stream_one(symbol: str) -> Response:
    """``/stream/ACME``: one stream for one symbol."""
    if "," in symbol:
        raise ApiError(400, "one symbol per /stream/<SYMBOL>; use /stream?symbols=A,B")
    return _open(symbol)


def _open(symbols_text: str | None) -> Response:
    service = current_app.extensions["ticker"]
    symbols = parse_symbols(
        symbols_text, service.log, service.config.max_symbols, access.granted()
    )
    if request.method == "HEAD":
        return Response(status=200, headers=SSE_HEADERS, content_type=_CONTENT_TYPE)
    if service.fanout.closing:
        # A browser gives up for good on any answer but 200; an empty stream that ends
        # at once makes it reconnect after `retry`, to a worker that is not stopping.
        return Response(service.fanout.retry_frame, headers=SSE_HEADERS, content_type=_CONTENT_TYPE)
    sock = request.environ.get("gunicorn.socket")
    if sock is None:
        raise ApiError(503, "streams are served by gunicorn's gevent worker only")
    last_event_id = request.headers.get("Last-Event-ID") or request.args.get("lastEventId")
    chunked = request.environ.get("SERVER_PROTOCOL") != "HTTP/1.0"
    try:
        stream, first = service.fanout.open(
            sock, request.remote_addr or "", symbols, last_event_id, chunked=chunked,
            history=service.history,
        )
    except Refused as exc:
        raise ApiError(503, str(exc), retry_after=_RETRY_AFTER_S) from None
    return Response(
        _body(service.fanout, stream, first), headers=SSE_HEADERS, content_type=_CONTENT_TYPE
    )


def _body(fanout: Fanout, stream: Stream, first: bytes) -> Iterator[bytes]:
    """Yield the first bytes through gunicorn, then let the sweeper write until the end."""
    try:
        yield first
        fanout.arm(stream)
        # Nothing more is read from a stream's socket, so it turns readable only when the
        # client leaves (end of file) or the stream is ended here (shutdown): either way
        # the stream is closed at once, not at its next write.
        wait_read(stream.sock.fileno())
    finally:
        fanout.close(stream)
