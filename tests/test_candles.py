"""One-minute candles: counted from every tick (pure), answered by the dispatcher within one
line, kept across a restart with ``--state``, and asked of a real market over its socket
and over Redis."""

from __future__ import annotations

import contextlib
import json
import random
import time

import pytest
import redis

from bench import candles_memory
from simulator import redis_feed, state, universe, wire
from simulator.candles import INTERVAL_MS, KEPT_MINUTES, Candles, reply_line
from simulator.dispatch import Dispatcher
from simulator.exchange import Exchange
from simulator.model import Market, UnknownSymbol
from simulator.replay import Replay
from tests.procs import run_simulator
from tests.redis_proc import run_redis
from tests.test_simulator import FeedClient, subscribed

T0 = 1_800_000_000_000  # a minute's start: 30,000,000 minutes since the epoch


def tick(symbol: str, price: float, size: int, ts: int) -> dict:
    return {"symbol": symbol, "price": price, "size": size, "ts": ts}


def test_each_minute_is_one_candle_of_its_ticks():
    candles = Candles(["AAA", "BBB"])
    candles.add([tick("AAA", 10.0, 100, T0 + 5), tick("AAA", 10.5, 200, T0 + 10_000),
                 tick("BBB", 3.0, 100, T0 + 20_000)])
    candles.add([tick("AAA", 9.75, 300, T0 + 59_999), tick("AAA", 10.25, 100, T0 + 59_999)])
    candles.add([tick("AAA", 11.0, 400, T0 + 3 * INTERVAL_MS + 1)])  # two quiet minutes
    assert candles.rows("AAA") == [
        [T0, 10.0, 10.5, 9.75, 10.25, 700],
        [T0 + 3 * INTERVAL_MS, 11.0, 11.0, 11.0, 11.0, 400],
    ]
    assert candles.rows("BBB") == [[T0, 3.0, 3.0, 3.0, 3.0, 100]]


def test_an_injected_price_moves_the_current_candle_and_adds_no_volume():
    candles = Candles(["AAA"])
    candles.add([tick("AAA", 10.0, 100, T0)])
    candles.add([tick("AAA", 123.45, 0, T0 + 1_000)])
    assert candles.rows("AAA") == [[T0, 10.0, 123.45, 10.0, 123.45, 100]]
    candles.add([tick("AAA", 0.01, 0, T0 + INTERVAL_MS)])  # a minute of an injection only
    assert candles.rows("AAA")[-1] == [T0 + INTERVAL_MS, 0.01, 0.01, 0.01, 0.01, 0]


def test_a_clock_that_steps_back_counts_in_the_current_minute():
    candles = Candles(["AAA"])
    candles.add([tick("AAA", 10.0, 100, T0 + INTERVAL_MS)])
    candles.add([tick("AAA", 9.0, 100, T0 + 30_000)])
    assert candles.rows("AAA") == [[T0 + INTERVAL_MS, 10.0, 10.0, 9.0, 9.0, 200]]


def test_a_day_of_minutes_is_kept_at_most():
    candles = Candles(["AAA", "OLD"])
    candles.add([tick("OLD", 5.0, 100, T0)])
    for minute in range(KEPT_MINUTES + 100):
        candles.add([tick("AAA", 1.0 + minute / 100, 100, T0 + minute * INTERVAL_MS)])
    rows = candles.rows("AAA")
    assert len(rows) == KEPT_MINUTES
    assert rows[0][0] == T0 + 100 * INTERVAL_MS and rows[-1][0] == T0 + 1539 * INTERVAL_MS
    assert rows[-1][4] == 16.39
    assert candles.rows("OLD") == []  # traded more than a day before the market's newest minute
    series = candles._series["AAA"]
    assert len(series.minutes) == KEPT_MINUTES - 1  # the current minute is not in the arrays


def test_an_unknown_symbol_is_refused():
    with pytest.raises(UnknownSymbol, match="unknown symbol 'NOPE'"):
        Candles(["AAA"]).rows("NOPE")


