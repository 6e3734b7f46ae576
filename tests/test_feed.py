"""The feed reader's handling of messages, fed by hand: hello and snapshot in pieces."""

from __future__ import annotations

import pytest

from ticker.eventlog import EventLog
from ticker.feed import FeedReader
from ticker.sources import FeedLost

COMPANIES = [{"symbol": f"S{n}", "name": f"Company {n}", "sector": "Tech"} for n in range(5)]


def quote(symbol: str, seq: int) -> dict:
    return {"symbol": symbol, "price": 10.0, "open": 10.0, "high": 10.0, "low": 10.0,
            "change": 0.0, "change_pct": 0.0, "volume": 0, "size": 0, "ts": 1, "seq": seq}


def reader() -> FeedReader:
    changes = []
    feed = FeedReader("unix:/nonexistent/feed.sock", EventLog(100), lambda: changes.append(1))
    return feed


def hello(universe, count=None) -> dict:
    message = {"type": "hello", "epoch": "ep1", "seq": 7, "oldest": 7, "rate": 20.0,
               "universe": universe}
    if count is not None:
        message["count"] = count
    return message


@pytest.mark.parametrize("split", [5, 1, 2], ids=["one-line", "one-per-line", "uneven"])
def test_a_hello_and_a_snapshot_in_pieces_make_one_market(split):
    feed = reader()
    pieces = [COMPANIES[i:i + split] for i in range(0, 5, split)]
    feed.apply(hello(pieces[0], count=5))
    for piece in pieces[1:]:
        feed.apply({"type": "universe", "universe": piece})
    quotes = [quote(c["symbol"], 0) for c in COMPANIES]
    chunks = [quotes[i:i + split] for i in range(0, 5, split)]
    feed.apply({"type": "snapshot", "seq": 7, "count": 5, "quotes": chunks[0]})
    assert feed.log.epoch is None or len(chunks) == 1, "not applied before the last piece"
    for chunk in chunks[1:]:
        feed.apply({"type": "quotes", "quotes": chunk})
    assert list(feed.log.universe) == [c["symbol"] for c in COMPANIES]
    assert len(feed.log.quote_list(None)) == 5 and feed.log.head == 7 and feed.log.feed_up
    feed.apply({"type": "tick", **quote("S3", 8)})
    assert feed.log.head == 8


def test_a_hello_without_count_is_whole_as_it_is():
    feed = reader()
    feed.apply(hello(COMPANIES))
    feed.apply({"type": "snapshot", "seq": 7, "quotes": []})
    assert feed.log.epoch == "ep1" and feed.ready.is_set()


@pytest.mark.parametrize(
    "messages",
    [
        [hello(COMPANIES[:2], count=5), {"type": "snapshot", "seq": 7, "quotes": []}],
        [{"type": "quotes", "quotes": []}],
        [{"type": "universe", "universe": COMPANIES}],
        [hello(COMPANIES), {"type": "tick", **quote("S1", 8)}],
    ],
    ids=["snapshot-before-the-whole-hello", "quotes-out-of-place", "universe-out-of-place",
         "tick-before-snapshot"],
)
def test_pieces_out_of_order_end_the_connection(messages):
    feed = reader()
    with pytest.raises(FeedLost):
        for message in messages:
            feed.apply(message)


def test_a_count_smaller_than_the_first_piece_is_a_bad_message():
    feed = reader()
    feed.apply(hello(COMPANIES, count=2))
    assert feed._hello is None, "refused (and logged), not taken"
