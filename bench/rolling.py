"""Rolling reloads under load: a thousand streams on two workers through three HUPs.

Every stream behaves like a browser's ``EventSource``: when the server ends it (a reloaded
worker stops) or a reconnect fails, it waits ``retry`` and comes back with
``Last-Event-ID`` (its last seq). The market's own socket is read beside it, so what each
stream was owed is known without trusting the server. Reported: price events lost,
duplicated, snapshots after a stream's first (each a resume that was not exact), the
worst latency (arrival minus the tick's ``ts``) any stream saw during the reloads beyond
the steady-state p99, and ``/proc/loadavg`` beside the figures, since the machine is shared.

Gunicorn (two workers) is pinned to CPU 0; this process and the market share CPU 1.

    python -m bench.rolling                                  # 1,000 streams, 3 HUPs 5 s apart
    python -m bench.rolling --streams 200 --reloads 1 --symbols 5
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from bisect import bisect_right
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from bench import procs
from bench.loadgen import LoadGen, _Conn, raise_nofile
from bench.tally import Stream

__all__ = ["Rolling", "main", "measure"]

RESULTS = Path(__file__).resolve().parent / "results"


def loadavg() -> str:
    """The 1, 5 and 15 minute load averages, as the kernel gives them."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


class MarketTape:
    """Every tick the market publishes, read from its socket by a thread: the truth."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(path)
        self.sock.settimeout(20)
        self.epoch = ""
        self.universe: list[str] = []
        self.start = -1  # the seq of the market when the tape joined
        self.seqs: list[int] = []
        self.by_symbol: dict[str, list[int]] = {}
        self.holes = 0  # ticks the tape itself missed (it never should)
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        if not self._ready.wait(20):
            raise RuntimeError("the market sent no hello")

    def _read(self) -> None:
        buffer = b""
        with contextlib.suppress(OSError), self.sock:
            while data := self.sock.recv(1 << 16):
                *lines, buffer = (buffer + data).split(b"\n")
                for line in lines:
                    self._take(json.loads(line))

    def _take(self, message: dict) -> None:
        if message["type"] == "hello":
            self.epoch, self.start = message["epoch"], message["seq"]
            self.universe = [company["symbol"] for company in message["universe"]]
            self._ready.set()
        elif message["type"] == "tick":
            seq = message["seq"]
            self.holes += seq - (self.seqs[-1] if self.seqs else self.start) - 1
            self.seqs.append(seq)
            self.by_symbol.setdefault(message["symbol"], []).append(seq)

    def wait_closed(self, timeout: float) -> None:
        """Until the market has closed the connection (it was stopped)."""
        self._thread.join(timeout)

    def owed(self, symbols: frozenset[bytes] | None, after: int, upto: int) -> int:
        """Ticks for ``symbols`` (None: all) with ``after < seq <= upto``."""
        if upto <= after:
            return 0
        if symbols is None:
            return bisect_right(self.seqs, upto) - bisect_right(self.seqs, after)
        return sum(bisect_right(seqs, upto) - bisect_right(seqs, after)
                   for seqs in (self.by_symbol.get(s.decode(), ()) for s in symbols))


class Rolling(LoadGen):
    """The load generator, with streams that come back like browsers when they end."""

    def __init__(self, host: str, port: int, *, epoch: str, retry_s: float, **kwargs) -> None:
        super().__init__(host, port, **kwargs)
        self.epoch = epoch.encode()
        self.retry_s = retry_s
        self.reconnecting = True
        self.ended: Counter[str] = Counter()  # why open streams ended
        self.retried: Counter[str] = Counter()  # why attempts to come back failed
        self.resumes = 0  # attempts to come back
        self.last_back = 0.0  # monotonic time a stream last had its first bytes on coming back
        self._coming: set[_Conn] = set()  # come back, first bytes not in yet
        self._due: list[tuple[float, Stream, str]] = []  # (when, stream, local address)

    def _fail(self, conn: _Conn, reason: str) -> None:
        self._coming.discard(conn)
        if not self.reconnecting or conn.stream.start < 0:
            super()._fail(conn, reason)  # never opened at all: refused, not retried
            return
        (self.ended if conn.opened else self.retried)[reason] += 1
        with contextlib.suppress(OSError):
            self.epoll.unregister(conn.fd)
        self.conns.pop(conn.fd, None)
        address = conn.sock.getsockname()[0]
        conn.sock.close()
        self._due.append((time.monotonic() + self.retry_s, conn.stream, address))

    def _poll(self, timeout: float) -> None:
        super()._poll(min(timeout, 0.05))
        now = time.monotonic()
        if self._coming:
            arrived = {conn for conn in self._coming if conn.opened}
            if arrived:
                self.last_back = now
                self._coming -= arrived
        if self._due and self._due[0][0] <= now:
            due = [entry for entry in self._due if entry[0] <= now]
            self._due = [entry for entry in self._due if entry[0] > now]
            for _, stream, address in due:
                self._resume(stream, address)

    def _resume(self, stream: Stream, address: str) -> None:
        """Open ``stream`` again from ``address``, asking for what followed its last seq."""
        path = (b"/stream" if stream.symbols is None
                else b"/stream?symbols=" + b",".join(sorted(stream.symbols)))
        request = (b"GET %s HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\n"
                   b"Last-Event-ID: %s-%d\r\n\r\n" % (path, self.host, self.epoch,
                                                        stream.last_seq))
        conn = _Conn(stream, request)
        self.resumes += 1
        self.conns[conn.fd] = conn
        self._coming.add(conn)
        self.epoll.register(conn.fd, select.EPOLLOUT)
        conn.sock.bind((address, 0))
        code = conn.sock.connect_ex(self.address)
        if code not in (0, errno.EINPROGRESS):
            self._fail(conn, errno.errorcode.get(code, str(code)))

    def back(self) -> bool:
        """Every stream that ever opened is open again and has had its first bytes."""
        return not self._due and all(c.opened for c in self.conns.values())


@contextlib.contextmanager
def gunicorn(tmp: Path, feed: str, *, streams: int, workers: int, retry_ms: int,
             cpu: int | None) -> Iterator[procs.Server]:
    """ticker under gunicorn with ``workers`` workers, pinned to ``cpu``, until the block ends.

    ``procs.server`` runs one worker, which is the per-core figure; a rolling reload needs
    two, so that is the one setting this adds.
    """
    port = procs.free_port()
    log = tmp / "gunicorn.log"
    environment = {k: v for k, v in os.environ.items()
                   if k not in ("PROMETHEUS_MULTIPROC_DIR", "WEB_CONCURRENCY")}
    environment.update(TICKER_FEED=feed, TICKER_MAX_STREAMS=str(streams + 100),
                       TICKER_RETRY_MS=str(retry_ms))
    command = procs.pinned(cpu, [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py",
                                 "--workers", str(workers), "--bind", f"127.0.0.1:{port}",
                                 "--backlog", "4096"])
    with open(log, "ab") as out:
        proc = subprocess.Popen(command, cwd=procs.ROOT, stdout=out, stderr=subprocess.STDOUT,
                                env=environment)
    running = procs.Server(proc, port, log)
    try:
        running.wait_ready()
        yield running
    finally:
        procs.stop(proc, running.workers)


def losses(tape: MarketTape, streams: list[Stream]) -> dict:
    """Price events lost and duplicated, and snapshots after the first, over ``streams``.

    A stream's life is cut into segments at its snapshots; within each it must have
    received exactly the tape's ticks for its symbols, and whatever fell between two
    segments (a resume answered with a snapshot) was lost too. A few short segments are
    kept as examples: ``(after seq, up to seq, owed, received)``.
    """
    final = tape.seqs[-1] if tape.seqs else tape.start
    lost = dups = snapshots = 0
    short: list[tuple[int, int, int, int]] = []
    hit = 0
    for stream in streams:
        segments = [*stream.segments, (stream.start, final, stream.count)]
        before = lost
        for number, (after, upto, got) in enumerate(segments):
            owed = tape.owed(stream.symbols, after, upto)
            lost += max(0, owed - got)
            dups += max(0, got - owed)
            if owed > got and len(short) < 5:
                short.append((after, upto, owed, got))
            if number:
                lost += tape.owed(stream.symbols, segments[number - 1][1], after)
        hit += lost > before
        dups += stream.dups
        snapshots += stream.snapshots
    return {"lost": lost, "duplicated": dups, "snapshots": snapshots,
            "streams_with_losses": hit, "short_segments": short,
            "tape_holes": tape.holes, "final_seq": final}


def tracebacks(text: str, most: int = 3) -> list[str]:
    """The first ``most`` tracebacks in a log, each up to the line that names the error."""
    found = []
    lines = text.splitlines()
    for number, line in enumerate(lines):
        if line.startswith("Traceback") and len(found) < most:
            end = next((i for i in range(number + 1, len(lines))
                        if lines[i] and not lines[i].startswith(" ")), len(lines) - 1)
            found.append("\n".join(lines[max(0, number - 1):end + 1]))
    return found


def log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def measure(*, streams: int, symbols: int | None, workers: int, reloads: int,
            interval: float, steady: float, retry_ms: int, seed: int) -> dict:
    """One run: ramp, a steady window, ``reloads`` HUPs ``interval`` apart, then the checks."""
    with tempfile.TemporaryDirectory(prefix="ticker-rolling-") as name:
        tmp = Path(name)
        with procs.market(tmp, symbols=50, rate=100, seed=seed, cpu=1) as market, \
                gunicorn(tmp, market.feed, streams=streams, workers=workers,
                         retry_ms=retry_ms, cpu=0) as server:
            tape = MarketTape(market.feed.removeprefix("unix:"))
            raise_nofile(streams + 64)
            gen = Rolling("127.0.0.1", server.port, epoch=tape.epoch, retry_s=retry_ms / 1000,
                          streams=streams, symbols=symbols, seed=seed, log=log)
            try:
                result = _run(gen, tape, market, server, reloads=reloads, interval=interval,
                              steady=steady)
            finally:
                gen.close()
            errors = tracebacks(server.log.read_text(errors="replace"))
    result.update(streams=streams, symbols_per_stream=symbols, workers=workers,
                  interval_s=interval, retry_ms=retry_ms, seed=seed, revision=procs.revision(),
                  server_tracebacks=len(errors), tracebacks=errors)
    return result


def _run(gen: Rolling, tape: MarketTape, market: procs.Market, server: procs.Server, *,
         reloads: int, interval: float, steady: float) -> dict:
    tally = gen.tally
    gen._ramp(sorted(symbol.encode() for symbol in tape.universe))
    opened = [c.stream for c in gen.everyone if c.opened]
    gen._read_until(time.time() + 2.0)  # warm up
    tally.measuring = True
    before = loadavg()
    gen._read_until(time.time() + steady)
    calm = tally.latency_ms()
    log(f"  steady: p50 {calm['p50']} ms, p99 {calm['p99']} ms, max {calm['max']} ms")
    tally.latency.clear()
    per_reload = []
    for number in range(1, reloads + 1):
        tally.worst = 0
        ended, retried = sum(gen.ended.values()), sum(gen.retried.values())
        os.kill(server.proc.pid, signal.SIGHUP)
        hup = time.monotonic()
        gen._read_until(time.time() + interval)
        if number == reloads:
            gen._read_until(time.time() + 30, gen.back)
        reload = {
            "worst_ms": tally.worst / 10,
            "streams_ended": sum(gen.ended.values()) - ended,
            "comebacks_failed": sum(gen.retried.values()) - retried,
            "all_back": gen.back(),
            # From the HUP to the last stream that came back having its first bytes.
            "back_after_s": round(gen.last_back - hup, 2) if gen.last_back > hup else None,
            "loadavg": loadavg(),
        }
        per_reload.append(reload)
        log(f"  reload {number}: worst {reload['worst_ms']} ms, {reload['streams_ended']} "
            f"streams ended, back after {reload['back_after_s']} s")
    tally.measuring = False
    worst = max(r["worst_ms"] for r in per_reload) if per_reload else None
    reloading = {**tally.latency_ms(), "max": worst}
    market.stop()
    tape.wait_closed(10)
    gen._read_until(time.time() + 15,
                    lambda: time.monotonic() - gen.last_data > 2.0
                    and all(c.stream.feed_down for c in gen.conns.values()))
    gen.reconnecting = False
    return {
        "opened": len(opened), "refused": len(gen.failed),
        "open_at_end": len(gen.conns), "comebacks": gen.resumes,
        "ended": dict(gen.ended), "comebacks_failed": dict(gen.retried),
        "steady_latency_ms": calm, "reloading_latency_ms": reloading,
        "worst_ms": worst,
        "worst_extra_ms": None if worst is None or calm["p99"] is None
        else round(worst - calm["p99"], 1),
        "reloads": per_reload, "loadavg_before": before, "loadavg_after": loadavg(),
        **losses(tape, opened),
    }


def report(r: dict) -> str:
    """The figures of one run as a few lines of text."""
    calm, during = r["steady_latency_ms"], r["reloading_latency_ms"]
    subscription = "all symbols" if r["symbols_per_stream"] is None else (
        f"{r['symbols_per_stream']} symbols")
    lines = [
        f"streams   {r['opened']:,} open ({subscription}, {r['refused']} refused) on "
        f"{r['workers']} workers; {len(r['reloads'])} HUPs {r['interval_s']:g} s apart; "
        f"clients come back after {r['retry_ms']} ms",
        f"steady    p50 {calm['p50']} ms, p99 {calm['p99']} ms, max {calm['max']} ms "
        f"(loadavg {r['loadavg_before']})",
    ]
    for number, reload in enumerate(r["reloads"], 1):
        lines.append(
            f"reload {number}  worst {reload['worst_ms']} ms, {reload['streams_ended']} streams "
            f"ended, {reload['comebacks_failed']} comebacks failed, the last back after "
            f"{reload['back_after_s']} s{'' if reload['all_back'] else ' (not all back)'} "
            f"(loadavg {reload['loadavg']})")
    lines += [
        f"reloading p50 {during['p50']} ms, p99 {during['p99']} ms; worst extra latency "
        f"{r['worst_extra_ms']} ms beyond the steady p99",
        f"checks    lost {r['lost']} (on {r['streams_with_losses']} streams), duplicated "
        f"{r['duplicated']}, snapshots {r['snapshots']} (target 0, 0, 0); {r['comebacks']} "
        f"comebacks, {r['open_at_end']:,} open at the end, server tracebacks "
        f"{r['server_tracebacks']} (loadavg {r['loadavg_after']})",
        *(f"short     after seq {a}, up to {u}: owed {o}, received {g}"
          for a, u, o, g in r["short_segments"]),
        *r["tracebacks"],
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--symbols", default="all", metavar="all|K",
                        help="symbols per stream: every one, or K chosen at random")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--reloads", type=int, default=3, help="HUPs to the gunicorn master")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between HUPs")
    parser.add_argument("--steady", type=float, default=5.0,
                        help="seconds measured before the first HUP, for the steady p99")
    parser.add_argument("--retry-ms", type=int, default=500,
                        help="TICKER_RETRY_MS: how long a stream that ended waits to come back")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    procs.exit_on_sigterm()
    if len(os.sched_getaffinity(0)) > 1:
        os.sched_setaffinity(0, {1})  # this process and the market; gunicorn has CPU 0
    result = measure(streams=args.streams,
                     symbols=None if args.symbols == "all" else int(args.symbols),
                     workers=args.workers, reloads=args.reloads, interval=args.interval,
                     steady=args.steady, retry_ms=args.retry_ms, seed=args.seed)
    print(report(result))
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / time.strftime("rolling-%Y%m%d-%H%M%S.json")
    path.write_text(json.dumps(result, indent=1))
    log(f"raw results: {path}")
    return result


if __name__ == "__main__":
    main()
