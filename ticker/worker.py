"""The gunicorn worker that serves the ticker: gunicorn's gevent worker, made fair and quiet.

Strategy. gevent switches greenlets only when one would block, and a gevent socket's
``recv`` returns at once while bytes are waiting, so a client that keeps sending (a request
line or a header that never ends, a chunked body that never ends, pipelined requests) kept
its greenlet running and the whole worker deaf for seconds. Here every read on a client
connection, and every request on it, first checks how long the event loop has gone without
polling; past ``TURN_S`` the greenlet sleeps until the loop's next iteration, so every other
connection and timer gets its turn. A request that never waits pays one clock reading per
read. The check lives in a subclass of gevent's socket that overrides only ``recv`` and
``recv_into``: the app's streams keep ``send``, ``settimeout``, ``shutdown`` and the rest of
a plain gevent socket on their hot path.

Besides: requests gunicorn refuses before the app runs are answered in JSON like the app's
own errors, with one log line; accept errors (no descriptors left) cost one line a second
and a short pause, not a traceback each; SIGINT and SIGQUIT stop the worker from its main
greenlet (gunicorn's gevent worker raised ``SystemExit`` in a spawned greenlet, which gevent
reported with a traceback); and HTTP/2 is refused at start, since streams write HTTP/1.1
chunks straight to the socket.
"""

from __future__ import annotations

import contextlib
import errno
import json
import ssl
import sys
import time
from functools import partial

import gevent
import gevent.ssl
from gevent import socket as gsocket
from gevent.event import Event
from gevent.pool import Pool
from gevent.server import StreamServer
from gunicorn.http import errors as http_errors
from gunicorn.sock import ssl_context
from gunicorn.workers.ggevent import GeventWorker

from ticker import turns

__all__ = ["StreamWorker", "error_response", "refusal"]

#: Longest the loop may go without polling before a client read or request gives way.
TURN_S = 0.002
#: How long accepting pauses after accept() fails (no descriptors left, say).
ACCEPT_PAUSE_S = 0.1
#: At most one log line per this many seconds about failed accepts.
ACCEPT_LOG_EVERY_S = 1.0
#: How long SIGINT or SIGQUIT leaves streams to end cleanly before the worker exits.
QUICK_STOP_S = 1.0
#: Longest exception text in a log line about a refused request.
_DETAIL_CHARS = 200

_REFUSALS: tuple[tuple[type[BaseException], int, str, str], ...] = (
    # (exception, status, reason phrase, message for the client); first match wins.
    (http_errors.LimitRequestLine, 414, "URI Too Long", "request line too long"),
    (http_errors.LimitRequestHeaders, 431, "Request Header Fields Too Large",
     "request header fields too large or too many"),
    (http_errors.InvalidRequestLine, 400, "Bad Request", "malformed request line"),
    (http_errors.InvalidRequestMethod, 400, "Bad Request", "invalid method"),
    (http_errors.InvalidHTTPVersion, 400, "Bad Request", "unsupported HTTP version"),
    (http_errors.ObsoleteFolding, 400, "Bad Request", "folded header line"),
    (http_errors.InvalidHeaderName, 400, "Bad Request", "malformed header"),
    (http_errors.InvalidHeader, 400, "Bad Request", "malformed header"),
    (http_errors.InvalidSchemeHeaders, 400, "Bad Request", "contradictory scheme headers"),
    (http_errors.InvalidProxyLine, 400, "Bad Request", "malformed PROXY protocol line"),
    (http_errors.InvalidChunkSize, 400, "Bad Request", "malformed chunked body"),
    (http_errors.ChunkMissingTerminator, 400, "Bad Request", "malformed chunked body"),
    (http_errors.InvalidChunkExtension, 400, "Bad Request", "malformed chunked body"),
    (http_errors.InvalidH2CPreface, 400, "Bad Request", "HTTP/2 connection preface expected"),
    (http_errors.UnsupportedTransferCoding, 501, "Not Implemented",
     "unsupported transfer coding"),
    (http_errors.ExpectationFailed, 417, "Expectation Failed", "unsupported expectation"),
    (http_errors.ForbiddenProxyRequest, 403, "Forbidden", "PROXY protocol not allowed"),
    (http_errors.ConfigurationProblem, 500, "Internal Server Error",
     "server configuration problem"),
    (ssl.SSLError, 403, "Forbidden", "TLS handshake failed"),
)


