"""The shipped deployment, run: nginx with ``deploy/nginx`` (TLS, HTTP/2) in front of a real
market and gunicorn. Events as prompt as direct, quiet streams kept open by heartbeats past
the proxy's read timeout, exact resume across a gunicorn reload with no 502, ten streams on
one HTTP/2 connection, and the proxy's own limits, compression and headers.

One market, gunicorn and nginx serve the whole module (the reload comes last), with the
shipped read timeout, 60 s: during a reload a request may wait a few seconds for a new
worker to be ready, as it would without the proxy. The quiet stream has its own market,
gunicorn and nginx, with a 3 s read timeout and heartbeats every second, so a stream kept
open only by heartbeats shows within seconds. Clients speak TLS to nginx, but for the reload's
followers and /healthz poller (``tests.observers``, plain HTTP), which use the plain port
of the same server block.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import http.client
import json
import os
import re
import signal
import socket
import statistics
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests import sequences
from tests.conftest import attach_log_on_failure
from tests.nginx_proc import (
    SHIPPED,
    Nginx,
    check_config,
    make_certificate,
    run_nginx,
    site_conf,
)
from tests.observers import Follower, HealthPoller, Tape, wait_until
from tests.procs import run_simulator
from tests.servers import free_port, run_gunicorn
from tests.sse_client import Parser, SSEClient

READ_TIMEOUT_S = 3
SERVER_ENV = {
    "TICKER_HEARTBEAT_S": "1",
    "TICKER_RETRY_MS": "250",
    # Behind the proxy every client is 127.0.0.1: the proxy limits per client instead.
    "TICKER_MAX_STREAMS_PER_CLIENT": "1000",
}
# Open streams per client address, as the shipped configuration sets it.
STREAM_LIMIT = int(re.search(r"limit_conn ticker_streams (\d+);",
                             (SHIPPED / "ticker.conf").read_text())[1])


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """The market (20 symbols, 50 ticks/s), its tape, gunicorn (2 workers) and nginx."""
    tmp_path = tmp_path_factory.mktemp("deploy")
    with run_simulator(tmp_path, "--seed", "5", "--symbols", "20", "--rate", "50") as market:
        tape = Tape(market.path).start()
        try:
            with run_gunicorn(tmp_path, market.feed, workers=2, env=SERVER_ENV) as web, \
                    run_nginx(tmp_path, web.port) as proxy:
                yield market, tape, web, proxy
        finally:
            tape.stop()


@pytest.fixture
def logs(request, stack):
    """The stack, with every process's log attached to the report of a test that failed."""
    yield stack
    market, _, web, proxy = stack
    for title, output in (("simulator log", market.output), ("gunicorn log", web.output),
                          ("nginx error log", proxy.output)):
        attach_log_on_failure(request, title, output)


def proxied(proxy: Nginx, path: str, **kwargs) -> SSEClient:
    """A stream through nginx over TLS (HTTP/1.1)."""
    return SSEClient(proxy.url, path, ssl_context=proxy.trusting(), **kwargs)


def https_get(proxy: Nginx, path: str, headers: dict | None = None):
    """``(status, headers, body)`` of one request to nginx over TLS."""
    connection = http.client.HTTPSConnection("127.0.0.1", proxy.tls_port,
                                             context=proxy.trusting(), timeout=10)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


def connections_to(port: int) -> list[str]:
    """This process's TCP connections established to ``port``, by local address:port (in
    hex). Others' tests on the machine may reach the same port; they are not counted."""
    ours = set()
    for fd in Path("/proc/self/fd").iterdir():
        with contextlib.suppress(OSError):
            ours.add(os.readlink(fd))
    lines = [line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:]]
    return [fields[1] for fields in lines if fields[2].endswith(f":{port:04X}")
            and fields[3] == "01" and f"socket:[{fields[9]}]" in ours]


def directives(text: str) -> list[str]:
    """The directive names of an nginx file with one directive a line."""
    return sorted(line.split()[0] for line in text.splitlines()
                  if line.strip() and not line.lstrip().startswith("#"))


