"""Fan-out: one greenlet sweeps the streams that have something to receive.

Strategy: writes are the cost (one ``send`` is ~10 us of kernel time, whatever its
size), so a stream never gets a write per tick. The feed reader only appends to the
``EventLog`` and wakes the fan-out, which hands each new tick's frame to the
subscriptions that want it (``ticker/subscriptions.py``); the sweeper then serves the
groups that have frames waiting, in the order they got them, writing each of a group's
streams what it has not had yet in a single non-blocking ``send`` (streams with the same
frames owed share one joined body). A pass costs in proportion to the streams that have
something to receive, plus the few that need care of their own (catching up, draining,
owed a heartbeat), never to every open stream. The sweeper gives way to the feed reader
every couple of milliseconds, within a group too, so a stream reached late in a pass
carries what arrived up to that moment, even the last of ten thousand streams of every
symbol. Under light load a tick is written within a couple of milliseconds; under heavy
load passes run back to back, each carrying more, so writes per stream stay bounded
while events per write grow, and a tick waits at most about one pass.

A stream that leaves a write half done leaves its group, drains and catches up from the
log on its own. If its reader took all its socket held by the sweeper's next look, the
write was only larger than a socket takes at once (a busy watchlist in a long pass): its
kernel buffer is widened, up to 64 KiB, so that one write a pass carries what a pass owes.
A reader slower than the market (a slow link, or a client that reads slowly), one whose
socket still holds what it was given at the sweeper's next look, is *paced*: its
kernel buffer shrinks to a few KiB, and it is written only when it has taken what it was
sent (its send queue is nearly empty), then with the latest state (a ``lagging`` snapshot
that counts the ticks it skipped) rather than the backlog whenever that state is the
smaller, so what it shows stays seconds old, whatever its bandwidth, and it holds no more
than one write. It joins its group again once it keeps up.

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
import math
import socket
import time
from collections import Counter

import gevent
from gevent.event import Event
from gevent.socket import wait

from ticker import metrics, sse, turns, writes
from ticker.admission import Start, status_frame
from ticker.eventlog import EventLog
from ticker.subscriptions import Group, Quiet, Subscriptions

__all__ = ["Fanout", "Refused", "Stream"]

logger = logging.getLogger(__name__)

_SEND_BUFFER = 16 * 1024  # what waits in it is stale: kept small
_WIDEST_BUFFER = 64 * 1024  # the most a reader that takes all it is given is widened to
_PACED_BUFFER = 4 * 1024  # a paced stream's kernel buffer: little stale data in flight
_PACE_BYTES = 16 * 1024  # what a paced stream may be owed and still get exactly, not conflated
_FREED_AFTER_S = 5.0  # a paced stream that took every tick exactly this long keeps up again
_TEND_S = 0.02  # how often streams of their own are looked at when nothing else is due
_GIVE_WAY_S = 0.002  # the longest the sweeper runs before the feed reader gets a turn


class Refused(Exception):
    """No stream can be opened now; the text says why (the caller answers 503)."""


class _Ended(Exception):
    """Thrown into a stream's body to say the server ended it cleanly."""


