"""The checker behind the restart tests finds each way a client can be wrong, and only those."""

from __future__ import annotations

import json

import pytest

from tests.sequences import problems, seq_of, statuses
from tests.sse_client import Event

EPOCH = "ep1"
SYMBOLS = ["AAA", "BBB", "CCC"]
# The market's record: seq 10 to 30, the symbols in turn.
TICKS = {seq: {"symbol": SYMBOLS[seq % 3], "price": float(seq), "ts": 1000 + seq, "seq": seq}
         for seq in range(10, 31)}


def snapshot(seq: int, reason: str = "new") -> Event:
    return Event("snapshot", json.dumps({"quotes": [], "reason": reason}), f"{EPOCH}-{seq}")


def price(seq: int, **changed) -> Event:
    return Event("price", json.dumps({**TICKS[seq], **changed}), f"{EPOCH}-{seq}")


def status(feed: str) -> Event:
    return Event("status", json.dumps({"feed": feed}), "")


def check(connections, symbols=None, upto=30):
    return problems(TICKS, EPOCH, None if symbols is None else frozenset(symbols),
                    connections, upto)


def test_an_exact_resume_across_connections_passes():
    first = [snapshot(12), status("up"), *map(price, range(13, 20))]
    second = [status("up"), *map(price, range(20, 31))]
    assert check([first, second]) == []


def test_a_subscription_is_judged_on_its_own_symbols():
    mine = [s for s in range(13, 31) if TICKS[s]["symbol"] == "BBB"]
    assert check([[snapshot(12), *map(price, mine)]], symbols=["BBB"]) == []


def test_events_after_upto_are_not_owed_yet():
    assert check([[snapshot(12), *map(price, range(13, 20))]], upto=19) == []


@pytest.mark.parametrize(("connections", "wanted"), [
    ([[snapshot(12), *map(price, range(13, 20))], [*map(price, range(22, 31))]],
     "missed 2 of 18 price events: seqs 20, 21"),
    ([[snapshot(12), *map(price, range(13, 21))], [*map(price, range(20, 31))]],
     "1 price events came more than once: seqs 20"),
    ([[snapshot(12), *map(price, range(13, 20))], [snapshot(19, "restart"),
                                                    *map(price, range(20, 31))]],
     "a snapshot (reason: restart) on reconnect 1, id ep1-19"),
    ([[snapshot(12), price(14), price(13), *map(price, range(15, 31))]],
     "id ep1-13 does not follow ep1-14"),
    ([[snapshot(12), *map(price, range(13, 30)), price(30, price=1.5)]],
     "seq 30 carries"),
    ([[snapshot(12), *map(price, range(13, 31)), Event("price", json.dumps(TICKS[30]),
                                                       "other-30")]],
     "price id 'other-30' does not name its quote's seq 30"),
    ([[status("up"), *map(price, range(13, 31))]],
     "its first connection did not start with a snapshot"),
    ([[snapshot(12), *map(price, range(13, 31))]], None),
], ids=["gap", "duplicate", "snapshot-on-resume", "out-of-order", "altered", "foreign-id",
        "no-first-snapshot", "exact"])
def test_each_fault_is_named(connections, wanted):
    found = check(connections)
    if wanted is None:
        assert found == []
    else:
        assert any(problem.startswith(wanted) for problem in found), found


def test_events_of_other_symbols_are_named():
    found = check([[snapshot(12), *map(price, range(13, 31))]], symbols=["AAA"])
    assert found == ["12 price events it did not subscribe to: seqs 13, 14, 16, 17, 19, 20, "
                     "22, 23 and 4 more"]


def test_a_hole_in_the_reference_is_an_error_not_a_verdict():
    holed = {seq: tick for seq, tick in TICKS.items() if seq != 20}
    with pytest.raises(ValueError, match="holes: 20"):
        problems(holed, EPOCH, None, [[snapshot(12)]], 30)


def test_seq_of_and_statuses():
    assert [seq_of(i) for i in ("ab12-7", "a-b-30", "7", "x-", "x-1e3")] == [7, 30, None, None,
                                                                             None]
    assert statuses([[status("up"), price(13)], [status("down"), status("up")]]) == \
        ["up", "down", "up"]