def test_the_shipped_site_files_are_valid_and_the_tests_set_the_same_directives(tmp_path):
    site, upstream = ((SHIPPED / "ticker" / name).read_text()
                      for name in ("site.conf", "upstream.conf"))
    cert, key = make_certificate(tmp_path)
    # The shipped files as they are, but for the paths only a real site has.
    placed = re.sub(r"ssl_certificate (\S+);", f"ssl_certificate {cert};", site)
    placed = re.sub(r"ssl_certificate_key (\S+);", f"ssl_certificate_key {key};", placed)
    placed = placed.replace("/var/log/nginx/", f"{tmp_path}/")
    checked = check_config(tmp_path / "shipped", placed, upstream)
    assert checked.returncode == 0, checked.stderr
    # What this module runs differs from the shipped site in values only (and one more
    # listen, the plain port).
    ours = site_conf(tmp_path, 1, 2, cert, key, f"{READ_TIMEOUT_S}s")
    assert set(directives(ours)) == set(directives(site))
    assert directives(upstream) == ["server"]


def test_events_arrive_through_the_proxy_as_promptly_as_direct(logs):
    _, _, web, proxy = logs
    delays: dict[str, list[float]] = {"direct": [], "proxied": []}

    def measure(name: str, client: SSEClient) -> None:
        # Milliseconds from the market producing a tick to this client reading it.
        with client, contextlib.suppress(EOFError):  # an early end shows as too few
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                try:
                    event = client.next(0.5)
                except TimeoutError:
                    continue
                if event.type == "price":
                    delays[name].append(time.time() * 1000 - event.json()["ts"])

    threads = [threading.Thread(target=measure, args=("direct", SSEClient(web.url, "/stream"))),
               threading.Thread(target=measure, args=("proxied", proxied(proxy, "/stream")))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(15)
    assert min(map(len, delays.values())) > 100, {k: len(v) for k, v in delays.items()}
    direct, through = (statistics.median(delays[k]) for k in ("direct", "proxied"))
    assert through <= direct + 5, f"p50 {through:.1f} ms through nginx, {direct:.1f} ms direct"


def silent_upstream() -> tuple[socket.socket, threading.Event]:
    """A server that starts an event stream, sends one comment, then says nothing: what
    nginx's read timeout is for. Stopped by setting the event."""
    listener = socket.create_server(("127.0.0.1", 0))
    done = threading.Event()

    def serve() -> None:
        with listener:
            connection, _ = listener.accept()
            with connection:
                connection.recv(65536)
                connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                                   b"Transfer-Encoding: chunked\r\n\r\n4\r\n: \n\n\r\n")
                done.wait(30)

    threading.Thread(target=serve, daemon=True).start()
    return listener, done


@pytest.fixture
def quiet(request, tmp_path):
    """A market with one tick every 100 s on average behind gunicorn and nginx; and the same
    nginx configuration in front of ``silent_upstream``."""
    listener, release = silent_upstream()
    timeout = f"{READ_TIMEOUT_S}s"
    with run_simulator(tmp_path, "--seed", "2", "--symbols", "5", "--rate", "0.01") as market, \
            run_gunicorn(tmp_path, market.feed, workers=1, env=SERVER_ENV) as web, \
            run_nginx(tmp_path, web.port, read_timeout=timeout) as proxy, \
            run_nginx(tmp_path, listener.getsockname()[1], read_timeout=timeout) as control:
        yield proxy, control
        release.set()
        for title, output in (("gunicorn log", web.output), ("nginx error log", proxy.output),
                              ("control nginx error log", control.output)):
            attach_log_on_failure(request, title, output)


def test_a_quiet_stream_outlives_the_proxy_read_timeout(quiet):
    # The quiet stream carries heartbeats only, and stays open; the silent upstream's
    # stream shows the timeout is real: it is cut after 3 s.
    proxy, control = quiet
    streams = {"quiet": proxied(proxy, "/stream"), "cut": proxied(control, "/stream")}
    took: dict[str, float] = {}

    def read(name: str) -> None:
        # How long until the stream ended; the whole wait if it did not.
        started = time.monotonic()
        with streams[name], contextlib.suppress(TimeoutError):
            streams[name].read_to_end(3 * READ_TIMEOUT_S + 0.5)
        took[name] = time.monotonic() - started

    readers = [threading.Thread(target=read, args=(name,)) for name in streams]
    for reader in readers:
        reader.start()
    for reader in readers:
        reader.join(20)
    quiet_stream, cut = streams["quiet"], streams["cut"]
    assert quiet_stream.status == 200 and not quiet_stream.ended, (
        f"ended after {took['quiet']:.1f} s")
    assert took["quiet"] >= 3 * READ_TIMEOUT_S
    assert quiet_stream.parser.comments.count(" heartbeat") >= 2 * READ_TIMEOUT_S
    assert cut.ended and READ_TIMEOUT_S - 0.5 < took["cut"] < READ_TIMEOUT_S + 3
    assert "upstream timed out" in control.output()
    assert "upstream timed out" not in proxy.output()


