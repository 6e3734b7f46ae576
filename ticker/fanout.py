"""Fan-out: one greenlet sweeps every open stream and writes what each is owed.

Strategy: writes are the cost (one ``send`` is ~10 us of kernel time, whatever its
size), so a stream never gets a write per tick. The feed reader only appends to the
``EventLog`` and wakes the sweeper; the sweeper then visits every stream once and
writes everything that piled up since its last visit in a single non-blocking
``send`` to the socket. Streams with the same subscription share one join of the new
frames, and one chunk header, per sweep. Under light load a sweep follows each tick
within a couple of milliseconds; under heavy load sweeps run back to back, each one
carrying more, so writes per stream stay bounded while events per write grow.

After the response headers and the first frames have gone out through gunicorn (in
the request's own greenlet), the stream's socket is written here directly, framed as
HTTP/1.1 chunks when the response is chunked. The request greenlet just waits for its
socket to turn readable: a stream's client sends nothing more, so that happens only when
it leaves, and the stream is closed and everything it held freed at once (a failed
write says the same, whichever comes first). A stream that cannot take a write keeps the
unsent remainder, and nothing more, until it drains: it never holds a queue. When it
drains it catches up from the log, or gets a snapshot if it has fallen behind the log
(conflation). One that accepts nothing for ``stall_s`` is dropped.

Ending a stream (client gone, stuck, or the worker shutting down) always ends the same
way: the closing chunk if the framing is clean, then ``shutdown`` of the socket, so the
browser sees the end at once and reconnects, possibly to another worker, and the
request greenlet wakes and returns.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterable

import gevent
from gevent.event import Event

from ticker import metrics, sse
from ticker.eventlog import EventLog

__all__ = ["Fanout", "History", "Refused", "Stream"]

logger = logging.getLogger(__name__)

# Ticks after one seq up to another, from the feed source: (after, until) -> quotes or None.
History = Callable[[int, int], "list[dict] | None"]

_LAST_CHUNK = b"0\r\n\r\n"
_SEND_BUFFER = 64 * 1024
_SLICE = 16 * 1024


class Refused(Exception):
    """No stream can be opened now; the text says why (the caller answers 503)."""


def _chunk(body: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(body), body)


class Stream:
    """One open SSE response: its socket, subscription and cursor into the log."""

    __slots__ = (
        "sock", "client", "key", "chunked", "generation", "cursor", "feed_up",
        "pending", "stalled_since", "last_write", "armed", "closed",
    )

    def __init__(self, sock: socket.socket, client: str, key: frozenset[str] | None,
                 chunked: bool) -> None:
        self.sock = sock
        self.client = client
        self.key = key
        self.chunked = chunked
        self.generation = -1
        self.cursor = 0
        self.feed_up = False
        self.pending: memoryview | None = None
        self.stalled_since = 0.0
        self.last_write = 0.0
        self.armed = False
        self.closed = False


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
        self._groups: dict[frozenset[str] | None, dict[Stream, None]] = {}
        self._generation = -1
        self._cursor = 0
        self._wake = Event()

    # Opening and closing ----------------------------------------------------------

    def open(
        self, sock: socket.socket, client: str, symbols: Iterable[str] | None,
        last_event_id: str | None, *, chunked: bool, history: History | None = None,
    ) -> tuple[Stream, bytes]:
        """Register a stream and return it with the first bytes its response carries.

        Those bytes (retry, then the exact replay after ``last_event_id`` or else a
        snapshot, then the feed status) go out through the WSGI server; the sweeper takes
        over once the caller ``arm``s the stream. ``history`` reaches further back than
        the log, when the feed source keeps more.

        Raises:
            Refused: the worker, or this client address, holds as many streams as it may.
        """
        if self.count >= self.max_streams:
            metrics.STREAMS_REFUSED.inc()
            raise Refused("server holds as many streams as it is configured to")
        if self._per_client[client] >= self.max_streams_per_client:
            metrics.STREAMS_REFUSED.inc()
            raise Refused("this client address holds as many streams as it may")
        log = self.log
        stream = Stream(sock, client, None if symbols is None else frozenset(symbols), chunked)
        parts = [self.retry_frame]
        resumed = self._resume(last_event_id, stream.key, history)
        if resumed is not None:
            body, count, cursor = resumed
            parts.append(body)
            metrics.RESUMES.inc()
            metrics.EVENTS_SENT.inc(count)
            stream.generation, stream.cursor = log.generation, cursor
        elif log.epoch is not None:
            parts.append(log.snapshot(stream.key))
            metrics.SNAPSHOTS_SENT.inc()
            stream.generation, stream.cursor = log.generation, log.head
        stream.feed_up = log.feed_up
        parts.append(status_frame(log.feed_up))
        stream.last_write = self.clock()
        self._groups.setdefault(stream.key, {})[stream] = None
        self.count += 1
        self._per_client[client] += 1
        metrics.STREAMS_OPEN.inc()
        return stream, b"".join(parts)

    def _resume(
        self, last_event_id: str | None, key: frozenset[str] | None, history: History | None,
    ) -> tuple[bytes, int, int] | None:
        """The exact replay after ``last_event_id``: frames, how many, and the new cursor."""
        log = self.log
        cursor = log.parse_id(last_event_id)
        if cursor is None:
            return None
        if log.covers(log.generation, cursor):
            body, count = log.replay(cursor, key)
            return body, count, max(cursor, log.head)
        if history is None:
            return None
        generation, head = log.generation, log.head
        older = history(cursor, head)
        if older is None or not log.covers(generation, head):
            return None
        body, count = log.frames(older, key)
        rest, more = log.replay(head, key)
        return body + rest, count + more, log.head

    def arm(self, stream: Stream) -> None:
        """The first bytes are out: from now on the sweeper writes this stream."""
        if not stream.closed:
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
            self._wake.set()

    def close(self, stream: Stream, reason: str = "ended") -> None:
        """End a stream now and free everything it held; safe to call more than once."""
        if stream.closed:
            return
        stream.closed = True
        members = self._groups.get(stream.key)
        if members is not None:
            members.pop(stream, None)
            if not members:
                del self._groups[stream.key]
        self.count -= 1
        self._per_client[stream.client] -= 1
        if not self._per_client[stream.client]:
            del self._per_client[stream.client]
        metrics.STREAMS_OPEN.dec()
        if reason != "ended":
            metrics.STREAMS_DROPPED.labels(reason).inc()
        if stream.armed and stream.chunked and stream.pending is None:
            with contextlib.suppress(OSError):
                stream.sock.send(_LAST_CHUNK)
        stream.pending = None
        with contextlib.suppress(OSError):
            stream.sock.shutdown(socket.SHUT_RDWR)

    def close_all(self) -> None:
        """Refuse new streams and end every open one (worker shutdown)."""
        self.closing = True
        for members in list(self._groups.values()):
            for stream in list(members):
                self.close(stream, "shutdown")

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
        snapshots: dict[frozenset[str] | None, bytes] = {}
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
                if log.covers(stream.generation, stream.cursor):
                    body, count = log.replay(stream.cursor, key)
                    if len(body) > self.catch_up_bytes:
                        body, count = b"", -1
                else:
                    count = -1
                if count < 0:
                    if key not in snapshots:
                        snapshots[key] = log.snapshot(key)
                    body = snapshots[key]
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
            self.close(stream, "stalled")
        return False

    def _write(self, stream: Stream, data: memoryview) -> int:
        """Non-blocking sends, a TLS record's worth at a time, until the socket is full.

        Bytes written, or -1 when the client is gone (the stream is then closed). TLS
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
            self.close(stream, "gone")
            return -1
        return written


def status_frame(feed_up: bool) -> bytes:
    return sse.encode('{"feed":"up"}' if feed_up else '{"feed":"down"}', event="status")