def a_day_of_large_candles() -> list[list]:
    return [[T0 + m * INTERVAL_MS, 9_999_999.99, 10_000_000.0, 9_999_999.98, 9_999_999.99,
             1_000_000 + m] for m in range(KEPT_MINUTES)]


@pytest.mark.parametrize("request_id", [None, 7, "a-long-request-id" * 14])
def test_the_answer_is_the_most_recent_candles_that_fit_in_one_line(request_id):
    rows = a_day_of_large_candles()
    line = reply_line("AAA", rows, request_id)
    assert len(line) <= wire.MAX_LINE and line.endswith(b"\n") and line.count(b"\n") == 1
    answer = json.loads(line)
    kept = answer.pop("candles")
    expected = {"type": "reply", "symbol": "AAA", "interval": INTERVAL_MS}
    if request_id is not None:
        expected["id"] = request_id
    assert answer == expected
    assert kept == rows[-len(kept):] and 700 < len(kept) < KEPT_MINUTES
    one_more = json.dumps({**expected, "candles": rows[-len(kept) - 1:]}, separators=(",", ":"))
    assert len(one_more) + 1 > wire.MAX_LINE  # the most that fit, not fewer


def test_the_answer_is_the_json_encoding():
    rows = [[T0, 0.01, 12.5, 0.01, 3.0, 0], [T0 + INTERVAL_MS, 1.1, 1.2, 1.0, 1.15, 12_300]]
    line = reply_line("BRK.B", rows, "q")
    assert line == wire.encode(wire.reply("q", symbol="BRK.B", interval=INTERVAL_MS,
                                          candles=rows))


def test_saved_candles_are_restored_exactly():
    candles = Candles(["AAA", "BBB", "CCC"])
    for minute in range(30):
        for second in range(0, 60, 7):
            ts = T0 + minute * INTERVAL_MS + second * 1000
            candles.add([tick("AAA", round(10 + minute * 0.37 - second * 0.01, 2), 100, ts)])
    candles.add([tick("BBB", 2.5, 0, T0)])
    again = Candles(["AAA", "BBB", "CCC"])
    for symbol, rows in candles.saved():
        again.restore(symbol, rows)
    assert [symbol for symbol, _ in again.saved()] == ["AAA", "BBB"]
    for symbol in ("AAA", "BBB", "CCC"):
        assert again.rows(symbol) == candles.rows(symbol)
    # The restored current minute goes on.
    later = T0 + 29 * INTERVAL_MS + 59_000
    candles.add([tick("AAA", 99.0, 100, later)])
    again.add([tick("AAA", 99.0, 100, later)])
    assert again.rows("AAA") == candles.rows("AAA")


@pytest.mark.parametrize("symbol, rows, reason", [
    ("NOPE", [[T0, 1.0, 1.0, 1.0, 1.0, 0]], "unlisted"),
    ("AAA", [], "not a list of candles"),
    ("AAA", [[T0, 1.0, 1.0, 1.0, 1.0]], "six numbers"),
    ("AAA", [[T0 + 1, 1.0, 1.0, 1.0, 1.0, 0]], "whole minutes"),
    ("AAA", [[T0, 1.001, 1.01, 1.0, 1.0, 0]], "cents"),
    ("AAA", [[T0, 1.0, 1.0, 1.0, 1.0, -1]], "not a candle"),
    ("AAA", [[T0, 1.0, 1.0, 1.0, 1.0, True]], "not a candle"),
    ("AAA", [[T0, 0.0, 1.0, 0.0, 1.0, 0]], "not a candle"),
    ("AAA", [[T0, 1.0, 1.0, 1.5, 1.0, 0]], "within its low and high"),
    ("AAA", [[T0, 1.0, 2.0, 1.0, 3.0, 0]], "within its low and high"),
    ("AAA", [[T0, 1.0, 1.0, 1.0, 1.0, 0]] * 2, "not in time order"),
])
def test_bad_saved_candles_are_refused(symbol, rows, reason):
    with pytest.raises(ValueError, match=reason):
        Candles(["AAA"]).restore(symbol, rows)


