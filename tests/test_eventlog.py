"""The event log: contiguous history, exact replay, snapshots, ids and conflation bounds."""

import json
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.wire import Tick
from tests.sse_client import Parser
from ticker.eventlog import EventLog, GapError

UNIVERSE = [{"symbol": s, "name": f"{s} Inc", "sector": "Tech"} for s in ("AAA", "BBB", "CCC")]


def quote(symbol, seq, price=10.0):
    return {"symbol": symbol, "price": price, "open": 10.0, "high": price, "low": price,
            "change": 0.0, "change_pct": 0.0, "volume": seq, "size": 1, "ts": 1000 + seq,
            "seq": seq}


def tick(symbol, seq, price=10.0):
    return Tick.of(quote(symbol, seq, price))


def filled(capacity=100, ticks=10, epoch="ep1", start=0):
    log = EventLog(capacity)
    log.reset(epoch, start, UNIVERSE, [quote(s, start) for s in ("AAA", "BBB", "CCC")])
    for seq in range(start + 1, start + ticks + 1):
        log.append(tick(UNIVERSE[seq % 3]["symbol"], seq, price=seq))
    return log


def events(frames: bytes):
    return Parser().feed(frames)


def test_append_encodes_a_price_event_with_the_feed_id():
    log = filled(ticks=0)
    frame = log.append(tick("BBB", 1, 12.5))
    [event] = events(frame)
    assert (event.type, event.id) == ("price", "ep1-1")
    assert event.json()["price"] == 12.5 and log.head == 1


@pytest.mark.parametrize("seq", [0, 2, 5])
def test_a_tick_that_does_not_follow_the_head_is_a_gap(seq):
    log = filled(ticks=0)
    with pytest.raises(GapError):
        log.append(tick("AAA", seq))


def test_unlisted_symbol_is_refused():
    log = filled(ticks=0)
    with pytest.raises(GapError):
        log.append(tick("ZZZ", 1))


def test_replay_is_exact_and_filtered():
    log = filled(ticks=12)
    body, count = log.replay(4, ["AAA"])
    got = events(body)
    assert [e.id for e in got] == ["ep1-6", "ep1-9", "ep1-12"] and count == 3
    body, count = log.replay(4, None)
    assert [e.id for e in events(body)] == [f"ep1-{n}" for n in range(5, 13)] and count == 8
    assert log.replay(12, None) == (b"", 0)


MANY = [{"symbol": s, "name": s, "sector": "Tech"} for s in string.ascii_uppercase]


@settings(max_examples=300, deadline=None)
@given(
    capacity=st.integers(1, 40),
    ticks=st.lists(st.sampled_from(string.ascii_uppercase[:12]), max_size=150),
    backfilled=st.integers(0, 30),
    data=st.data(),
)
def test_replay_and_latest_are_what_reading_every_entry_gives(capacity, ticks, backfilled,
                                                              data):
    """However the log was filled and trimmed, and whichever way a replay finds its
    frames (every entry, or each symbol's seqs), it is every entry in between for the
    symbols asked, in order."""
    log = EventLog(capacity)
    start = backfilled
    log.reset("ep1", start, MANY, [quote(c["symbol"], start) for c in MANY])
    for seq, symbol in enumerate(ticks, start=start + 1):
        log.append(tick(symbol, seq))
    log.backfill([tick(MANY[seq % 5]["symbol"], seq) for seq in range(1, start + 1)])
    cursor = data.draw(st.integers(log.oldest, log.head), label="cursor")
    until = data.draw(st.integers(cursor, log.head + 3), label="until")
    symbols = data.draw(st.none() | st.frozensets(st.sampled_from(string.ascii_uppercase)),
                        label="symbols")
    between = [(seq, symbol, frame) for seq, symbol, frame in log.since(cursor)
               if seq <= until and (symbols is None or symbol in symbols)]
    assert log.replay(cursor, symbols, until) == (
        b"".join(frame for _, _, frame in between), len(between))
    newest = {symbol: (seq, frame) for seq, symbol, frame in between}
    kept = sorted(newest.values())
    assert log.latest(cursor, symbols, until) == (
        b"".join(frame for _, frame in kept), len(kept), len(between) - len(kept))


def test_since_gives_the_entries_after_a_cursor_and_replay_stops_where_asked():
    log = filled(ticks=30)
    assert [seq for seq, _, _ in log.since(27)] == [28, 29, 30]
    assert log.since(30) == []
    body, count = log.replay(10, frozenset({"AAA", "CCC"}), until=20)
    assert [e.id for e in events(body)] == [f"ep1-{n}" for n in range(11, 21) if n % 3 in (0, 2)]
    assert count == 7
    assert log.replay(10, None, until=10) == (b"", 0)
    assert log.replay(25, None, until=99) == log.replay(25, None)


@pytest.mark.parametrize("epoch", ["ep1", "2026-12-01-a7"], ids=["plain", "with-dashes"])
def test_a_frame_tells_its_seq(epoch):
    log = filled(ticks=12, epoch=epoch, start=100)
    assert [log.seq_of(frame) for _, _, frame in log.since(100)] == list(range(101, 113))


