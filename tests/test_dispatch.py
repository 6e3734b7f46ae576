"""The request dispatcher both transports use (pure): one answer per request, a replay's
answer in pieces then one reply, settled when the request is taken."""

from __future__ import annotations

import json
import random

import pytest

from simulator import universe, wire
from simulator.dispatch import Dispatcher
from simulator.exchange import Exchange
from simulator.model import Market
from simulator.replay import Replay

TS = 1_800_000_000_000


class Setting:
    """An exchange of 3 companies with ``ticks`` ticks made, kept at most ``kept``."""

    def __init__(self, ticks: int = 40, kept: int = 30) -> None:
        companies = universe.create(3, seed=1)
        market = Market(companies, random.Random(1), ts=TS)
        self.exchange = Exchange(market, companies, Replay(kept, 60_000), epoch="e1")
        self.published: list[bytes] = []
        self.dispatcher = Dispatcher(self.exchange, self.publish)
        self.advance(ticks)

    def publish(self, quotes: list[dict]) -> None:
        self.published += self.exchange.record(quotes)

    def advance(self, ticks: int) -> None:
        market = self.exchange.market
        for _ in range(ticks):
            self.publish([market.next_tick(TS)])

    def ask(self, item) -> list[dict]:
        lines = list(self.dispatcher.answer(item, "test"))
        assert all(line.endswith(b"\n") and line.count(b"\n") == 1 for line in lines)
        return [json.loads(line) for line in lines]


@pytest.fixture
def setting():
    return Setting()


def test_symbols(setting):
    assert setting.ask({"op": "symbols", "id": 1}) == [
        {"type": "reply", "id": 1, "count": 3, "universe": setting.exchange.listing}]


def test_auth_on_an_admitted_connection_is_acknowledged(setting):
    assert setting.ask({"op": "auth", "secret": "anything", "id": "a"}) == [
        {"type": "reply", "ok": True, "id": "a"}]


@pytest.mark.parametrize("item, reason, request_id", [
    (wire.WireError("line is not JSON"), "line is not JSON", None),
    ({"op": "sell", "id": 4}, "unknown op 'sell'", 4),
    ({"op": "auth", "id": 5}, "auth needs a secret", 5),
    ({"op": "inject", "symbol": "NOPE", "price": 1, "id": 6}, "unknown symbol 'NOPE'", 6),
    ({"op": "replay", "after": -1, "id": [1]}, "id must be", None),
    ({"op": "replay", "after": 41, "id": 7}, "after 41 is ahead of the market (seq 40)", 7),
    ({"op": "replay", "after": 9, "id": 8}, "after 9 is older than the replay (oldest 10)", 8),
    ({"op": "replay", "after": 12, "until": 11}, "until must not be below after", None),
])
def test_a_bad_request_gets_one_error_and_nothing_happens(setting, item, reason, request_id):
    published = len(setting.published)
    [answer] = setting.ask(item)
    assert answer["type"] == "error" and reason in answer["error"]
    assert answer.get("id") == request_id
    assert len(setting.published) == published


def test_inject_publishes_its_tick_before_the_reply(setting):
    symbol = setting.exchange.universe[0].symbol
    [answer] = setting.ask({"op": "inject", "symbol": symbol, "price": 12.345, "id": 9})
    assert answer["type"] == "reply" and answer["id"] == 9
    assert answer["quote"]["price"] == 12.35 and answer["quote"]["seq"] == 41
    assert json.loads(setting.published[-1]) == {"type": "tick", **answer["quote"]}
    assert setting.exchange.replay.seq == 41  # and it is kept for replays


@pytest.mark.parametrize("after, until, seqs", [
    (10, None, range(11, 41)),
    (10, 15, range(11, 16)),
    (39, 1000, range(40, 41)),
    (40, None, range(0)),
])
def test_replay_answers_the_kept_ticks_then_one_reply(setting, after, until, seqs):
    request = {"op": "replay", "after": after, "id": "r"}
    if until is not None:
        request["until"] = until
    *pieces, done = setting.ask(request)
    assert all(piece["type"] == "replay" and piece["id"] == "r" for piece in pieces)
    ticks = [tick for piece in pieces for tick in piece["ticks"]]
    assert ticks == [json.loads(setting.published[seq - 1]) for seq in seqs]
    assert done == {"type": "reply", "id": "r", "after": after, "until": after + len(seqs),
                    "count": len(seqs)}


def test_replay_is_settled_when_taken_not_when_sent():
    setting = Setting(ticks=3_000, kept=3_000)
    lines = setting.dispatcher.answer({"op": "replay", "after": 0}, "test")
    first = next(lines)
    setting.advance(3_000)  # the oldest are trimmed and new ones come while it is sent
    rest = [json.loads(line) for line in lines]
    ticks = [t for piece in [json.loads(first), *rest[:-1]] for t in piece["ticks"]]
    assert [tick["seq"] for tick in ticks] == list(range(1, 3_001))
    assert rest[-1]["until"] == 3_000 and len(rest) >= 3


def test_hello_tells_the_oldest_replayable_after(setting):
    hello = setting.exchange.hello()
    assert (hello["seq"], hello["oldest"]) == (40, 10)
    assert wire.parse_hello(hello)[:2] == ("e1", 40)