# The dispatcher ---------------------------------------------------------------------


def an_exchange() -> tuple[Exchange, Dispatcher]:
    """Three companies that traded once a second for ten minutes, until a quarter of an
    hour ago, on the wall clock (an inject is stamped now)."""
    start = time.time_ns() // 1_000_000 - 15 * INTERVAL_MS
    companies = universe.create(3, seed=1)
    market = Market(companies, random.Random(1), ts=start)
    exchange = Exchange(market, companies, Replay(1_000, 10**15), epoch="e1")
    for second in range(600):
        exchange.record([market.next_tick(start + second * 1000)])
    return exchange, Dispatcher(exchange, exchange.record)


def ask(dispatcher: Dispatcher, item) -> dict:
    [line] = dispatcher.answer(item, "test")
    return json.loads(line)


def test_the_dispatcher_answers_candles_and_an_inject_moves_them():
    exchange, dispatcher = an_exchange()
    symbol = exchange.listing[0]["symbol"]
    answer = ask(dispatcher, {"op": "candles", "symbol": symbol, "id": 5})
    assert answer == {"type": "reply", "symbol": symbol, "interval": INTERVAL_MS,
                      "candles": exchange.candles.rows(symbol), "id": 5}
    assert 9 <= len(answer["candles"]) <= 11  # ten minutes of ticks, on the wall clock's minutes
    injected = ask(dispatcher, {"op": "inject", "symbol": symbol, "price": 4321.5})["quote"]
    candle = ask(dispatcher, {"op": "candles", "symbol": symbol})["candles"][-1]
    assert candle[0] == injected["ts"] // INTERVAL_MS * INTERVAL_MS
    assert candle[2] == candle[4] == 4321.5


@pytest.mark.parametrize("item, error", [
    ({"op": "candles", "symbol": "NOPE", "id": 1}, {"error": "unknown symbol 'NOPE'", "id": 1}),
    ({"op": "candles", "id": "x"}, {"error": "candles needs a symbol", "id": "x"}),
    ({"op": "candles", "symbol": 5}, {"error": "candles needs a symbol"}),
    ({"op": "candles", "symbol": "A", "id": [1]},
     {"error": "id must be a string or a finite number"}),
    ({"op": "candles", "symbol": "A", "id": "i" * 300},
     {"error": "a candles request's id must be at most 256 bytes of JSON", "id": "i" * 300}),
])
def test_a_bad_candles_request_gets_one_error(item, error):
    _, dispatcher = an_exchange()
    assert ask(dispatcher, item) == {"type": "error", **error}


# The state file ---------------------------------------------------------------------


def test_candles_survive_a_saved_state_and_a_corrupt_line_is_refused(tmp_path):
    exchange, _ = an_exchange()
    path = tmp_path / "m.state"
    state.save(path, exchange, seed=1)
    loaded, _ = state.load(path, rate=None, max_ticks=1_000, max_age_ms=10**15)
    assert list(loaded.candles.saved()) == list(exchange.candles.saved())
    lines = path.read_bytes().splitlines(keepends=True)
    assert json.loads(lines[0])["candles"] == 3
    path.write_bytes(b"".join(lines[:-1]) + lines[-1].replace(b'"candles":[[', b'"candles":[[1,'))
    with pytest.raises(state.StateError, match="is not a market state: ValueError: .*six"):
        state.load(path, rate=None, max_ticks=1_000, max_age_ms=10**15)
    path.write_bytes(b"".join(lines[:-1]))
    with pytest.raises(state.StateError, match="3 candle lines announced, 602 lines found"):
        state.load(path, rate=None, max_ticks=1_000, max_age_ms=10**15)


