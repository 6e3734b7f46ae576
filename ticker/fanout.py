"""Fan-out: one greenlet sweeps the open streams and writes what each is owed.

Strategy: writes are the cost (one ``send`` is ~10 us of kernel time, whatever its
size), so a stream never gets a write per tick. The feed reader only appends to the
``EventLog`` and wakes the sweeper; the sweeper then visits every stream once and
writes everything that piled up since its last visit in a single non-blocking
``send`` to the socket. Streams with the same subscription share one join of the new
frames, and one chunk header, per sweep. Under light load a sweep follows each tick
within a couple of milliseconds; under heavy load sweeps run back to back, each one
carrying more, so writes per stream stay bounded while events per write grow.

A stream's life belongs to its response body (``ticker/streams.py``): the body takes a
place (``open``), sends its first bytes through gunicorn, hands the socket to the
sweeper (``arm``, with the chunking gunicorn chose), then waits until the client leaves
(its socket turns readable: the client sends nothing more, so that is end of file) or
the server ends the stream (``end``), and gives the place back (``close``) in its
``finally``. Nothing else registers or frees a stream, so a response that is never run
holds nothing. A stream that cannot take a write keeps the unsent remainder, and nothing
more, until it drains: it never holds a queue. When it drains it catches up from the
log, or gets a snapshot if it has fallen behind the log (conflation). One that accepts
nothing for ``stall_s`` is dropped.

The end of a response has one owner, gunicorn: a stream the server ends with its framing
whole (worker shutdown) wakes its body, which returns, and gunicorn writes the closing
chunk, so the browser sees a clean end and reconnects at once, possibly to another
worker. A stream whose framing is broken (a write half done) or whose client is gone is
cut instead: its socket is shut down, and gunicorn's closing write fails quietly.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import time
from collections import Counter

import gevent
from gevent.event import Event
from gevent.select import select
from gevent.socket import wait

from ticker import metrics, sse
from ticker.admission import Start, status_frame
from ticker.eventlog import EventLog

__all__ = ["Fanout", "Refused", "Stream"]

logger = logging.getLogger(__name__)

_SEND_BUFFER = 64 * 1024
_SLICE = 16 * 1024


class Refused(Exception):
    """No stream can be opened now; the text says why (the caller answers 503)."""


class _Ended(Exception):
    """Thrown into a stream's body to say the server ended it cleanly."""


def _chunk(body: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(body), body)


class Stream:
    """One open SSE response: its socket, subscription and cursor into the log."""

    __slots__ = (
        "sock", "client", "key", "chunked", "generation", "cursor", "feed_up",
        "pending", "stalled_since", "last_write", "armed", "ended", "clean", "closed",
        "watcher",
    )

    def __init__(self, sock: socket.socket, client: str, key: frozenset[str] | None) -> None:
        self.sock = sock
        self.client = client
        self.key = key
        self.chunked = False
        self.generation = -1
        self.cursor = 0
        self.feed_up = False
        self.pending: memoryview | None = None
        self.stalled_since = 0.0
        self.last_write = 0.0
        self.armed = False
        self.ended = False  # the server ended it; its body returns
        self.clean = False  # ...with its framing whole: gunicorn writes the end
        self.closed = False  # its place is given back
        self.watcher = None  # what its body waits on, while it waits

    def begin(self, start: Start, feed_up: bool) -> None:
        """Take over where the first bytes left the stream."""
        self.generation, self.cursor, self.feed_up = start.generation, start.cursor, feed_up


