"""A load generator for SSE streams: 10,000 streams and a million events a second, one core.

Strategy: one process, one thread, raw non-blocking sockets on a level-triggered epoll,
no HTTP library. Each stream sends a minimal ``GET /stream?symbols=... HTTP/1.1`` and
reads with one ``recv`` per readiness; ``bench.framing`` undoes the chunk framing and
counts frames with ``bytes`` methods, and ``bench.tally`` keeps the few counters the
figures need and checks everything against a reference stream (every symbol, every
tick) once the run is over. Connections are opened in batches, each waiting for the
last one's snapshots, so the server's accept backlog (and ``somaxconn``) never
overflows into SYN retries.

A run: connect the reference and then the streams, warm up, measure a window (events
received per second of wall time, latency, this process's own CPU), then stop the
market (``stop_market``) and read until every stream has been told the feed is down,
so each one's last price per symbol can be compared with the market's final prices.

    python -m bench.loadgen http://127.0.0.1:8000 --streams 2000 --symbols 5 --window 10
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import random
import resource
import select
import signal
import socket
import sys
import time
from collections.abc import Callable
from urllib.parse import urlsplit

from bench.framing import ProtocolError, ResponseReader
from bench.procs import runqueue_seconds
from bench.tally import Stream, Tally
from simulator.wire import Decoder, WireError

__all__ = ["LoadGen", "raise_nofile"]

_READ_SIZE = 256 * 1024
_SAMPLED = 500  # streams whose every event's latency is counted, about
# Seconds without data after which a stopped market has said everything: an idle
# server may sweep only once a second, and a stream behind gets its rest then.
_QUIET = 2.0
_IN, _OUT = select.EPOLLIN, select.EPOLLOUT
# The reference takes every tick (4 MB/s at 20,000 ticks/s): a large receive buffer keeps a
# busy moment of this process from making it look like a slow reader, which a server may
# conflate (a snapshot instead of the ticks), and then there is no record to check against.
_REFERENCE_BUFFER = 4 * 1024 * 1024


def raise_nofile(needed: int) -> int:
    """Raise this process's open-file limit to the hard limit; refuse if below ``needed``."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < needed:
        raise SystemExit(f"{needed} sockets need {needed} descriptors; ulimit -Hn is {hard}")
    return hard


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class _Conn:
    __slots__ = ("sock", "fd", "stream", "reader", "request", "opened", "error")

    def __init__(self, stream: Stream, request: bytes) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setblocking(False)
        self.fd = self.sock.fileno()
        self.stream = stream
        self.reader = ResponseReader()
        self.request = request
        self.opened = False  # its first snapshot has arrived
        self.error = ""