class Stream:
    """One open SSE response: its socket, subscription and cursor into the log."""

    __slots__ = (
        "sock", "client", "key", "rate", "chunked", "generation", "cursor", "feed_up",
        "pending", "stalled_since", "ended", "clean", "closed", "watcher", "group",
        "paced", "unsent", "behind_at",
    )

    def __init__(self, sock: socket.socket, client: str, key: frozenset[str] | None,
                 rate: float | None = None) -> None:
        self.sock = sock  # what the sweeper writes to: ``writes.nonblocking`` once armed
        self.client = client
        self.key = key
        self.rate = rate  # at most this many price events a second per symbol (None: all)
        self.chunked = False
        self.generation = -1
        self.cursor = 0
        self.feed_up = False
        self.pending: memoryview | None = None
        self.stalled_since = 0.0
        self.ended = False  # the server ended it; its body returns
        self.clean = False  # ...with its framing whole: gunicorn writes the end
        self.closed = False  # its place is given back
        self.watcher = None  # what its body waits on, while it waits
        self.group: Group | None = None  # its subscription, once the sweeper has it
        self.paced = False  # a slow reader, written only once it has read what it got
        self.unsent = 0  # bytes its send queue held when last looked at (paced)
        self.behind_at = 0.0  # when it last fell behind: a write not taken, or conflated

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
        self.subscriptions = Subscriptions()
        self._attention: dict[Stream, None] = {}  # armed streams not in step with their group
        self._quiet = Quiet()
        self._generation = -1  # of the log, as the groups know it
        self._indexed = 0  # the seq up to which new ticks went to the groups
        self._feed_up = False
        self._wake = Event()
        self._give_way = None  # the sweeper's: lets the feed reader run (None in tests)
        self._slice_end = 0.0  # when the feed reader has its next turn

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

    def open(self, sock: socket.socket, client: str, key: frozenset[str] | None,
             rate: float | None = None) -> Stream:
        """Take a place for a stream; its body must ``close`` it, whatever happens.

        Raises:
            Refused: as ``check``.
        """
        self.check(client)
        stream = Stream(sock, client, key, rate)
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
        stream.sock = writes.nonblocking(stream.sock)
        # A small kernel buffer makes a reader that stopped visible within seconds
        # (the socket fills), instead of hiding it behind megabytes of autotuning.
        with contextlib.suppress(OSError):
            stream.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _SEND_BUFFER)
        # Each sweep's write is complete in itself: Nagle's algorithm would hold it back
        # until the client acknowledges the previous one (up to 40 ms of delayed ACK).
        if stream.sock.family in (socket.AF_INET, socket.AF_INET6):
            stream.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        stream.group = self.subscriptions.join((stream.key, stream.rate), self._generation)
        stream.key = stream.group.symbols  # the same set, shared by every stream of the group
        self._attention[stream] = None  # it catches up to its group on its own first
        self._quiet.touch(stream, self.clock())
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
        if stream.pending is None and writes.writable(stream.sock):
            stream.clean = True
            # gunicorn writes the closing chunk, and perhaps reads a next request, with
            # the blocking socket it handed over.
            writes.hand_back(stream.sock)
            gevent.get_hub().cancel_wait(stream.watcher, _Ended)
        else:
            writes.cut(stream.sock)

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
            writes.cut(stream.sock)

    def _unregister(self, stream: Stream) -> None:
        """The sweeper forgets a stream: it is written no more."""
        group = stream.group
        if group is None:
            return
        stream.group = None
        group.in_step.pop(stream, None)
        self.subscriptions.leave(group)
        self._attention.pop(stream, None)
        self._quiet.forget(stream)

    def close_all(self) -> None:
        """Refuse new streams and end every open one (worker shutdown)."""
        self.closing = True
        for stream in list(self._streams):
            self.end(stream, "shutdown")

    # Sweeping ---------------------------------------------------------------------

    def wake(self) -> None:
        """New ticks are in the log, or the feed went up or down: index them, sweep soon."""
        self._index()
        self._wake.set()

    def _index(self) -> None:
        """Hand the ticks the log got since the last call to the groups that want them."""
        log = self.log
        if log.epoch is None:
            return
        if not log.covers(self._generation, self._indexed) or self._indexed > log.head:
            self._resync()
        elif log.head > self._indexed:
            self.subscriptions.add(log.since(self._indexed), self.clock())
            self._indexed = log.head

    def _resync(self) -> None:
        """Every stream catches up on its own: the feed started over, went up or down, or
        the groups lost track of the log."""
        for group in self.subscriptions.groups.values():
            for stream, mark in group.in_step.items():
                stream.cursor = group.position(mark, self._indexed, self.log.seq_of)
                stream.generation = group.generation
                self._attention[stream] = None
            group.in_step.clear()
        log = self.log
        self._generation, self._indexed = log.generation, log.head
        self.subscriptions.reset(log.generation)

    def run(self) -> None:
        """The sweeper greenlet: a pass when woken, giving way to the feed reader often."""
        while not self.closing:
            if not self.subscriptions.pending:
                # Streams of their own (draining, paced) are looked at every _TEND_S.
                times = [t for t in (self._quiet.next_due(self.heartbeat_s),
                                     self.subscriptions.next_timer()) if t is not None]
                wait = min([_TEND_S if self._attention else 1.0,
                            *(t - self.clock() for t in times)])
                self._wake.wait(timeout=max(0.0, wait))
            self._wake.clear()
            started = self.clock()
            self.sweep(started, give_way=turns.poll_once)
            metrics.PASS_SECONDS.observe(self.clock() - started)
            gevent.sleep(self.min_pause)

    def sweep(self, now: float, give_way=None) -> None:
        """One pass: the streams that need care of their own, then the groups with frames
        waiting, then the heartbeats due; without blocking. ``give_way`` (the sweeper's)
        lets the feed reader run every ``_GIVE_WAY_S``; a test calls this without it."""
        log = self.log
        if log.epoch is None:
            return
        self._index()
        if log.feed_up != self._feed_up:
            self._feed_up = log.feed_up
            self._resync()  # each stream gets its status in the order things happened
        tally = _Tally()
        for stream in list(self._attention):
            self._tend(stream, now, tally)
        self.subscriptions.begin_pass(now)
        # The feed reader runs every _GIVE_WAY_S of writes (``_serve``), even in the middle
        # of a group, so what came meanwhile goes to the streams not yet reached.
        self._give_way = give_way
        self._slice_end = math.inf if give_way is None else self.clock() + _GIVE_WAY_S
        for group in self.subscriptions.due():
            self._serve(group, now, tally)
        self._give_way = None
        for stream in self._quiet.due(now - self.heartbeat_s):
            if stream.pending is not None:
                continue  # its remainder speaks for it; the stall check ends it if need be
            group = stream.group
            mark = group.in_step.get(stream)
            cursor = (stream.cursor if mark is None
                      else group.position(mark, self._indexed, self.log.seq_of))
            tally.sent += self._send_body(
                stream, sse.encode(comment="heartbeat", id=log.event_id(cursor)), now)
            tally.writes += 1
        tally.count()

    def _serve(self, group: Group, now: float, tally: _Tally) -> None:
        """Write each stream in step with a group the frames from its mark to the end, as
        they are when the sweeper gets to it; streams with the same mark share one body."""
        if group.period:
            group.release(now)
            self.subscriptions.after_release(group)
        in_step, frames, base = group.in_step, group.frames, group.base
        low = end = base + len(frames)
        made = -1  # the mark the body was joined for: streams come in runs of one mark
        sent = written = events = 0
        give_way, clock, slice_end = self._give_way, self.clock, self._slice_end
        # The streams alone are copied: a (stream, mark) pair each would be thousands of
        # objects alive for a whole pass, and the collector's full sweeps follow those.
        for stream in list(in_step):
            start = in_step.get(stream, end)
            if start >= end:
                continue  # has every frame (it came after a tick), or ended meanwhile
            if start != made:
                body = b"".join(frames[start - base:end - base])
                chunk, count, made = writes.chunk(body), end - start, start
            sent += self._send(stream, chunk if stream.chunked else body, now)
            written += 1
            events += count
            if stream.pending is None:
                if stream.group is group:  # (not if the client left)
                    in_step[stream] = end
            elif not stream.ended:
                # It did not take the whole write: it drains and catches up on its own,
                # and is paced if the rest is still not taken at the next look.
                del in_step[stream]
                stream.cursor = group.position(end, self._indexed, self.log.seq_of)
                stream.generation = group.generation
                self._attention[stream] = None
            if clock() >= slice_end:
                give_way()  # the feed reader's turn (see sweep)
                slice_end = clock() + _GIVE_WAY_S
                if base + len(frames) > end:
                    end, made = base + len(frames), -1  # ticks came: the rest get them too
        self._slice_end = slice_end
        tally.sent += sent
        tally.writes += written
        tally.events += events
        if base + len(frames) == low:
            frames.clear()  # every stream has every frame: the usual end
            group.base = low
        else:
            group.trim(low)
            if group.frames:
                self.subscriptions.again(group)  # its first streams are owed what came since

    def _tend(self, stream: Stream, now: float, tally: _Tally) -> None:
        """Bring one stream up to its group: drain, catch up or snapshot, then join it."""
        if stream.pending is not None:
            # Whether the reader took what its socket held: then the write was only larger
            # than the socket takes at once, and one write a pass must carry what it owes.
            read_all = not stream.paced and writes.unsent(stream.sock) <= _PACED_BUFFER
            if read_all:
                self._widen(stream)
            if not self._drain(stream, now):
                if not read_all:
                    stream.behind_at = now
                    self._pace(stream, True)  # a reader slower than the market
                return
        if stream.paced and not self._taken(stream, now):
            return
        log, group = self.log, stream.group
        if not group.in_step:
            group.reset(self._generation)  # no one shares it: nothing owed
            if group.period:
                group.sent_all(now)  # what this stream gets now is each symbol's latest
        # Where a stream marked at the group's end is: what this one catches up to.
        until = group.position(group.end, self._indexed, self.log.seq_of)
        reason, count = _out_of_step(log, stream, self._generation), 0
        snapshot = None
        if reason is None:
            if stream.cursor > until:
                return  # ahead of frames its group still holds: wait for their turn
            if stream.rate:
                # A symbol its group holds comes from the group, newer, within a period:
                # an older one now would be two prices in a moment.
                body, count, _ = log.latest(stream.cursor, stream.key, until=until,
                                            skip=group.held)
            else:
                body, count = log.replay(stream.cursor, stream.key, until=until)
            if len(body) > (_PACE_BYTES if stream.paced else self.catch_up_bytes):
                snapshot = log.snapshot(stream.key, "lagging", count)
                if len(snapshot) < len(body):
                    # The latest state is worth more than what it missed, and costs less
                    # (the state of thousands of symbols can outweigh a few ticks).
                    reason = "lagging"
        if reason is None:
            stream.cursor = until
            tally.events += count
        else:
            stream.behind_at = now
            body = snapshot or log.snapshot(stream.key, reason, count)
            tally.snapshots += 1
            stream.cursor = log.head  # joins its group once the group has caught up
        stream.generation = self._generation
        if stream.feed_up != self._feed_up:
            # In the order things happened: ticks owed to a stream that was behind came
            # before the feed went down; a snapshot comes after it is back up.
            status = status_frame(self._feed_up)
            body = status + body if self._feed_up else body + status
            stream.feed_up = self._feed_up
        if body:
            tally.sent += self._send_body(stream, body, now)
            tally.writes += 1
        if stream.pending is None and not stream.ended and stream.cursor == until:
            if stream.paced and now - stream.behind_at < _FREED_AFTER_S:
                return  # not yet shown to keep up: paced again next pass
            self._pace(stream, False)
            del self._attention[stream]
            group.in_step[stream] = group.end

    def _pace(self, stream: Stream, paced: bool) -> None:
        """Pace a slow reader (a small kernel buffer), or let one that keeps up go free."""
        if paced == stream.paced:
            return
        stream.paced = paced
        with contextlib.suppress(OSError):
            stream.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF,
                                   _PACED_BUFFER if paced else _SEND_BUFFER)

    @staticmethod
    def _widen(stream: Stream) -> None:
        """Double the kernel buffer of a stream whose reader took all it was given, up to
        ``_WIDEST_BUFFER``: what waits there is not stale while the reader keeps up."""
        with contextlib.suppress(OSError):
            held = stream.sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
            if held < 2 * _WIDEST_BUFFER:  # Linux reports twice what was set
                stream.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, held)

    def _taken(self, stream: Stream, now: float) -> bool:
        """Whether a paced stream has taken what it was sent (its queue nearly empty).
        One whose queue does not shrink for ``stall_s`` is dropped."""
        unsent = writes.unsent(stream.sock)
        if unsent < stream.unsent:
            stream.stalled_since = now
        stream.unsent = unsent
        if unsent <= _PACED_BUFFER:
            return True
        if now - stream.stalled_since >= self.stall_s:
            logger.info("dropping a stream that read nothing for %.0f s", self.stall_s)
            self.end(stream, "stalled")
        return False

    def _send_body(self, stream: Stream, body: bytes, now: float) -> int:
        return self._send(stream, writes.chunk(body) if stream.chunked else body, now)

    def _send(self, stream: Stream, data: bytes, now: float) -> int:
        """Write what the socket takes now and keep the rest for the next sweep."""
        written = writes.send(stream.sock, data)
        if written < 0:
            self.end(stream, "gone")
            return 0
        self._quiet.touch(stream, now)
        if written < len(data):
            stream.pending = memoryview(data)[written:]
            stream.stalled_since = now
        return written

    def _drain(self, stream: Stream, now: float) -> bool:
        """Push out a stream's unsent remainder; True once it is all out."""
        pending = stream.pending
        written = writes.send(stream.sock, pending)
        if written < 0:
            self.end(stream, "gone")
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


class _Tally:
    """What one pass wrote, for the metrics (updated once a pass, never per event)."""

    __slots__ = ("events", "snapshots", "sent", "writes")

    def __init__(self) -> None:
        self.events = self.snapshots = self.sent = self.writes = 0

    def count(self) -> None:
        if self.events:
            metrics.EVENTS_SENT.inc(self.events)
        if self.snapshots:
            metrics.SNAPSHOTS_SENT.inc(self.snapshots)
        if self.sent:
            metrics.BYTES_SENT.inc(self.sent)
        if self.writes:
            metrics.WRITES.inc(self.writes)


def _out_of_step(log: EventLog, stream: Stream, generation: int) -> str | None:
    """Why a stream must get a snapshot rather than catch up from the log (None: it can)."""
    if log.covers(stream.generation, stream.cursor):
        return None
    if stream.generation < 0:
        return "new"  # opened before the feed was ever up
    if stream.generation != generation:
        return "restart"  # the feed started over: a new market, or a gap it could not fill
    return "lagging"  # fell off the end of the log