class Fanout:
    """Every open stream of this worker, and the sweeper that feeds them."""

    def __init__(
        self,
        log: EventLog,
        *,
        max_streams: int,
        max_streams_per_client: int,
        heartbeat_s: float,
        retry_ms: int,
        flush_ms: float,
        stall_s: float,
        catch_up_bytes: int,
        clock=time.monotonic,
    ) -> None:
        self.log = log
        self.max_streams = max_streams
        self.max_streams_per_client = max_streams_per_client
        self.heartbeat_s = heartbeat_s
        self.retry_frame = sse.encode(retry=retry_ms)
        self.min_pause = flush_ms / 1000
        self.stall_s = stall_s
        self.catch_up_bytes = catch_up_bytes
        self.clock = clock
        self.closing = False
        self.count = 0
        self._per_client: Counter[str] = Counter()
        self._streams: set[Stream] = set()
        self._groups: dict[frozenset[str] | None, dict[Stream, None]] = {}
        self._generation = -1
        self._cursor = 0
        self._wake = Event()

    # A stream's life ------------------------------------------------------------

    def check(self, client: str) -> None:
        """Whether ``client`` could open a stream now (a route's early answer).

        Raises:
            Refused: the worker, or this client address, holds as many streams as it may.
        """
        if self.count >= self.max_streams:
            metrics.STREAMS_REFUSED.inc()
            raise Refused("server holds as many streams as it is configured to")
        if self._per_client[client] >= self.max_streams_per_client:
            metrics.STREAMS_REFUSED.inc()
            raise Refused("this client address holds as many streams as it may")

    def open(self, sock: socket.socket, client: str, key: frozenset[str] | None) -> Stream:
        """Take a place for a stream; its body must ``close`` it, whatever happens.

        Raises:
            Refused: as ``check``.
        """
        self.check(client)
        stream = Stream(sock, client, key)
        self._streams.add(stream)
        self.count += 1
        self._per_client[client] += 1
        metrics.STREAMS_OPEN.inc()
        if self.closing:
            self.end(stream, "shutdown")
        return stream

    def arm(self, stream: Stream, chunked: bool) -> None:
        """The first bytes are out: from now on the sweeper writes this stream, framed
        as HTTP/1.1 chunks when gunicorn chunks the response."""
        if stream.ended:
            return
        stream.chunked = chunked
        # Timeout zero makes send() non-blocking for plain and TLS sockets alike: it
        # takes what the kernel (or the TLS layer) accepts now and never waits.
        stream.sock.settimeout(0.0)
        # A small kernel buffer makes a reader that stopped visible within seconds
        # (the socket fills), instead of hiding it behind megabytes of autotuning.
        with contextlib.suppress(OSError):
            stream.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _SEND_BUFFER)
        # Each sweep's write is complete in itself: Nagle's algorithm would hold it back
        # until the client acknowledges the previous one (up to 40 ms of delayed ACK).
        if stream.sock.family in (socket.AF_INET, socket.AF_INET6):
            stream.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        stream.armed = True
        stream.last_write = self.clock()
        self._groups.setdefault(stream.key, {})[stream] = None
        self._wake.set()

    def wait(self, stream: Stream) -> None:
        """Block the stream's body until its client leaves or the server ends it."""
        if stream.ended:
            return
        # Nothing more is read from a stream's socket, so it turns readable only when the
        # client leaves (end of file) or the stream is cut here (shutdown).
        watcher = gevent.get_hub().loop.io(stream.sock.fileno(), 1)
        stream.watcher = watcher
        try:
            wait(watcher)
        except _Ended:
            pass
        finally:
            stream.watcher = None
            watcher.close()

    def end(self, stream: Stream, reason: str) -> None:
        """The server ends a stream: its body wakes, returns and closes it.

        Cleanly when nothing is half written and the socket takes more: gunicorn then
        writes the response's end. Otherwise the socket is shut down.
        """
        if stream.ended:
            return
        stream.ended = True
        self._unregister(stream)
        metrics.STREAMS_DROPPED.labels(reason).inc()
        if stream.pending is None and _writable(stream.sock):
            stream.clean = True
            # gunicorn writes the closing chunk, and perhaps reads a next request, with
            # the blocking socket it handed over.
            with contextlib.suppress(OSError):
                stream.sock.settimeout(None)
            gevent.get_hub().cancel_wait(stream.watcher, _Ended)
        else:
            _cut(stream.sock)

    def close(self, stream: Stream) -> None:
        """Give a stream's place back (its body's last word); safe to call more than once."""
        if stream.closed:
            return
        stream.closed = True
        self._unregister(stream)
        self._streams.discard(stream)
        self.count -= 1
        self._per_client[stream.client] -= 1
        if not self._per_client[stream.client]:
            del self._per_client[stream.client]
        metrics.STREAMS_OPEN.dec()
        stream.pending = None
        if not stream.clean:
            # The client left, or the body was stopped: nothing more can be written.
            _cut(stream.sock)

    def _unregister(self, stream: Stream) -> None:
        members = self._groups.get(stream.key)
        if members and stream in members:
            del members[stream]
            if not members:
                del self._groups[stream.key]

    def close_all(self) -> None:
        """Refuse new streams and end every open one (worker shutdown)."""
        self.closing = True
        for stream in list(self._streams):
            self.end(stream, "shutdown")

    # Sweeping ---------------------------------------------------------------------

    def wake(self) -> None:
        """Something changed (ticks arrived, the feed went up or down): sweep soon."""
        self._wake.set()

    def run(self) -> None:
        """The sweeper greenlet: sweep when woken, pausing in proportion to the work."""
        while not self.closing:
            self._wake.wait(timeout=1.0)
            self._wake.clear()
            started = self.clock()
            self.sweep(started)
            took = self.clock() - started
            gevent.sleep(max(self.min_pause, took / 2))

    def sweep(self, now: float) -> None:
        """Write every armed stream what it is owed, in one pass, without blocking."""
        log = self.log
        if log.epoch is None:
            return
        head, generation = log.head, log.generation
        batch = None
        if log.covers(self._generation, self._cursor) and self._cursor <= head:
            batch = log.batch(self._cursor)
        feed_up = log.feed_up
        status = status_frame(feed_up)
        heartbeat_due = now - self.heartbeat_s
        heartbeat = sse.encode(comment="heartbeat", id=log.event_id(head))
        snapshots: dict[tuple[frozenset[str] | None, str], bytes] = {}
        events = snapshot_count = sent = 0

        for key, members in list(self._groups.items()):
            shared: tuple[bytes, int] | None = None
            shared_chunk = b""
            for stream in list(members):
                if not stream.armed or stream.closed:
                    continue
                if stream.pending is not None and not self._drain(stream, now):
                    continue
                if (
                    batch is not None and stream.generation == self._generation
                    and stream.cursor == self._cursor and stream.feed_up == feed_up
                ):
                    if shared is None:
                        shared = batch.select(key)
                        shared_chunk = _chunk(shared[0]) if shared[0] else b""
                    body, count = shared
                    if body:
                        sent += self._send(stream, shared_chunk if stream.chunked else body, now)
                        events += count
                    elif stream.last_write <= heartbeat_due:
                        sent += self._send_body(stream, heartbeat, now)
                    stream.cursor = head
                    stream.generation = generation
                    continue
                reason, count = _out_of_step(log, stream, generation), 0
                if reason is None:
                    body, count = log.replay(stream.cursor, key)
                    if len(body) > self.catch_up_bytes:
                        reason = "lagging"  # a snapshot is shorter than what it missed
                if reason is not None:
                    if count:  # says how many it skipped: its own snapshot
                        body = log.snapshot(key, reason, count)
                    else:
                        if (key, reason) not in snapshots:
                            snapshots[key, reason] = log.snapshot(key, reason)
                        body = snapshots[key, reason]
                    count = 0
                    snapshot_count += 1
                    stream.cursor = head
                else:
                    events += count
                    stream.cursor = max(stream.cursor, head)
                stream.generation = generation
                payload = body
                if stream.feed_up != feed_up:
                    # In the order things happened: ticks owed to a stream that was behind
                    # came before the feed went down; a snapshot comes after it is back up.
                    payload = status + body if feed_up else body + status
                    stream.feed_up = feed_up
                if not payload and stream.last_write <= heartbeat_due:
                    payload = sse.encode(comment="heartbeat", id=log.event_id(stream.cursor))
                if payload:
                    sent += self._send_body(stream, payload, now)

        self._generation, self._cursor = generation, head
        if events:
            metrics.EVENTS_SENT.inc(events)
        if snapshot_count:
            metrics.SNAPSHOTS_SENT.inc(snapshot_count)
        if sent:
            metrics.BYTES_SENT.inc(sent)

    def _send_body(self, stream: Stream, body: bytes, now: float) -> int:
        return self._send(stream, _chunk(body) if stream.chunked else body, now)

    def _send(self, stream: Stream, data: bytes, now: float) -> int:
        """Write what the socket takes now and keep the rest for the next sweep."""
        written = self._write(stream, memoryview(data))
        if written < 0:
            return 0
        stream.last_write = now
        if written < len(data):
            stream.pending = memoryview(data)[written:]
            stream.stalled_since = now
        return written

    def _drain(self, stream: Stream, now: float) -> bool:
        """Push out a stream's unsent remainder; True once it is all out."""
        pending = stream.pending
        written = self._write(stream, pending)
        if written < 0:
            return False
        if written == len(pending):
            stream.pending = None
            return True
        if written:
            stream.pending = pending[written:]
            stream.stalled_since = now
        elif now - stream.stalled_since >= self.stall_s:
            logger.info("dropping a stream that read nothing for %.0f s", self.stall_s)
            self.end(stream, "stalled")
        return False

    def _write(self, stream: Stream, data: memoryview) -> int:
        """Non-blocking sends, a TLS record's worth at a time, until the socket is full.

        Bytes written, or -1 when the client is gone (the stream is then ended). TLS
        takes a buffer whole or not at all and must be offered the same one again, so
        every send is a slice of the same size from the same place: a slow reader then
        shows its progress, and a retry is always the same call.
        """
        written = 0
        try:
            while written < len(data):
                sent = stream.sock.send(data[written:written + _SLICE])
                if not sent:
                    break
                written += sent
        except BlockingIOError:
            pass
        except OSError:
            self.end(stream, "gone")
            return -1
        return written


def _out_of_step(log: EventLog, stream: Stream, generation: int) -> str | None:
    """Why a stream must get a snapshot rather than catch up from the log (None: it can)."""
    if log.covers(stream.generation, stream.cursor):
        return None
    if stream.generation < 0:
        return "new"  # opened before the feed was ever up
    if stream.generation != generation:
        return "restart"  # the feed started over: a new market, or a gap it could not fill
    return "lagging"  # fell off the end of the log


def _writable(sock: socket.socket) -> bool:
    try:
        return bool(select([], [sock], [], 0)[1])
    except (OSError, ValueError):
        return False


def _cut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
