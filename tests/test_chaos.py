"""Chaos: the market and a worker die under the streams; browsers must end on the truth.

Clients behave like EventSource: when a stream ends or breaks they reconnect after
``retry`` with their Last-Event-ID. Whatever was killed, every client must end on the
market's final prices, and no ``price`` event may ever reach a client twice.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import time

from tests.procs import run_simulator
from tests.servers import run_gunicorn
from tests.sse_client import Browser

MARKET = ("--seed", "11", "--symbols", "10", "--rate", "60")


def final_prices(market, stop) -> dict[str, float]:
    """Stop the market gracefully while subscribed to it; the last price of each symbol."""
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(str(market.path))
    stop()
    data = b""
    sock.settimeout(10)
    while chunk := sock.recv(1 << 16):
        data += chunk
    sock.close()
    prices = {}
    for line in data.splitlines():
        message = json.loads(line)
        if message["type"] == "snapshot":
            prices.update({q["symbol"]: q["price"] for q in message["quotes"]})
        elif message["type"] == "tick":
            prices[message["symbol"]] = message["price"]
    return prices


def settle(browsers, until, seconds=20.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for browser in browsers:
            browser.poll(0.05)
        if all(until(b) for b in browsers):
            return
    raise AssertionError("clients did not settle")


def check_truth(browsers, truth):
    settle(browsers, lambda b: b.feed == "down")
    for browser in browsers:
        shown = {symbol: quote["price"] for symbol, quote in browser.quotes.items()}
        wanted = {symbol: truth[symbol] for symbol in shown}
        assert shown == wanted, "a client did not end on the market's final prices"
        assert len(browser.price_ids) == len(set(browser.price_ids)), "a price event came twice"
        assert len(browser.price_ids) > 5


def test_the_market_killed_five_times(tmp_path):
    with contextlib.ExitStack() as stack:
        market = stack.enter_context(run_simulator(tmp_path, *MARKET))
        server = stack.enter_context(run_gunicorn(tmp_path, market.feed, workers=2))
        _, _, body = server.get("/api/symbols")
        symbols = [company["symbol"] for company in json.loads(body)]
        paths = ["/stream", "/stream?symbols=" + ",".join(symbols[:3]), f"/stream/{symbols[4]}"]
        browsers = [Browser(server.url, path) for path in paths for _ in range(2)]
        stack.callback(lambda: [browser.close() for browser in browsers])
        settle(browsers, lambda b: b.price_ids)
        for _ in range(5):
            os.kill(market.proc.pid, signal.SIGKILL)
            market.proc.wait()
            settle(browsers, lambda b: b.feed == "down")
            market = stack.enter_context(run_simulator(tmp_path, *MARKET))
            seen = {id(b): len(b.price_ids) for b in browsers}
            settle(browsers, lambda b, seen=seen: b.feed == "up" and len(b.price_ids) > seen[id(b)])
        check_truth(browsers, final_prices(market, market.stop))


def test_a_worker_killed_under_its_streams(tmp_path, market):
    with run_gunicorn(tmp_path, market.feed, workers=2) as server:
        browsers = [Browser(server.url, "/stream") for _ in range(8)]
        try:
            settle(browsers, lambda b: len(b.price_ids) > 20)
            # The worker holding the most streams (each holds a descriptor): the kernel
            # need not share the connections out evenly.
            victim = max(server.worker_pids(), key=lambda pid: len(os.listdir(f"/proc/{pid}/fd")))
            os.kill(victim, signal.SIGKILL)
            settle(browsers, lambda b: b.reconnects > 0 or b.client is not None, 5)
            for browser in browsers:
                browser.poll(0.1)
            settle(browsers, lambda b: len(b.price_ids) > 60, 30)
            assert any(b.reconnects for b in browsers), "no stream was on the killed worker"
            check_truth(browsers, final_prices(market, market.stop))
        finally:
            for browser in browsers:
                browser.close()
