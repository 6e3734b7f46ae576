"""The replay (pure): bounded by count and by age, contiguous, cut into pieces by bytes."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulator import wire
from simulator.pump import tick_line
from simulator.replay import PIECE_BYTES, Replay, pieces


def line(seq: int, symbol: str = "CARR", ts: int = 1_000) -> bytes:
    return tick_line({"symbol": symbol, "price": 10.5, "open": 10.0, "high": 11.0, "low": 9.5,
                      "change": 0.5, "change_pct": 5.0, "volume": 100 * seq, "size": 100,
                      "ts": ts, "seq": seq})


def filled(count: int, max_ticks: int = 1000, max_age_ms: int = 60_000, ts: int = 1_000):
    replay = Replay(max_ticks, max_age_ms)
    replay.extend(1, [line(seq, ts=ts) for seq in range(1, count + 1)], ts)
    return replay


@pytest.mark.parametrize("count, max_ticks, kept, oldest", [
    (0, 10, 0, 0),
    (5, 10, 5, 0),
    (10, 10, 10, 0),
    (25, 10, 10, 15),
    (25, 0, 0, 25),
])
def test_count_bound(count, max_ticks, kept, oldest):
    replay = filled(count, max_ticks)
    assert (len(replay), replay.oldest, replay.seq) == (kept, oldest, count)


@pytest.mark.parametrize("age_ms, kept", [(0, 3), (999, 3), (1_000, 3), (1_001, 1), (5_000, 1)])
def test_age_bound_against_the_newest_tick(age_ms, kept):
    replay = Replay(100, 1_000)
    replay.extend(1, [line(1), line(2)], 10_000)
    replay.extend(3, [line(3)], 10_000 + age_ms)
    assert len(replay) == kept and replay.oldest == 3 - kept


def test_trim_by_the_clock_alone():
    replay = filled(5, ts=1_000)
    replay.trim(1_000 + 60_000)
    assert len(replay) == 5
    replay.trim(1_000 + 60_001)
    assert len(replay) == 0 and replay.oldest == replay.seq == 5


def test_a_gap_starts_the_history_again():
    replay = filled(5)
    replay.extend(9, [line(9), line(10)], 2_000)
    assert (len(replay), replay.oldest, replay.seq) == (2, 8, 10)
    assert replay.between(8, 10) == [line(9), line(10)]


@pytest.mark.parametrize("after, until, seqs", [
    (0, 5, [1, 2, 3, 4, 5]),
    (2, 4, [3, 4]),
    (5, 5, []),
    (0, 0, []),
])
def test_between_is_after_exclusive_until_inclusive(after, until, seqs):
    assert filled(5).between(after, until) == [line(seq) for seq in seqs]


@pytest.mark.parametrize("after, until", [(-1, 3), (0, 6), (4, 3)])
def test_between_refuses_what_is_not_kept(after, until):
    with pytest.raises(ValueError):
        filled(5).between(after, until)


def test_entries_are_oldest_first_with_their_time():
    replay = Replay(10, 60_000)
    replay.extend(1, [line(1)], 5)
    replay.extend(2, [line(2), line(3)], 7)
    assert list(replay.entries()) == [(5, line(1)), (7, line(2)), (7, line(3))]


# Pieces -----------------------------------------------------------------------------

def decoded(piece_lines: list[bytes]) -> list[dict]:
    items = wire.Decoder().feed(b"".join(piece_lines))
    assert all(isinstance(item, dict) for item in items)
    return items


@pytest.mark.parametrize("count", [0, 1, 2, 300, 2_000])
@pytest.mark.parametrize("request_id", [None, 7, "r-1", "x" * 200])
def test_pieces_carry_every_tick_in_order_under_the_limit(count, request_id):
    lines = [line(seq, symbol="BRK.B") for seq in range(1, count + 1)]
    out = list(pieces(lines, request_id))
    assert all(len(piece) <= PIECE_BYTES and piece.endswith(b"}\n") for piece in out)
    assert all(piece.count(b"\n") == 1 for piece in out)
    messages = decoded(out)
    assert all(m["type"] == "replay" and m.get("id") == request_id for m in messages)
    ticks = [tick for m in messages for tick in m["ticks"]]
    assert ticks == [json.loads(raw) for raw in lines]
    assert len(out) == (count > 0) + sum(map(len, lines)) // PIECE_BYTES  # by bytes, not count
    assert all(len(piece) > PIECE_BYTES - max(map(len, lines)) for piece in out[:-1])


@given(st.lists(st.integers(min_value=1, max_value=80), max_size=60),
       st.integers(min_value=300, max_value=2_000))
def test_pieces_fill_up_to_any_limit(widths, limit):
    lines = [b'{"x":"' + b"a" * width + b'"}\n' for width in widths]
    out = list(pieces(lines, "id", limit))
    assert all(len(piece) <= limit for piece in out)
    assert [t for m in decoded(out) for t in m["ticks"]] == [json.loads(raw) for raw in lines]
    for piece, following in zip(out, out[1:], strict=False):
        first_of_next = json.dumps(json.loads(following)["ticks"][0], separators=(",", ":"))
        assert len(piece) + 1 + len(first_of_next) > limit  # it would not have fit


def test_a_tick_too_long_for_any_piece_is_refused():
    with pytest.raises(ValueError):
        list(pieces([b'{"x":"' + b"a" * 500 + b'"}\n'], None, limit=300))
