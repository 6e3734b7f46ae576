"""The SSE routes: validate, then run a stream's life in its response body.

The fan-out enforces both stream limits (per worker, and per client address so one
client cannot take them all); a refusal is a 503 with ``Retry-After``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from socket import socket

from flask import Blueprint, Response, current_app, request

from ticker import access, admission
from ticker.errors import ApiError
from ticker.fanout import Refused
from ticker.service import TickerService
from ticker.validation import parse_max_rate, parse_symbols

__all__ = ["SERVER_RESPONSE", "SSE_HEADERS", "bp", "keep_server_response"]

SERVER_RESPONSE = "ticker.server_response"

bp = Blueprint("streams", __name__)

SSE_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}
_CONTENT_TYPE = "text/event-stream"
_RETRY_AFTER_S = 5
# What gunicorn's access log reads of a request's environ once the response has ended.
_LOGGED = ("REMOTE_ADDR", "REQUEST_METHOD", "RAW_URI", "SERVER_PROTOCOL", "PATH_INFO",
           "QUERY_STRING", "HTTP_REFERER", "HTTP_USER_AGENT", "HTTP_AUTHORIZATION")


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
    rate = parse_max_rate(request.args.get("max_rate"))
    if request.method == "HEAD":
        return Response(status=200, headers=SSE_HEADERS, content_type=_CONTENT_TYPE)
    if service.fanout.closing:
        # A browser gives up for good on any answer but 200; an empty stream that ends
        # at once makes it reconnect after `retry`, to a worker that is not stopping.
        return Response(service.fanout.retry_frame, headers=SSE_HEADERS, content_type=_CONTENT_TYPE)
    sock = request.environ.get("gunicorn.socket")
    server_response = request.environ.get(SERVER_RESPONSE)
    if sock is None or server_response is None:
        raise ApiError(503, "streams are served by gunicorn's gevent worker only")
    client = request.remote_addr or ""
    try:
        service.fanout.check(client)
    except Refused as exc:
        raise ApiError(503, str(exc), retry_after=_RETRY_AFTER_S) from None
    last_event_id = request.headers.get("Last-Event-ID") or request.args.get("lastEventId")
    key = None if symbols is None else frozenset(symbols)
    body = _body(service, request.environ, sock, server_response, client, key, rate,
                 last_event_id)
    # Handed to gunicorn as it is: werkzeug's wrappers around a body would stay on the
    # stack of every waiting stream's greenlet, saved on the heap for the stream's life.
    return Response(body, headers=SSE_HEADERS, content_type=_CONTENT_TYPE,
                    direct_passthrough=True)


def _body(
    service: TickerService, environ: dict, sock: socket, server_response: object,
    client: str, key: frozenset[str] | None, rate: float | None, last_event_id: str | None,
) -> Iterator[bytes]:
    """The stream's whole life: it exists from the first step of this body to its end.

    A response that gunicorn never runs (the client left before it started) holds
    nothing, since a generator that never started has nothing to clean up.
    """
    fanout = service.fanout
    if not service.wait_ready(last_event_id):
        # A resume this worker cannot answer exactly yet: the client comes back after
        # `retry`, here or elsewhere, instead of getting a snapshot it need not have.
        yield fanout.retry_frame
        return
    try:
        stream = fanout.open(sock, client, key, rate)
    except Refused:
        yield fanout.retry_frame  # the places went while this worker got ready
        return
    try:
        start = admission.start(
            service.log, key, last_event_id, fanout.retry_frame, service.feed.history, rate
        )
        stream.begin(start, service.log.feed_up)
        yield start.body
        # gunicorn holds what was yielded last for as long as the stream waits: an empty
        # piece (it writes nothing) lets the first bytes, a whole snapshot, go.
        del start
        yield b""
        # gunicorn has sent the headers, and chose the framing: the sweeper follows it.
        fanout.arm(stream, chunked=bool(getattr(server_response, "chunked", False)))
        # What the stream waits with from now on is all that a stream costs: its own set of
        # symbols goes (its group's is shared), and so does most of the environ.
        del key
        _keep_logged(environ)
        fanout.wait(stream)
    finally:
        fanout.close(stream)


def _keep_logged(environ: dict) -> None:
    """Let go of a streaming request's environ but for what the access log reads.

    gunicorn keeps the environ for the response's whole life, which for a stream is
    hours: some 1.5 KB of dict and strings a stream that nothing reads again (PEP 3333
    lets an application change the environ as it likes).
    """
    kept = {name: environ[name] for name in _LOGGED if name in environ}
    environ.clear()
    environ.update(kept)


def keep_server_response(wsgi_app: Callable) -> Callable:
    """WSGI middleware: put the server's own response object (the ``start_response``
    callable's owner, under gunicorn) in the environ, so a stream knows its framing."""

    def app(environ: dict, start_response: Callable) -> Iterable[bytes]:
        environ[SERVER_RESPONSE] = getattr(start_response, "__self__", None)
        return wsgi_app(environ, start_response)

    return app