def test_a_state_saved_before_candles_loads_with_none(tmp_path):
    exchange, _ = an_exchange()
    path = tmp_path / "m.state"
    state.save(path, exchange, seed=1)
    header, *lines = path.read_bytes().splitlines(keepends=True)
    fields = json.loads(header)
    del fields["candles"]
    path.write_bytes(wire.encode(fields) + b"".join(lines[:fields["ticks"]]))
    loaded, _ = state.load(path, rate=None, max_ticks=1_000, max_age_ms=10**15)
    assert list(loaded.candles.saved()) == []


# Real markets -----------------------------------------------------------------------


def candles_over(client: FeedClient, symbol: str, request_id: str) -> dict:
    client.send(wire.encode({"op": "candles", "symbol": symbol, "id": request_id}))
    return client.answer()


def test_a_market_answers_candles_on_its_socket_and_keeps_them_across_a_restart(tmp_path):
    saved = tmp_path / "market.state"
    with run_simulator(tmp_path, "--seed", "4", "--symbols", "5", "--rate", "100",
                       "--state", str(saved)) as market, subscribed(market.path) as client:
        client.send(b'{"op":"inject","symbol":"NOPE","price":1}\n')
        assert client.answer()["error"] == "unknown symbol 'NOPE'"
        assert candles_over(client, "NOPE", "n") == {
            "type": "error", "error": "unknown symbol 'NOPE'", "id": "n"}
        symbol = client.until(lambda m: m["type"] == "tick")[0]["symbol"]
        client.send(wire.encode({"op": "inject", "symbol": symbol, "price": 77_777.77}))
        injected = client.answer()["quote"]
        answer = candles_over(client, symbol, "c")
        assert answer["type"] == "reply" and answer["id"] == "c" and answer["symbol"] == symbol
        newest = answer["candles"][-1]
        assert newest[0] == injected["ts"] // INTERVAL_MS * INTERVAL_MS
        assert newest[2] == 77_777.77 and newest[4] == injected["price"]
    with run_simulator(tmp_path, "--state", str(saved)) as again, contextlib.closing(
        FeedClient(again.path)
    ) as client:
        again_answer = candles_over(client, symbol, "again")
    before = answer["candles"][:-1]
    assert again_answer["candles"][:len(before)] == before
    assert again_answer["candles"][len(before)][2] == 77_777.77  # that minute's high is kept


@pytest.mark.redis
def test_over_redis_the_same_request_gets_the_same_answer(tmp_path):
    with run_redis(tmp_path) as store, run_simulator(
        tmp_path, "--seed", "4", "--symbols", "5", "--rate", "50", "--feed", store.url
    ):
        client = redis.Redis.from_url(store.url)
        try:
            symbol = json.loads(client.get(redis_feed.HELLO))["universe"][2]["symbol"]
        finally:
            client.close()
        injected = redis_feed.request(store.url, {"op": "inject", "symbol": symbol,
                                                  "price": 12.34}, 5)["quote"]
        answer = redis_feed.request(store.url, {"op": "candles", "symbol": symbol, "id": 9}, 5)
        unknown = redis_feed.request(store.url, {"op": "candles", "symbol": "NOPE"}, 5)
    assert answer["type"] == "reply" and answer["id"] == 9 and answer["interval"] == INTERVAL_MS
    assert answer["candles"][-1][0] == injected["ts"] // INTERVAL_MS * INTERVAL_MS
    assert answer["candles"][-1][4] == 12.34
    assert unknown == {"type": "error", "error": "unknown symbol 'NOPE'"}


def test_the_memory_benchmark_measures_what_it_fills():
    symbols = candles_memory.symbols_of(20)
    held, kept = candles_memory.held_after(symbols, 10, 2)
    assert kept == 200 and 28 * kept < held < 2_000 * kept
    assert 0 < candles_memory.add_cost(symbols, 2_000, 1) < 1e-3