def refusal(exc: BaseException) -> tuple[int, str, str] | None:
    """``(status, reason, message)`` gunicorn refuses ``exc`` with, or None if not a refusal.

    The message never quotes the request, so a client's bytes are not echoed back.
    """
    if isinstance(exc, (http_errors.InvalidResponseHeader, http_errors.InvalidResponseHeaderName)):
        return None  # the app's own bad header: a bug, not the client's fault
    for kind, status, reason, message in _REFUSALS:
        if isinstance(exc, kind):
            return status, reason, message
    return None


def error_response(status: int, reason: str, message: str) -> bytes:
    """A complete HTTP/1.1 answer with the JSON body ``{"error": message}``; it closes."""
    body = json.dumps({"error": message}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("latin-1") + body


def _one_line(exc: BaseException) -> str:
    """The exception's text, escaped onto one line and cut short."""
    return repr(str(exc))[1:-1][:_DETAIL_CHARS]


class _Turn:
    """How long the event loop has gone without polling, seen from client reads.

    A check watcher counts the loop's iterations (it runs after every poll), so a look
    at the count tells whether the loop has polled since the last look; the monotonic
    clock says for how long not. (``loop.now()`` cannot tell: starting any timer, as
    gunicorn's keep-alive timeout does per request, updates it.)
    """

    __slots__ = ("_iterations", "_seen", "_since", "_watcher")

    def __init__(self) -> None:
        self._iterations = 0
        self._seen = -1
        self._since = 0.0
        self._watcher = None

    def _count(self) -> None:
        self._iterations += 1

    def take(self) -> None:
        """Return at once, or after the loop's next poll if it has waited ``TURN_S``."""
        if self._watcher is None:  # first use, in the worker: after the fork
            self._watcher = gevent.get_hub().loop.check(ref=False)
            self._watcher.start(self._count)
        if self._iterations != self._seen:
            self._seen, self._since = self._iterations, time.perf_counter()
        elif time.perf_counter() - self._since > TURN_S:
            turns.poll_once()


_turn = _Turn()


class FairSocket(gsocket.socket):
    """A gevent client socket whose reads wait their turn; every other method is gevent's."""

    __slots__ = ()

    def recv(self, *args):
        _turn.take()
        return super().recv(*args)

    def recv_into(self, *args):
        _turn.take()
        return super().recv_into(*args)


class FairSSLSocket(gevent.ssl.SSLSocket):
    """The TLS form of ``FairSocket``, made by the worker's SSL context."""

    def recv(self, *args, **kwargs):
        _turn.take()
        return super().recv(*args, **kwargs)

    def recv_into(self, *args, **kwargs):
        _turn.take()
        return super().recv_into(*args, **kwargs)


class _Listener(StreamServer):
    """gevent's StreamServer, accepting ``FairSocket``s and taking accept errors calmly."""

    def __init__(self, *args, log, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._log = log
        self._failures = 0
        self._last_report = float("-inf")

    def do_read(self):
        try:
            fd, address = self.socket._accept()
        except BlockingIOError:
            return None
        except OSError as exc:
            self._accept_failed(exc)
            return None
        listener = self.socket
        return FairSocket(listener.family, listener.type, listener.proto, fileno=fd), address

    def _accept_failed(self, exc: OSError) -> None:
        # No descriptors left (EMFILE, ENFILE), or a connection gone before accept: the
        # listener stays readable, so accepting pauses briefly instead of spinning.
        self._failures += 1
        now = time.monotonic()
        if now - self._last_report >= ACCEPT_LOG_EVERY_S:
            name = errno.errorcode.get(exc.errno, "?")
            self._log.warning("accept failed (%s, %d times since the last report): %s",
                              name, self._failures, exc.strerror or exc)
            self._failures, self._last_report = 0, now
        self.stop_accepting()
        self._timer = self.loop.timer(ACCEPT_PAUSE_S)
        self._timer.start(self._resume)

    def _resume(self) -> None:
        if self.started:
            self.start_accepting()


class _Name:
    """A listener as its accepted connections see it: its name, which outlives its close
    (a worker that stops closes its listener while connections it accepted are served)."""

    __slots__ = ("_name",)

    def __init__(self, sock) -> None:
        self._name = sock.getsockname()

    def getsockname(self):
        return self._name


class StreamWorker(GeventWorker):
    """gunicorn's gevent worker with fair reads, JSON refusals and traceback-free stops."""

    @classmethod
    def check_config(cls, cfg, log) -> None:
        # Called by the master at start, before any worker boots.
        if "h2" in cfg.http_protocols:
            sys.exit("error: http_protocols must be h1: ticker streams are HTTP/1.1 only "
                     "(let a proxy in front speak HTTP/2 to browsers)")

    def init_process(self) -> None:
        self._stop = Event()
        self._quick = False
        self._serving = 0  # requests between their head and their response's end
        # Each connection's greenlet would keep who spawned it and the stack it was spawned
        # from, for a debugging aid this worker never prints: some 250 bytes a stream.
        gevent.config.track_greenlet_tree = False
        super().init_process()

    def handle_exit(self, sig, frame) -> None:
        self.alive = False
        self._stop.set()

    def handle_quit(self, sig, frame) -> None:
        # Only flags here: run() does the rest in the main greenlet, where exiting is quiet.
        self.alive = False
        self._quick = True
        self._stop.set()

    def run(self) -> None:
        ssl_args = {}
        if self.cfg.is_ssl:
            context = ssl_context(self.cfg)
            context.sslsocket_class = FairSSLSocket
            ssl_args = {"ssl_context": context}
        servers = []
        for sock in self.sockets:
            sock.setblocking(1)
            server = _Listener(sock, handle=partial(self.handle, _Name(sock)),
                               spawn=Pool(self.worker_connections), log=self.log, **ssl_args)
            if self.cfg.workers > 1:
                server.max_accept = 1
            server.start()
            servers.append(server)

        while self.alive:
            self.notify()
            self._stop.wait(1.0)

        for server in servers:
            server.close()
        if self._quick:
            self.cfg.worker_int(self)
        # Requests in progress may finish, streams end by themselves once ``alive`` is
        # False (the app polls it), then connections still open are cut: idle keep-alive
        # ones wait for nothing. Within the master's graceful_timeout, which ends in SIGKILL.
        window = QUICK_STOP_S if self._quick else max(0.0, self.cfg.graceful_timeout - 1.0)
        deadline = time.monotonic() + window
        while self._serving and time.monotonic() < deadline:
            self.notify()
            gevent.sleep(0.05)
        for server in servers:
            server.stop(timeout=0.5)

    def handle_request(self, listener_name, req, sock, addr):
        _turn.take()  # pipelined requests need no read; each still waits its turn
        self._serving += 1
        try:
            super().handle_request(listener_name, req, sock, addr)
        finally:
            self._serving -= 1
        if not self.alive:
            raise StopIteration()  # stopping: no next request on this connection

    def handle_error(self, req, client, addr, exc) -> None:
        if isinstance(exc, (gevent.GreenletExit, SystemExit)):
            return  # the worker is stopping and ended this connection
        refused = refusal(exc)
        if refused is None:
            # The app answers its own errors; this is gunicorn's or ours: one line, as there.
            self.log.error("Error handling request: %s: %s", type(exc).__name__, _one_line(exc))
            refused = (500, "Internal Server Error", "internal server error")
        else:
            ip = addr[0] if isinstance(addr, tuple) and addr else "unix"
            self.log.warning("Invalid request from ip=%s: %s", ip, _one_line(exc))
        status, reason, message = refused
        if status == 414:
            message = f"{message} (limit {self.cfg.limit_request_line} bytes)"
        # A client that is gone or does not read has nothing more to be told.
        with contextlib.suppress(OSError):
            client.sendall(error_response(status, reason, message))

