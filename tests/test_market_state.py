"""A market saved on stop and restarted with ``--state``: same epoch, seq, quotes and
replay, and the next tick is the next seq. Real processes, plus the file format in-process."""

from __future__ import annotations

import contextlib
import json
import random
import re
import signal

import pytest

from simulator import state, universe
from simulator.exchange import Exchange
from simulator.model import Market
from simulator.replay import Replay
from tests.procs import run_simulator
from tests.test_simulator import FeedClient, assert_one_line_error, cli, read_in_pieces

TS = 1_700_000_000_000  # long ago: what was kept then is too old now


class Follower:
    """Every tick a client reads and the latest quote of each symbol they make."""

    def __init__(self, client: FeedClient, snapshot: dict) -> None:
        self.client = client
        self.ticks: list[dict] = []
        self.quotes = {quote["symbol"]: quote for quote in snapshot["quotes"]}

    def take(self, message: dict) -> None:
        self.ticks.append(message)
        self.quotes[message["symbol"]] = {k: v for k, v in message.items() if k != "type"}

    def until_seq(self, seq: int) -> None:
        while not self.ticks or self.ticks[-1]["seq"] < seq:
            self.take(self.client.next())

    def until_closed(self) -> None:
        while True:
            try:
                message = self.client.next(10)
            except EOFError:
                return
            self.take(message)


def replay(client: FeedClient, after: int, until: int | None = None) -> tuple[list[dict], dict]:
    """The ticks and the final reply of one replay request, skipping live ticks."""
    request = {"op": "replay", "after": after, "id": "r"}
    if until is not None:
        request["until"] = until
    client.send(json.dumps(request).encode() + b"\n")
    ticks = []
    while True:
        message = client.next()
        if message["type"] == "replay":
            ticks += message["ticks"]
        elif message["type"] in ("reply", "error"):
            return ticks, message


def test_a_restarted_market_goes_on_exactly(tmp_path):
    saved = tmp_path / "market.state"
    with run_simulator(tmp_path, "--seed", "3", "--symbols", "8", "--rate", "100",
                       "--state", str(saved)) as first:
        with contextlib.closing(FeedClient(first.path)) as client:
            hello, snapshot = client.next(), client.next()
            assert hello["oldest"] == 0
            follower = Follower(client, snapshot)
            follower.until_seq(50)
            first.proc.send_signal(signal.SIGTERM)
            follower.until_closed()
        ticks, final_quotes = follower.ticks, follower.quotes
        assert first.proc.wait(10) == 0
    epoch = hello["epoch"]
    found = re.search(rf"saved epoch {epoch} at seq (\d+) to {re.escape(str(saved))}, "
                      r"(\d+) ticks of replay", first.output())
    assert found, first.output()
    last = int(found[1])
    assert ticks[-1]["seq"] == last and int(found[2]) == last  # flushed, then saved: all kept

    with run_simulator(tmp_path, "--seed", "99", "--symbols", "3", "--state", str(saved)) as again:
        assert f"resumed epoch {epoch} at seq {last} from {saved}, {last} ticks" in again.output()
        assert "--symbols and --seed differ from the market saved in" in again.output()
        with contextlib.closing(FeedClient(again.path)) as client:
            hello, snapshot = client.next(), client.next()
            assert (hello["epoch"], hello["oldest"], hello["rate"]) == (epoch, 0, 100)
            assert hello["seq"] >= last and len(hello["universe"]) == 8
            live = client.next()
            assert live["type"] == "tick" and live["seq"] == hello["seq"] + 1
            across, done = replay(client, last - 20, live["seq"])
    assert done == {"type": "reply", "id": "r", "after": last - 20, "until": hello["seq"] + 1,
                    "count": hello["seq"] + 21 - last}
    assert [tick["seq"] for tick in across] == list(range(last - 19, hello["seq"] + 2))
    assert across[:20] == ticks[-20:]  # from before the restart, byte for byte
    # The snapshot is the saved final quotes moved on by exactly the ticks since.
    expected = dict(final_quotes)
    for tick in across[20:]:
        if tick["seq"] <= hello["seq"]:
            expected[tick["symbol"]] = {k: v for k, v in tick.items() if k != "type"}
    assert snapshot["quotes"] == list(expected.values())
    assert "Traceback" not in again.output()


def test_a_full_size_market_restarts_and_replays(tmp_path):
    saved, count = tmp_path / "market.state", universe.MAX_SYMBOLS
    args = ("--seed", "4", "--symbols", str(count), "--rate", "2000", "--state", str(saved))
    with run_simulator(tmp_path, *args) as first:
        with contextlib.closing(FeedClient(first.path)) as client:
            hello = client.next()
            listed = read_in_pieces(client, hello, "universe", {"type": "universe"})
            follower = Follower(client, {"quotes": []})
            read_in_pieces(client, client.next(), "quotes", {"type": "quotes"})
            follower.until_seq(hello["seq"] + 3000)
            first.proc.send_signal(signal.SIGTERM)
            follower.until_closed()
        assert first.proc.wait(20) == 0
    ticks, last = follower.ticks, follower.ticks[-1]["seq"]
    assert f"saved epoch {hello['epoch']} at seq {last} " in first.output()
    with run_simulator(tmp_path, *args) as again, \
            contextlib.closing(FeedClient(again.path)) as client:
        resumed = client.next()
        assert read_in_pieces(client, resumed, "universe", {"type": "universe"}) == listed
        quotes = read_in_pieces(client, client.next(), "quotes", {"type": "quotes"})
        across, done = replay(client, last - 1000, last + 10)
    assert (resumed["epoch"], resumed["count"]) == (hello["epoch"], count)
    assert resumed["seq"] >= last and len(quotes) == count
    assert done["type"] == "reply" and done["count"] == 1010
    assert across[:1000] == ticks[-1000:]  # from before the restart, byte for byte
    assert [tick["seq"] for tick in across] == list(range(last - 999, last + 11))
    assert "Traceback" not in again.output()


