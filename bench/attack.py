"""One hostile client against one worker: does anybody else notice?

One gunicorn worker (pinned to CPU 0) serves a stream of every symbol and answers
``/healthz``, polled every 0.2 s on a fresh connection, while one client spends ``--window``
seconds sending: an endless request line; an endless header; an endless chunked body;
pipelined requests as fast as the server answers them; or 200 connections that each trickle
a byte every 0.5 s. For each: the worst ``/healthz`` time, the stream's longest silence
(targets 0.5 s and 1 s) and whether the worker is still the same process. Then what the
fairness costs a normal request: keep-alive ``GET /healthz`` one after another, server CPU
per request, against gunicorn's own gevent worker (``--worker gevent`` runs the attacks
against that one instead).

    python -m bench.attack --window 10
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import select
import socket
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from bench.procs import cpu_seconds, exit_on_sigterm, market, revision, runqueue_seconds, server

__all__ = ["main"]

_PIPELINED = b"GET /healthz HTTP/1.1\r\nHost: attack\r\n\r\n"
ENDLESS = {
    # What the client sends first, then again and again for as long as it may.
    "request line": (b"GET /healthz?x=", b"a" * 65536),
    "header": (b"GET /healthz HTTP/1.1\r\nHost: attack\r\nX-Endless: ", b"a" * 65536),
    "chunked body": (
        b"POST /healthz HTTP/1.1\r\nHost: attack\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"10000\r\n" + b"a" * 0x10000 + b"\r\n",
    ),
    "pipelined": (b"", _PIPELINED * 2000),
}
TRICKLERS = 200
HEALTHZ_TARGET_S = 0.5
SILENCE_TARGET_S = 1.0


def endless(port: int, opening: bytes, filler: bytes, stop: threading.Event,
            sent: list[int]) -> None:
    """Send ``opening``, then ``filler`` without end, reading whatever comes back; connect
    again whenever the server hangs up."""
    while not stop.is_set():
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(opening)
            sock.setblocking(False)
            pending = filler
            while not stop.is_set():
                readable, writable, _ = select.select([sock], [sock], [], 0.5)
                if readable and not sock.recv(1 << 20):
                    break
                if writable:
                    with contextlib.suppress(BlockingIOError):
                        count = sock.send(pending)
                        sent[0] += count
                        pending = pending[count:] or filler


def trickle(port: int, stop: threading.Event, sent: list[int]) -> None:
    """``TRICKLERS`` connections sending a request line one byte every 0.5 s each."""
    def connect() -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(b"GET /healthz?x=")
        return sock

    socks = [connect() for _ in range(TRICKLERS)]
    while not stop.wait(0.5):
        for n, sock in enumerate(socks):
            try:
                sock.send(b"a")
                sent[0] += 1
            except OSError:  # the server gave up on it: another one takes its place
                sock.close()
                with contextlib.suppress(OSError):
                    socks[n] = connect()
    for sock in socks:
        sock.close()


def watch_stream(port: int, stop: threading.Event, arrivals: list[float]) -> None:
    """A stream of every symbol: the time of every read that brought bytes."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"GET /stream HTTP/1.1\r\nHost: attack\r\n\r\n")
        sock.settimeout(0.5)
        while not stop.is_set():
            try:
                data = sock.recv(1 << 16)
            except TimeoutError:
                continue
            if not data:
                return
            arrivals.append(time.monotonic())


def poll_healthz(port: int, stop: threading.Event, times: list[float]) -> None:
    """``GET /healthz`` every 0.2 s on a fresh connection; each answer's time (inf: none)."""
    while not stop.wait(0.2):
        started = time.monotonic()
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            connection.request("GET", "/healthz")
            ok = connection.getresponse().status == 200
            times.append(time.monotonic() - started if ok else float("inf"))
        except OSError:
            times.append(float("inf"))
        finally:
            connection.close()


def clients_waited() -> float:
    """Seconds this process's threads (the clients) have waited for a CPU so far."""
    return sum(runqueue_seconds(f"self/task/{tid}") for tid in os.listdir("/proc/self/task"))


def under_attack(srv, name: str, attacker: Callable | None, window: float) -> dict:
    """The stream and /healthz for ``window`` seconds while ``attacker`` runs."""
    [worker] = srv.workers
    stop = threading.Event()
    arrivals: list[float] = []
    healthz: list[float] = []
    sent = [0]
    threads = [threading.Thread(target=watch_stream, args=(srv.port, stop, arrivals)),
               threading.Thread(target=poll_healthz, args=(srv.port, stop, healthz))]
    for thread in threads:
        thread.start()
    time.sleep(1.0)  # the stream's snapshot is in; the attack starts
    if attacker is not None:
        threads.append(threading.Thread(target=attacker, args=(srv.port, stop, sent)))
        threads[-1].start()
    started, cpu_before = time.monotonic(), cpu_seconds(worker)
    # Time spent runnable but waiting for a CPU: the shared machine's part in a silence.
    waits_before = runqueue_seconds(worker), clients_waited()
    time.sleep(window)
    waits = runqueue_seconds(worker) - waits_before[0], clients_waited() - waits_before[1]
    stop.set()
    cpu = cpu_seconds(worker) - cpu_before if worker in srv.workers else float("nan")
    for thread in threads:
        thread.join(40)
    during = [t for t in arrivals if t >= started] + [started + window]
    silences = [b - a for a, b in zip([started, *during], during, strict=False)]
    return {
        "attack": name,
        "healthz_worst_s": max(healthz, default=float("inf")),
        "healthz_median_s": statistics.median(healthz) if healthz else float("inf"),
        "healthz_polls": len(healthz),
        "longest_silence_s": max(silences),
        "same_worker": srv.workers == [worker],
        "attacker_kb": sent[0] / 1e3,
        "worker_cpu_share": cpu / window,
        "worker_starved_share": waits[0] / window,
        "clients_starved_share": waits[1] / window,
    }