def test_ten_streams_share_one_http2_connection_all_live(logs):
    _, tape, _, proxy = logs
    symbols = tape.universe[:10]
    live: list[tuple[str, int, str]] = []
    all_live = asyncio.Event()
    connections: list[list[str]] = []

    async def watch(client: httpx.AsyncClient, symbol: str) -> None:
        async with client.stream("GET", f"/stream/{symbol}") as response:
            parser = Parser()
            async for chunk in response.aiter_bytes():
                prices = [e for e in parser.feed(chunk) if e.type == "price"]
                if prices and not any(s == symbol for _, _, s in live):
                    live.append((response.http_version, response.status_code, symbol))
                    if len(live) == len(symbols):
                        # Every stream is open and has had a price: count the connections.
                        connections.append(connections_to(proxy.tls_port))
                        all_live.set()
                if all_live.is_set():
                    return

    async def main() -> None:
        async with httpx.AsyncClient(http2=True, verify=proxy.trusting(), base_url=proxy.url,
                                     timeout=10) as client:
            # The page first, as a browser does: ten requests at once on no connection
            # yet would each open one, before any knew that HTTP/2 is spoken.
            assert (await client.get("/")).http_version == "HTTP/2"
            await asyncio.wait_for(
                asyncio.gather(*(watch(client, symbol) for symbol in symbols)), 20)

    asyncio.run(main())
    assert sorted(s for _, _, s in live) == sorted(symbols)
    assert {(version, status) for version, status, _ in live} == {("HTTP/2", 200)}
    assert list(map(len, connections)) == [1], f"ten HTTP/2 streams, one TCP connection, " \
        f"not {connections}"

    def logged() -> list[str]:  # a request is logged once nginx has seen its stream closed
        return [line for line in proxy.access_log().splitlines() if "GET /stream/" in line]

    wait_until(lambda: len(logged()) == len(symbols), 10, "the streams in the access log")
    assert all("HTTP/2.0" in line for line in logged())


def test_streams_per_client_address_are_limited_at_the_proxy(logs):
    _, _, _, proxy = logs

    async def main() -> tuple[list[int], httpx.Response]:
        async with httpx.AsyncClient(http2=True, verify=proxy.trusting(), base_url=proxy.url,
                                     timeout=10) as client:
            held = await asyncio.gather(*(
                client.send(client.build_request("GET", "/stream"), stream=True)
                for _ in range(STREAM_LIMIT)))
            try:
                return [r.status_code for r in held], await client.get("/stream")
            finally:
                for response in held:
                    await response.aclose()

    statuses, refused = asyncio.run(main())
    assert statuses == [200] * STREAM_LIMIT
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "1"
    assert "address" in refused.json()["error"]


def test_the_api_is_rate_limited_per_client_address(logs):
    _, _, _, proxy = logs
    connection = http.client.HTTPSConnection("127.0.0.1", proxy.tls_port,
                                             context=proxy.trusting(), timeout=10)
    statuses, refusals = [], []
    try:
        for _ in range(60):
            connection.request("GET", "/api/symbols")
            response = connection.getresponse()
            body = response.read()
            statuses.append(response.status)
            if response.status != 200:
                refusals.append((response.headers, body))
        assert set(statuses) == {200, 503}
        assert statuses.count(200) >= 20, "the burst is let through"
        headers, body = refusals[0]
        assert headers["Content-Type"] == "application/json"
        assert "address" in json.loads(body)["error"]
        # A client that waits as long as it is told is served again.
        time.sleep(int(headers["Retry-After"]))
        connection.request("GET", "/api/symbols")
        assert connection.getresponse().status == 200
    finally:
        connection.close()


