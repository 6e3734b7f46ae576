"""Market-data delivery over real processes: max_rate, slow readers, and why a snapshot.

Bounds here are generous (a shared machine); the precise figures are in bench/.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict

from tests.procs import run_simulator
from tests.servers import run_gunicorn
from tests.sse_client import SSEClient


def snapshot_reason(client: SSEClient) -> str:
    first = client.next(type="snapshot")
    return first.json()["reason"]


def test_every_snapshot_says_why(tmp_path):
    with run_simulator(tmp_path, "--seed", "2", "--symbols", "10", "--rate", "200",
                       "--replay-ticks", "100") as market, \
         run_gunicorn(tmp_path, market.feed, workers=1, env={"TICKER_LOG_SIZE": "50"}) as web:
        with SSEClient(web.url, "/stream") as client:
            first = client.next(type="snapshot")
            assert first.json()["reason"] == "new"
            epoch = first.id.rsplit("-", 1)[0]
        with SSEClient(web.url, "/stream", last_event_id="0a1b2c3d4e5f-7") as client:
            assert snapshot_reason(client) == "restart", "an id of another run of the market"
        deadline = time.monotonic() + 20
        while json.loads(web.get("/healthz")[2])["seq"] < 400 and time.monotonic() < deadline:
            time.sleep(0.2)
        with SSEClient(web.url, "/stream", last_event_id=f"{epoch}-1") as client:
            assert snapshot_reason(client) == "too-old", "older than the log and the replay"
        with SSEClient(web.url, "/stream", last_event_id=f"{epoch}-{10**9}") as client:
            assert snapshot_reason(client) == "new", "far ahead of the market: unknown"


def inject(market, symbol: str, price: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "simulator", "inject", symbol, price, "--feed", market.feed],
        capture_output=True, text=True, timeout=10, check=True)
    return json.loads(out.stdout)


def test_max_rate_sends_at_most_that_many_prices_a_second_per_symbol(tmp_path):
    with run_simulator(tmp_path, "--seed", "4", "--symbols", "3", "--rate", "90") as market, \
         run_gunicorn(tmp_path, market.feed, workers=1) as web:
        status, _, body = web.get("/stream?max_rate=1000")
        assert status == 400 and "max_rate" in json.loads(body)["error"]
        with SSEClient(web.url, "/stream") as every, \
             SSEClient(web.url, "/stream?max_rate=2") as limited:
            assert limited.next(type="snapshot").type == "snapshot"
            start = time.monotonic()
            arrivals: dict[str, list[float]] = defaultdict(list)
            while time.monotonic() - start < 5:
                for event in limited.read_for(0.05):
                    if event.type == "price":
                        arrivals[event.json()["symbol"]].append(time.monotonic())
            ticked = Counter(e.json()["symbol"] for e in every.read_for(0.5)
                             if e.type == "price")
            busy = [s for s, n in ticked.most_common() if n >= 5]
            assert busy, "a symbol that ticks far more than twice a second"
            for symbol in busy:
                times = arrivals[symbol]
                assert 4 <= len(times) <= 13, (symbol, len(times))  # 1 to 2.5 a second
                gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
                assert min(gaps) > 0.3, (symbol, min(gaps))
            quote = inject(market, busy[0], "4321.5")
            shown = limited.read_until(
                lambda e: e.type == "price" and e.json()["symbol"] == busy[0]
                and e.json()["seq"] >= quote["seq"], timeout=3)
            assert shown[-1].json()["seq"] >= quote["seq"]


def test_a_reader_on_a_slow_link_sees_recent_prices_and_ends_on_the_market_s(tmp_path):
    # A slow link: bytes wait at the sender, not in the reader's buffer (kept small).
    with run_simulator(tmp_path, "--seed", "6", "--symbols", "20", "--rate", "400") as market, \
         run_gunicorn(tmp_path, market.feed, workers=1) as web, \
         SSEClient(web.url, "/stream") as reference, \
         SSEClient(web.url, "/stream", receive_buffer=16 * 1024) as slow:
        ages: dict[str, list[tuple[float, float]]] = {"slow": [], "reference": []}
        start = time.monotonic()

        def note(who: str, events) -> None:
            for event in events:
                if event.type == "price":  # (a snapshot's quiet symbols are old news)
                    age = time.time() * 1000 - event.json()["ts"]
                    ages[who].append((time.monotonic() - start, age))

        while time.monotonic() - start < 12:  # 16 KiB a second, in 1 KiB sips
            note("slow", slow.take_some(1024, timeout=1))
            time.sleep(1 / 16)
            note("reference", reference.read_for(0))

        def p95(who: str) -> float:
            recent = sorted(age for at, age in ages[who] if at > 8)
            assert recent, f"the {who} reader got prices in its last 4 s"
            return recent[int(len(recent) * 0.95) - 1]

        # Seconds old, not a backlog's worth (that grows by a second a second); measured
        # against a reader that keeps up, so that a busy machine's own delay is not counted.
        assert p95("slow") - p95("reference") < 4000, "p95 age of what it shows"
        lagging = [e for e in slow.events
                   if e.type == "snapshot" and e.json()["reason"] == "lagging"]
        assert lagging and all(e.json()["skipped"] > 0 for e in lagging)
        market.proc.send_signal(signal.SIGTERM)
        market.proc.wait(10)

        def final(client: SSEClient) -> dict[str, float]:
            client.read_until(lambda e: e.type == "status" and e.json()["feed"] == "down",
                              timeout=30)
            state = {}
            for event in client.events:
                if event.type == "snapshot":
                    state.update({q["symbol"]: q["seq"] for q in event.json()["quotes"]})
                elif event.type == "price":
                    state[event.json()["symbol"]] = event.json()["seq"]
            return state

        assert final(slow) == final(reference), "it converges on the market's last quotes"
