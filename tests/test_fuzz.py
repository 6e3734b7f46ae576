"""Garbage from every side while a client streams: clear refusals only, and it misses nothing.

Hypothesis throws malformed lines at the market's feed socket and malformed requests at
gunicorn (symbols, Last-Event-ID, tokens, headers), with authentication on so tokens are
really checked. Every answer must be a clear 2xx/4xx (or an error line on the feed
socket), never a 5xx, and a stream opened before it all must see every tick, in order.
"""

from __future__ import annotations

import json
import socket
import time
from urllib.parse import quote

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.procs import run_simulator
from tests.servers import run_gunicorn
from tests.sse_client import SSEClient
from ticker import auth

SECRET = "fuzzing-secret-0123456789-abcdefghij"

text = st.text(max_size=60)
header_text = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, blacklist_characters="\x7f"),
    max_size=300,
)
numbers = st.floats() | st.integers(min_value=-(10**30), max_value=10**30)


def garbage_requests(symbols: list[str]):
    """A request line and headers, each part possibly malformed."""
    token = st.sampled_from(["", "x", "a.b", "..", "Bearer"]) | header_text | st.just(
        auth.mint(SECRET, symbols[:2], int(time.time()) + 600)
    ) | st.just(auth.mint(SECRET, "*", int(time.time()) - 1))
    symbol_list = st.lists(st.sampled_from(symbols) | text, max_size=5).map(",".join)
    path = st.one_of(
        symbol_list.map(lambda s: "/stream?symbols=" + quote(s)),
        text.map(lambda s: "/stream/" + quote(s, safe="")),
        symbol_list.map(lambda s: "/api/snapshot?symbols=" + quote(s)),
        st.just("/api/symbols"),
        text.map(lambda s: "/" + quote(s)),
    )
    return st.fixed_dictionaries({
        "method": st.sampled_from(["GET", "GET", "POST", "HEAD", "DELETE", "OPTIONS"]),
        "path": path,
        "query_token": st.none() | token.map(quote),
        "last_event_id": st.none() | header_text,
        "authorization": st.none() | token.map(lambda t: "Bearer " + t) | header_text,
        "origin": st.none() | header_text,
    })


def send(port: int, request: dict) -> int:
    """Send one request; the status of its answer (the connection is then dropped)."""
    path = request["path"]
    if request["query_token"] is not None:
        path += ("&" if "?" in path else "?") + "token=" + request["query_token"]
    lines = [f"{request['method']} {path} HTTP/1.1", "Host: fuzz"]
    for name, key in (("Last-Event-ID", "last_event_id"), ("Authorization", "authorization"),
                      ("Origin", "origin")):
        if request[key] is not None:
            lines.append(f"{name}: {request[key]}")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        head = b""
        while b"\r\n" not in head:
            chunk = sock.recv(4096)
            if not chunk:
                break
            head += chunk
    return int(head.split(b" ", 2)[1])


def drain(sock: socket.socket) -> None:
    """Read whatever the market has sent this subscriber, so its queue never fills."""
    sock.setblocking(False)
    try:
        while sock.recv(1 << 16):
            pass
    except BlockingIOError:
        pass
    finally:
        sock.setblocking(True)


def feed_garbage():
    line = st.one_of(
        st.binary(max_size=200),
        st.text(max_size=200).map(str.encode),
        st.fixed_dictionaries({
            "op": st.sampled_from(["inject", "symbols", "sell", None]),
            "symbol": text | st.integers(),
            "price": numbers | text | st.none() | st.booleans(),
        }).map(lambda m: json.dumps(m).encode()),
        st.integers(min_value=65_000, max_value=70_000).map(lambda n: b"x" * n),
    )
    return st.lists(line.filter(lambda b: b"\n" not in b), min_size=1, max_size=4)


def test_garbage_on_the_feed_and_http_costs_a_streaming_client_nothing(tmp_path):
    with run_simulator(tmp_path, "--seed", "4", "--symbols", "8", "--rate", "50") as market, \
         run_gunicorn(tmp_path, market.feed, workers=2,
                      env={"TICKER_AUTH_SECRET": SECRET}) as server:
        token = auth.mint(SECRET, "*", int(time.time()) + 3600)
        _, _, body = server.get(f"/api/symbols?token={token}")
        symbols = [company["symbol"] for company in json.loads(body)]
        feed = socket.socket(socket.AF_UNIX)
        feed.connect(str(market.path))
        statuses = []
        with SSEClient(server.url, f"/stream?token={token}") as watcher, feed:
            watcher.next(type="snapshot")

            @settings(max_examples=120, deadline=None, database=None,
                      suppress_health_check=list(HealthCheck))
            @given(request=garbage_requests(symbols), lines=feed_garbage())
            def probe(request, lines):
                feed.sendall(b"".join(line + b"\n" for line in lines))
                drain(feed)
                statuses.append(send(server.port, request))
                watcher.read_for(0.001)

            probe()
            watcher.read_for(1.0)
        assert statuses and max(statuses) < 500, f"5xx answers: {sorted(set(statuses))}"
        assert len({status for status in statuses if 400 <= status < 500}) >= 2
        prices = [e.json()["seq"] for e in watcher.events if e.type == "price"]
        assert len(prices) > 20
        assert prices == list(range(prices[0], prices[0] + len(prices))), "the client lost a tick"
        assert [e.type for e in watcher.events].count("snapshot") == 1
        assert "Traceback" not in server.output() + market.output()