def test_compression_headers_and_resume_through_the_proxy(logs):
    _, _, _, proxy = logs
    zipped = {"Accept-Encoding": "gzip"}
    status, headers, body = https_get(proxy, "/api/symbols", zipped)
    assert status == 200 and headers["Content-Encoding"] == "gzip"
    assert json.loads(gzip.decompress(body))
    status, headers, _ = https_get(proxy, "/static/app.js", zipped)
    assert status == 200 and headers["Content-Encoding"] == "gzip"
    status, headers, body = https_get(proxy, "/healthz")
    assert status == 200 and json.loads(body)["feed"] == "up"
    for name in ("Strict-Transport-Security", "X-Content-Type-Options", "X-Frame-Options",
                 "Referrer-Policy", "Content-Security-Policy"):
        assert headers[name], name

    with proxied(proxy, "/stream", headers=zipped) as stream:
        assert stream.status == 200
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        assert stream.headers["X-Accel-Buffering"] == "no"
        assert "Content-Encoding" not in stream.headers, "never compressed"
        stream.read_until(lambda e: e.type == "price", timeout=10)
        last_id = stream.parser.last_event_id
    time.sleep(0.3)  # ticks pass while away
    with proxied(proxy, "/stream", last_event_id=last_id) as stream:
        first = stream.next(type="price", timeout=10)
        # Last-Event-ID reached the app: a replay from the next tick on, no snapshot.
        assert "snapshot" not in {e.type for e in stream.events}
        assert first.json()["seq"] == int(last_id.rsplit("-", 1)[1]) + 1


def test_nginx_answers_json_503_while_gunicorn_is_down(tmp_path):
    with run_nginx(tmp_path, free_port()) as proxy:
        status, headers, body = https_get(proxy, "/healthz")
        assert status == 503 and headers["Retry-After"] == "2"
        assert headers["Content-Type"] == "application/json"
        assert "not reachable" in json.loads(body)["error"]


def mismatches(tape: Tape, clients: list[Follower]) -> list[str]:
    """What each client missed, got twice or was wrongly sent, against the market's own
    tape up to its head now (once every client has had time to catch up with it)."""
    upto = tape.head
    for client in clients:
        target = tape.last_for(client.symbols, upto)
        with contextlib.suppress(AssertionError):  # reported below as missed events
            wait_until(lambda c=client, t=target: c.newest() >= t, 15, "catching up")
    assert not tape.breaks and not tape.errors, ("the reference is unsound", tape.breaks,
                                                 tape.errors)
    ticks = tape.copy()
    found = []
    for client in clients:
        assert not client.errors, f"{client} broke: {client.errors}"
        problems = sequences.problems(ticks, tape.epoch, client.symbols, client.connections,
                                      upto)
        if client.answers:
            problems.append(f"answers other than 200 on reconnecting: {client.answers}")
        found += [f"{client}: {problem}" for problem in problems]
    return found


def test_resume_through_the_proxy_is_exact_across_a_reload_with_no_502(logs):
    _, tape, web, proxy = logs
    health = HealthPoller(proxy.plain_port).start()
    clients = [Follower(proxy.plain_url, tape.universe[3:6]).start(),
               Follower(proxy.plain_url, None).start()]
    try:
        wait_until(lambda: all(c.prices() >= 3 for c in clients), 20, "the first prices")
        old = set(web.worker_pids())
        os.kill(web.proc.pid, signal.SIGHUP)

        def reloaded() -> bool:
            pids = set(web.worker_pids())
            return (len(pids) == web.workers and not pids & old
                    and web.output().count(" up: epoch ") >= len(old) + web.workers)

        wait_until(reloaded, 20, "the new workers, each with its feed up")
        wait_until(lambda: not any(Path(f"/proc/{pid}").exists() for pid in old), 10,
                   "the old workers' exit")
        time.sleep(1.0)
        health.stop()
        found = mismatches(tape, clients) + health.problems()
        assert not found, "\n".join(found)
        assert all(len(c.connections) >= 2 for c in clients), "each resumed at least once"
    finally:
        health.stop()
        for client in clients:
            client.stop()