def exchange_with_ticks(count: int, ts: int = TS) -> Exchange:
    companies = universe.create(4, seed=2)
    market = Market(companies, random.Random(2), rate=50.0, ts=ts)
    exchange = Exchange(market, companies, Replay(1_000, 60_000))
    for _ in range(count):
        exchange.record([market.next_tick(ts)])
    return exchange


def load(path, max_ticks=1_000, max_age_ms=10**15, rate=None):
    return state.load(path, rate=rate, max_ticks=max_ticks, max_age_ms=max_age_ms)


def test_saved_and_loaded_the_market_goes_on_with_the_same_ticks(tmp_path):
    path = tmp_path / "m.state"
    original = exchange_with_ticks(300)
    state.save(path, original, seed=2)
    assert [p.name for p in tmp_path.iterdir()] == ["m.state"]  # no temporary file left
    loaded, seed = load(path)
    assert (seed, loaded.epoch, loaded.universe) == (2, original.epoch, original.universe)
    assert loaded.market.quotes == original.market.quotes
    assert list(loaded.replay.entries()) == list(original.replay.entries())
    assert loaded.hello() == original.hello()
    for _ in range(100):
        assert loaded.market.next_tick(TS) == original.market.next_tick(TS)


@pytest.mark.parametrize("max_ticks, max_age_ms, rate, kept", [
    (1_000, 10**15, None, 300),
    (50, 10**15, None, 50),
    (1_000, 1_000, 7.0, 0),  # ticks made long ago are too old now
])
def test_loading_applies_the_bounds_and_rate_given_now(tmp_path, max_ticks, max_age_ms, rate,
                                                       kept):
    path = tmp_path / "m.state"
    state.save(path, exchange_with_ticks(300), seed=2)
    loaded, _ = load(path, max_ticks, max_age_ms, rate)
    assert len(loaded.replay) == kept and loaded.replay.oldest == 300 - kept
    assert loaded.market.rate == (rate or 50.0)


def test_a_file_saved_before_activity_loads_with_even_activity(tmp_path):
    path = tmp_path / "m.state"
    state.save(path, exchange_with_ticks(30), seed=2)
    header, rest = path.read_bytes().split(b"\n", 1)
    old = json.loads(header)
    for company in old["universe"]:
        del company["activity"]
    path.write_bytes(json.dumps(old).encode() + b"\n" + rest)
    loaded, _ = load(path)
    assert [company.activity for company in loaded.universe] == [1.0] * 4
    assert loaded.market.seq == 30


def test_a_missing_file_is_no_state(tmp_path):
    assert load(tmp_path / "none") is None


def saved_text(tmp_path) -> bytes:
    path = tmp_path / "good.state"
    state.save(path, exchange_with_ticks(20), seed=2)
    return path.read_bytes()


CORRUPTIONS = {
    "empty": lambda good: b"",
    "garbage": lambda good: b"\x00\xffnot a state\n",
    "truncated": lambda good: good[: len(good) // 2],
    "header only": lambda good: good.split(b"\n", 1)[0] + b"\n",
    "another version": lambda good: good.replace(b'"version":1', b'"version":9', 1),
    "a tick missing": lambda good: b"\n".join(good.split(b"\n")[:5] + good.split(b"\n")[6:]),
    "not json": lambda good: good.replace(b'"seq":', b'"seq":nope', 1),
    "a list": lambda good: b"[1, 2]\n",
}


@pytest.mark.parametrize("corrupt", CORRUPTIONS.values(), ids=CORRUPTIONS.keys())
def test_a_corrupt_file_is_refused(tmp_path, corrupt):
    path = tmp_path / "bad.state"
    path.write_bytes(corrupt(saved_text(tmp_path)))
    with pytest.raises(state.StateError, match="is not a market state"):
        load(path)


def test_a_corrupt_file_stops_the_market_with_one_line(tmp_path):
    path = tmp_path / "bad.state"
    path.write_bytes(saved_text(tmp_path)[:100])
    result = cli("run", "--feed", f"unix:{tmp_path}/feed.sock", "--state", str(path))
    assert_one_line_error(result, f"{path} is not a market state")
    assert not (tmp_path / "feed.sock").exists()


def test_an_unwritable_place_is_a_clear_error(tmp_path):
    with pytest.raises(state.StateError, match="cannot save the market to"):
        state.save(tmp_path / "no such dir" / "m.state", exchange_with_ticks(3), seed=2)