def test_latest_conflates_to_the_newest_frame_of_each_symbol_in_seq_order():
    log = filled(ticks=12)  # seq n is symbol n % 3: BBB, CCC, AAA, BBB, ...
    body, count, left_out = log.latest(4, None)
    assert [e.id for e in events(body)] == ["ep1-10", "ep1-11", "ep1-12"]
    assert (count, left_out) == (3, 5)
    body, count, left_out = log.latest(4, ["AAA"], until=10)
    assert [e.id for e in events(body)] == ["ep1-9"] and (count, left_out) == (1, 1)
    assert log.latest(12, None) == (b"", 0, 0)


def test_the_log_keeps_its_capacity_and_knows_what_it_covers():
    log = filled(capacity=10, ticks=100)
    assert log.oldest == 90
    assert log.covers(log.generation, 90) and not log.covers(log.generation, 89)
    assert [e.id for e in events(log.replay(95, None)[0])][0] == "ep1-96"
    assert not log.covers(log.generation - 1, 95)


def test_reset_starts_a_new_generation_that_covers_nothing_before_it():
    log = filled(ticks=10)
    generation = log.generation
    log.reset("ep2", 0, UNIVERSE, [])
    assert log.generation == generation + 1 and log.head == 0
    assert not log.covers(generation, 10)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ep1-5", 5), ("ep1-0", 0), (" ep1-5 ", 5), ("ep1-110", 110),
        ("ep1-111", None),  # further ahead than a few seconds of ticks: not waited for
        ("ep2-5", None), ("ep1-", None), ("ep1-x", None), ("ep1--5", None), ("5", None),
        ("", None), (None, None), ("ep1-\u0665", None), ("x" * 16384, None),
    ],
)
def test_parse_id(text, expected):
    assert filled(capacity=100, ticks=10).parse_id(text) == expected


def test_latest_leaves_out_the_symbols_that_come_from_elsewhere():
    log = filled(ticks=12)  # AAA at 3, 6, 9, 12; BBB at 7, 10; CCC at 5, 8, 11 (after 4)
    body, count, left_out = log.latest(4, None, skip={"AAA"})
    assert [e.id for e in events(body)] == ["ep1-10", "ep1-11"]
    assert (count, left_out) == (2, 3), "the skipped symbol's ticks are not counted"


def test_snapshot_has_latest_quotes_in_requested_order_and_the_head_id():
    log = filled(ticks=7)
    [event] = events(log.snapshot(["CCC", "AAA"], "new"))
    assert (event.type, event.id) == ("snapshot", "ep1-7")
    data = json.loads(event.data)
    assert data["reason"] == "new" and "skipped" not in data
    quotes = data["quotes"]
    assert [q["symbol"] for q in quotes] == ["CCC", "AAA"]
    assert quotes[1]["seq"] == 6 and quotes[0]["seq"] == 5
    [event] = events(log.snapshot(None, "lagging", skipped=12))
    assert len(event.json()["quotes"]) == 3
    assert (event.json()["reason"], event.json()["skipped"]) == ("lagging", 12)


def test_a_snapshot_needs_a_known_reason():
    with pytest.raises(ValueError):
        filled().snapshot(None, "because")


@pytest.mark.parametrize(("rate", "ahead"), [(0.0, 100), (20.0, 100), (50.0, 250), (1000.0, 5000)])
def test_an_id_ahead_is_waited_for_only_within_a_few_seconds_of_ticks(rate, ahead):
    log = EventLog(100_000)
    log.reset("ep1", 10, UNIVERSE, [], rate)
    assert log.ahead == ahead
    assert log.parse_id(f"ep1-{10 + ahead}") == 10 + ahead
    assert log.parse_id(f"ep1-{11 + ahead}") is None


def test_backfill_puts_older_ticks_in_front_and_replays_them_exactly():
    log = filled(capacity=100, ticks=5, start=50)  # entries 51..55, nothing before
    assert log.oldest == 50
    older = [tick(UNIVERSE[seq % 3]["symbol"], seq, price=seq) for seq in range(31, 51)]
    assert log.backfill(older) == 20
    assert log.oldest == 30 and log.covers(log.generation, 30)
    body, count = log.replay(30, None)
    assert [e.id for e in events(body)] == [f"ep1-{n}" for n in range(31, 56)] and count == 25
    assert log.quote_list(["AAA"])[0]["seq"] == 54, "the latest quotes are not touched"
    assert events(log.replay(30, None)[0])[0].data == events(log.frames(older[:1], None)[0])[0].data


def test_backfill_keeps_the_newest_that_fit_the_capacity():
    log = filled(capacity=10, ticks=4, start=100)  # 101..104
    older = [tick("AAA", seq) for seq in range(1, 101)]
    assert log.backfill(older) == 6
    assert log.oldest == 94
    assert log.backfill([tick("AAA", 93)]) == 0, "full"


@pytest.mark.parametrize(
    "seqs", [[40, 41], [45, 47, 48, 49, 50], [49, 51]],
    ids=["ends-early", "skips", "overlaps"],
)
def test_backfill_refuses_ticks_that_do_not_join_the_log(seqs):
    log = filled(capacity=100, ticks=5, start=50)
    with pytest.raises(GapError):
        log.backfill([tick("AAA", seq) for seq in seqs])
    assert log.oldest == 50