def request_cost(srv, count: int) -> dict:
    """Keep-alive ``GET /healthz`` one after another: requests/s and server CPU each."""
    [worker] = srv.workers
    connection = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    cpu_before, started = cpu_seconds(worker), time.monotonic()
    for _ in range(count):
        connection.request("GET", "/healthz")
        connection.getresponse().read()
    elapsed, cpu = time.monotonic() - started, cpu_seconds(worker) - cpu_before
    connection.close()
    return {"requests_per_s": count / elapsed, "server_cpu_us_per_request": cpu / count * 1e6}


def attackers() -> dict[str, Callable | None]:
    chosen: dict[str, Callable | None] = {"none": None}
    for name, (opening, filler) in ENDLESS.items():
        chosen[name] = lambda port, stop, sent, o=opening, f=filler: endless(
            port, o, f, stop, sent)
    chosen[f"{TRICKLERS} trickling"] = trickle
    return chosen


def run_server(worker: str, body: Callable) -> object:
    """``body(srv)`` against a fresh market and one worker of class ``worker``."""
    if worker == "gevent":
        os.environ["GUNICORN_CMD_ARGS"] = "--worker-class gevent"
    else:
        os.environ.pop("GUNICORN_CMD_ARGS", None)
    with tempfile.TemporaryDirectory(prefix="ticker-attack-") as name:
        tmp = Path(name)
        with market(tmp, symbols=50, rate=100, seed=1, cpu=1) as feed, \
                server("ticker", tmp, feed.feed, streams=1000, cpu=0) as srv:
            return body(srv)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window", type=float, default=10.0, help="seconds per attack")
    parser.add_argument("--worker", choices=["ticker", "gevent"], default="ticker",
                        help="the worker class attacked: ticker's, or gunicorn's gevent")
    parser.add_argument("--attacks", default="", help="comma-separated names (default: all)")
    parser.add_argument("--requests", type=int, default=5000, help="for the cost per request")
    parser.add_argument("--rounds", type=int, default=5, help="of the cost per request")
    args = parser.parse_args(argv)
    exit_on_sigterm()
    load = Path("/proc/loadavg").read_text().split()[:3]
    print(f"server {revision()}, worker {args.worker}, load average {' '.join(load)}")
    rows = []
    chosen = attackers()
    if args.attacks:
        chosen = {name: chosen[name] for name in args.attacks.split(",")}
    for label, attacker in chosen.items():
        row = run_server(args.worker, lambda srv, n=label, a=attacker: under_attack(
            srv, n, a, args.window))
        rows.append(row)
        met = (row["healthz_worst_s"] <= HEALTHZ_TARGET_S
               and row["longest_silence_s"] <= SILENCE_TARGET_S and row["same_worker"])
        print(f"{label:<14} /healthz worst {row['healthz_worst_s']:7.3f} s "
              f"(median {row['healthz_median_s']:.3f}, {row['healthz_polls']} polls)  "
              f"longest silence {row['longest_silence_s']:6.3f} s  "
              f"same worker {'yes' if row['same_worker'] else 'NO'}  "
              f"attacker pushed {row['attacker_kb']:10,.0f} KB  "
              f"worker CPU {row['worker_cpu_share']:.0%} +{row['worker_starved_share']:.0%} "
              f"starved, clients +{row['clients_starved_share']:.0%} starved  "
              f"{'ok' if met else 'MISSED'}",
              flush=True)
    costs: dict[str, list[dict]] = {"ticker": [], "gevent": []} if args.rounds else {}
    for _ in range(args.rounds):  # alternated, so a busy spell on the machine hits both
        for worker, runs in costs.items():
            runs.append(run_server(worker, lambda srv: request_cost(srv, args.requests)))
    for worker, runs in costs.items():
        rates = [run["requests_per_s"] for run in runs]
        cpus = [run["server_cpu_us_per_request"] for run in runs]
        # The least CPU is the least disturbed by the machine's other work.
        print(f"normal requests, {worker} worker ({args.rounds} runs): "
              f"median {statistics.median(rates):,.0f}/s, server CPU each "
              f"median {statistics.median(cpus):.0f} us, least {min(cpus):.0f} us", flush=True)
    load = Path("/proc/loadavg").read_text().split()[:3]
    print(f"load average at the end {' '.join(load)}")
    out = Path(__file__).parent / "results" / f"attack-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"attacks": rows, "cost": costs}, indent=1, default=str))


if __name__ == "__main__":
    main()