class LoadGen:
    """Holds ``streams`` SSE streams on ``host:port`` plus a reference stream, and measures."""

    def __init__(
        self, host: str, port: int, *, streams: int, symbols: int | None, seed: int = 1,
        batch: int = 500, log: Callable[[str], None] = print, tape: str | None = None,
    ) -> None:
        self.address = (host, port)
        self.tape_path = tape  # the market's Unix socket: the record to check against
        self._tape: socket.socket | None = None
        self._tape_decoder = Decoder(ticks=True)
        self.tape_ended = False
        self.host = host.encode()
        self.streams = streams
        self.symbols = symbols  # per stream; None: every symbol
        self.random = random.Random(seed)
        self.batch = batch
        self.log = log
        self.tally = Tally()
        self.epoll = select.epoll()
        self.conns: dict[int, _Conn] = {}  # open now
        self.everyone: list[_Conn] = []
        # recv(n) would allocate n bytes per call, and past glibc's mmap threshold that
        # is an mmap and page faults each time: three times the cost of the read itself.
        self._view = memoryview(bytearray(_READ_SIZE))
        self.last_data = 0.0  # monotonic time of the last read that brought data
        self.waited = 0.0  # seconds spent waiting for readiness: this tool's slack
        self.failed: list[str] = []
        self.dropped: list[str] = []
        self._groups: dict[frozenset[bytes] | None, Stream] = {}  # the first of each group

    # Connecting ----------------------------------------------------------------------

    def _open(self, symbols: frozenset[bytes] | None, universe: int,
              receive_buffer: int | None = None) -> _Conn:
        first = self._groups.get(symbols)
        group = len(self._groups) if first is None else first.group
        sampled = len(self.everyone) % max(1, self.streams // _SAMPLED) == 0
        path = b"/stream" if symbols is None else b"/stream?symbols=" + b",".join(sorted(symbols))
        request = b"GET %s HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\n\r\n" % (
            path, self.host)
        conn = _Conn(Stream(group, symbols, universe, sampled), request)
        if receive_buffer:
            # Before connecting, so the window it advertises from the start is this large.
            conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        if first is None:
            self._groups[symbols] = conn.stream
        else:
            first.shared = conn.stream.shared = True
        if self.address[0].startswith("127."):
            # Many client addresses, as in life (a server may cap streams per address):
            # 250 of them, so 10,000 streams are 40 per address.
            conn.sock.bind((f"127.0.0.{len(self.everyone) % 250 + 2}", 0))
        code = conn.sock.connect_ex(self.address)
        if code not in (0, errno.EINPROGRESS):
            conn.sock.close()
            raise OSError(code, f"connect to {self.address}: {errno.errorcode.get(code, code)}")
        self.conns[conn.fd] = conn
        self.everyone.append(conn)
        self.epoll.register(conn.fd, _OUT)
        return conn

    def _ramp(self, symbols: list[bytes], deadline_s: float = 60.0) -> None:
        """Open the streams in batches, each batch once the one before has its snapshots."""
        pick = self.symbols
        started = time.monotonic()
        shown = 0
        opened = failed = 0
        while opened + failed < self.streams:
            size = min(self.batch, self.streams - opened - failed)
            batch = [self._open(None if pick is None else
                                frozenset(self.random.sample(symbols, pick)), len(symbols))
                     for _ in range(size)]
            deadline = time.monotonic() + deadline_s
            while any(not c.opened and not c.error for c in batch):
                if time.monotonic() > deadline:
                    for conn in batch:
                        if not conn.opened and not conn.error:
                            self._fail(conn, "no snapshot in time")
                    break
                self._poll(0.05)
            opened += sum(c.opened for c in batch)
            failed += sum(bool(c.error) for c in batch)
            if opened // 1000 > shown or opened + failed == self.streams:
                shown = opened // 1000
                self.log(f"  {opened:>6,} streams open, {failed} refused "
                         f"({time.monotonic() - started:.1f} s)")

    def _fail(self, conn: _Conn, reason: str) -> None:
        conn.error = reason
        (self.dropped if conn.opened else self.failed).append(reason)
        self.epoll.unregister(conn.fd)
        del self.conns[conn.fd]
        conn.sock.close()

    # Reading -------------------------------------------------------------------------

    def _poll(self, timeout: float) -> None:
        conns, feed, now, view = self.conns, self.tally.feed, time.time, self._view
        before = time.perf_counter()
        ready = self.epoll.poll(timeout)
        self.waited += time.perf_counter() - before
        if ready:
            self.last_data = time.monotonic()
        for fd, mask in ready:
            conn = conns.get(fd)
            if conn is None:
                if self._tape is not None and fd == self._tape.fileno():
                    self._read_tape()
                continue
            if mask & _OUT:
                self._send_request(conn)
                continue
            try:
                size = conn.sock.recv_into(view)
            except BlockingIOError:
                continue
            except OSError as exc:
                self._fail(conn, exc.strerror or str(exc))
                continue
            if not size:
                self._fail(conn, "closed by the server")
                continue
            try:
                body = conn.reader.feed(view[:size].tobytes())
            except ProtocolError as exc:
                self._fail(conn, str(exc))
                continue
            if body:
                feed(conn.stream, body, int(now() * 10_000))
                if not conn.opened and conn.stream.start >= 0:
                    conn.opened = True

    def _open_tape(self) -> None:
        """Subscribe to the market itself; its every tick is the record (``Tally.tape``)."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(self.tape_path)
        sock.setblocking(False)
        self._tape = sock
        self.tally.taped = True
        self.epoll.register(sock.fileno(), _IN)
        self._read_until(time.time() + 30, lambda: self.tally.ref_from >= 0)
        if self.tally.ref_from < 0:
            raise RuntimeError("the market sent no snapshot")

    def _read_tape(self) -> None:
        """Everything the market's socket holds now: the record must never fall so far
        behind that the market drops it, however busy the streams keep this tool."""
        tape = self.tally.tape
        while self._tape is not None:
            try:
                data = self._tape.recv(_READ_SIZE)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:  # the market stopped (or dropped this subscriber: ref_lost says so)
                self.epoll.unregister(self._tape.fileno())
                self._tape.close()
                self._tape, self.tape_ended = None, True
                return
            for message in self._tape_decoder.feed(data):
                if not isinstance(message, WireError):
                    tape(message)

    def _send_request(self, conn: _Conn) -> None:
        code = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            self._fail(conn, errno.errorcode.get(code, str(code)))
            return
        conn.sock.send(conn.request)  # a few dozen bytes into an empty buffer: all of it
        self.epoll.modify(conn.fd, _IN)

    def _read_until(self, when: float, done: Callable[[], bool] = lambda: False) -> None:
        while (left := when - time.time()) > 0 and not done():
            self._poll(min(left, 0.1))

    # The run -------------------------------------------------------------------------

    def run(
        self, *, warmup: float, window: float, stop_market: Callable[[], None] | None = None,
        settle: float = 2.0, on_window: Callable[[str], None] | None = None,
    ) -> dict:
        """Connect, measure a window, stop the market, settle; every figure in a dict.

        Args:
            stop_market: stops the market after the window, so gaps and final prices can
                be checked; without it they are reported as ``None``.
            settle: seconds to read after the window, at most (with ``stop_market``, until
                every stream has been told the feed is down).
            on_window: called with ``"start"`` and ``"end"`` of the measured window.
        """
        raise_nofile(self.streams + 64)
        tally = self.tally
        ramp_started = time.monotonic()
        if self.tape_path:
            self._open_tape()
        reference = self._open(None, 1 << 30, receive_buffer=_REFERENCE_BUFFER)
        tally.reference = reference.stream
        self._read_until(time.time() + 30, lambda: reference.opened or bool(reference.error))
        if not reference.opened:
            raise RuntimeError(f"the reference stream did not open: {reference.error or 'timeout'}")
        universe = sorted(reference.stream.fold())
        if self.symbols is not None and self.symbols > len(universe):
            raise ValueError(f"{self.symbols} symbols per stream, but the market lists "
                             f"{len(universe)}")
        self._ramp(universe)
        ramp_s = time.monotonic() - ramp_started

        t0 = time.time() + warmup
        t1 = t0 + window
        tally.window10 = (int(t0 * 10_000), int(t1 * 10_000))
        self._read_until(t0)
        cpu0, waited0, queued0 = _cpu_seconds(), self.waited, runqueue_seconds("self")
        tally.measuring, started = True, time.time()
        if on_window:
            on_window("start")
        self._read_until(t1)
        tally.measuring, ended = False, time.time()
        cpu, waited = _cpu_seconds() - cpu0, self.waited - waited0
        queued = runqueue_seconds("self") - queued0
        if on_window:
            on_window("end")
        streams_at_end = len(self.conns)

        # Late events of the window still count as delivered; the checks of gaps and
        # final prices need a market that has stopped.
        # A stream that is behind may be told the feed is down before its last ticks
        # arrive, so settling also waits for every socket to have gone quiet.
        if stop_market is not None:
            stop_market()
        self._read_until(time.time() + settle,
                         lambda: stop_market is not None
                         and time.monotonic() - self.last_data > _QUIET
                         and self._tape is None
                         and all(c.stream.feed_down for c in self.conns.values()))
        result = {
            "streams": self.streams,
            "symbols_per_stream": self.symbols,
            "universe": len(universe),
            "opened": self.streams - len(self.failed),
            "refused": len(self.failed),
            "refusals": sorted(set(self.failed))[:5],
            "dropped": len(self.dropped),
            "drops": sorted(set(self.dropped))[:5],
            "open_at_window_end": streams_at_end - 1,
            "ramp_s": ramp_s,
            "window_s": ended - started,
            "events": tally.arrivals,
            "events_per_s": tally.arrivals / (ended - started),
            "latency_ms": tally.latency_ms(),
            "latency_sampled_streams": sum(c.stream.sampled for c in self.everyone),
            "loadgen_cpu": cpu / (ended - started),
            "loadgen_waiting": waited / (ended - started),
            "loadgen_starved": queued / (ended - started),
            "record": "market" if self.tally.taped else "reference stream",
            **tally.check([c.stream for c in self.everyone if c.opened and c is not reference],
                          settled=stop_market is not None and reference.stream.feed_down),
        }
        self.close()
        return result

    def close(self) -> None:
        if self._tape is not None:
            self.epoll.unregister(self._tape.fileno())
            self._tape.close()
            self._tape = None
        for conn in list(self.conns.values()):
            self.epoll.unregister(conn.fd)
            conn.sock.close()
        self.conns.clear()
        self.epoll.close()


def report(result: dict) -> str:
    """The figures of one run as a few lines of text."""
    lat = result["latency_ms"]
    ratio = result["delivery_ratio"]
    return "\n".join([
        f"streams   {result['opened']:,} open of {result['streams']:,} ({result['refused']} "
        f"refused, {result['dropped']} dropped), ramp {result['ramp_s']:.1f} s",
        f"events    {result['events_per_s']:,.0f}/s over {result['window_s']:.1f} s; delivered "
        f"{'n/a' if ratio is None else f'{ratio:.4%}'} of {result['expected']:,} owed",
        f"latency   p50 {lat['p50']} ms, p99 {lat['p99']} ms, max {lat['max']} ms",
        f"checks    gaps {result['gaps']}, dups {result['dups']}, snapshots "
        f"{result['snapshots_in_window']} ({result['conflated_streams']} streams), "
        f"converged {result['converged']}",
        f"this tool {result['loadgen_cpu']:.0%} of one core, waiting for data "
        f"{result['loadgen_waiting']:.0%} of the time, for a CPU {result['loadgen_starved']:.0%}",
    ])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="the server, e.g. http://127.0.0.1:8000")
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--symbols", default="all", metavar="all|K",
                        help="symbols per stream: every one, or K chosen at random")
    parser.add_argument("--window", type=float, default=10.0, help="seconds measured")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds after the ramp")
    parser.add_argument("--batch", type=int, default=500, help="connections opened at once")
    parser.add_argument("--seed", type=int, default=1, help="for the choice of symbols")
    parser.add_argument("--market-pid", type=int, metavar="PID",
                        help="SIGTERM this market after the window, to check gaps and final "
                             "prices (without it they are not checked)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    where = urlsplit(args.url)
    generator = LoadGen(
        where.hostname or "127.0.0.1", where.port or 80, streams=args.streams,
        symbols=None if args.symbols == "all" else int(args.symbols), seed=args.seed,
        batch=args.batch, log=lambda line: print(line, file=sys.stderr),
    )
    stop = None if args.market_pid is None else (
        lambda: os.kill(args.market_pid, signal.SIGTERM))
    result = generator.run(warmup=args.warmup, window=args.window, stop_market=stop,
                           settle=2.0 if stop is None else 15.0)
    print(json.dumps(result, indent=1) if args.json else report(result))


if __name__ == "__main__":
    main()
