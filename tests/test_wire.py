"""The feed protocol, sans-IO: the decoder at every split, request parsing, the encoder."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulator import wire
from simulator.pump import tick_line
from simulator.wire import (
    MAX_LINE,
    AuthRequest,
    Decoder,
    InjectRequest,
    ReplayRequest,
    SymbolsRequest,
    WireError,
)

STREAM = (
    b'{"op":"symbols"}\n'
    b'not json\n'
    b'{"op":"inject","symbol":"CARR","price":12.5,"id":7}\r\n'
    b'\n'
    b'\xff\xfe\n'
    b'{"price":NaN}\n'
    b'[1,2]\n'
    b'{"name":"caf\xc3\xa9"}\n'
)
EXPECTED = [
    {"op": "symbols"},
    "line is not JSON",
    {"op": "inject", "symbol": "CARR", "price": 12.5, "id": 7},
    "line is not UTF-8",
    "not JSON: NaN is not allowed",
    "line is not a JSON object",
    {"name": "café"},
]


def plain(items: list) -> list:
    """Items with errors as their reasons, so lists compare."""
    return [str(item) if isinstance(item, WireError) else item for item in items]


def test_whole_stream_decodes_line_by_line():
    assert plain(Decoder().feed(STREAM)) == EXPECTED


@pytest.mark.parametrize("cut", range(len(STREAM) + 1))
def test_split_at_every_byte_gives_the_same_items(cut):
    decoder = Decoder()
    assert plain(decoder.feed(STREAM[:cut]) + decoder.feed(STREAM[cut:])) == EXPECTED


def test_one_byte_at_a_time_gives_the_same_items():
    decoder = Decoder()
    items = [item for i in range(len(STREAM)) for item in decoder.feed(STREAM[i:i + 1])]
    assert plain(items) == EXPECTED


def test_partial_line_waits_for_its_newline():
    decoder = Decoder()
    assert decoder.feed(b'{"op":"sym') == []
    assert decoder.feed(b'bols"}') == []
    assert decoder.feed(b"\n") == [{"op": "symbols"}]


def test_crlf_and_blank_lines():
    assert Decoder().feed(b'{"a":1}\r\n\r\n  \n\t\n{"b":2}\n') == [{"a": 1}, {"b": 2}]


def long_line(size: int) -> bytes:
    """A valid JSON object line of exactly ``size`` bytes before its newline."""
    return b'{"x":"' + b"a" * (size - 8) + b'"}'


def test_line_of_exactly_max_line_is_accepted():
    line = long_line(MAX_LINE)
    assert len(line) == MAX_LINE
    assert Decoder().feed(line + b"\n") == [json.loads(line)]


@pytest.mark.parametrize("chunk", [MAX_LINE + 1, 4096, 1])
def test_over_long_line_is_reported_once_and_the_next_line_survives(chunk):
    data = long_line(MAX_LINE + 1) + b'\n{"op":"symbols"}\n'
    decoder = Decoder()
    items = []
    for start in range(0, len(data), chunk):
        items += decoder.feed(data[start:start + chunk])
    assert plain(items) == [f"line longer than {MAX_LINE} bytes", {"op": "symbols"}]


def test_over_long_line_is_never_held_whole():
    decoder = Decoder()
    for _ in range(10):
        decoder.feed(b"x" * MAX_LINE)
    assert len(decoder._partial) <= MAX_LINE


@pytest.mark.parametrize("line, reason", [
    (b"NaN", "NaN is not allowed"),
    (b'{"p":Infinity}', "Infinity is not allowed"),
    (b'{"p":-Infinity}', "-Infinity is not allowed"),
    (b'"text"', "not a JSON object"),
    (b"42", "not a JSON object"),
    (b"null", "not a JSON object"),
    (b"{", "not JSON"),
    (b"\x00\x01\x02", "not JSON"),
    (b"\xc3\x28", "not UTF-8"),
    (b"[" * 100_000, "longer than"),
    (b"[" * 30_000 + b"]" * 30_000, "not JSON"),  # nested too deep
])
def test_garbage_lines_are_errors(line, reason):
    [item] = Decoder().feed(line + b"\n")
    assert isinstance(item, WireError)
    assert reason in str(item)


@given(st.lists(st.binary(max_size=200), max_size=20))
def test_arbitrary_bytes_never_raise(chunks):
    decoder = Decoder()
    for chunk in chunks:
        for item in decoder.feed(chunk):
            assert isinstance(item, dict | WireError)


scalars = (st.none() | st.booleans() | st.integers()
           | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20))
messages = st.lists(
    st.dictionaries(st.text(max_size=8), scalars | st.lists(scalars, max_size=3), max_size=5),
    max_size=6,
)


@given(messages, st.lists(st.integers(min_value=0, max_value=10_000), max_size=10))
def test_good_lines_survive_any_chunking(sent, cuts):
    data = b"".join(wire.encode(message) for message in sent)
    bounds = [0, *sorted(cut % (len(data) + 1) for cut in cuts), len(data)]
    decoder = Decoder()
    received = [item for a, b in zip(bounds, bounds[1:], strict=False)
                for item in decoder.feed(data[a:b])]
    assert received == sent


# Encoding -------------------------------------------------------------------------

def test_encode_is_one_compact_line():
    assert wire.encode({"a": [1, 2.5], "b": "é\n"}) == b'{"a":[1,2.5],"b":"\\u00e9\\n"}\n'


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_encode_refuses_non_finite_numbers(value):
    with pytest.raises(ValueError):
        wire.encode({"price": value})


def test_messages_have_their_type_and_fields():
    assert wire.hello("e1", 3, [], 20.0) == {
        "type": "hello", "epoch": "e1", "seq": 3, "oldest": 3, "rate": 20.0, "count": 0,
        "universe": []}
    assert wire.hello("e1", 9, [], 20.0, oldest=4)["oldest"] == 4
    assert wire.snapshot(3, []) == {"type": "snapshot", "seq": 3, "count": 0, "quotes": []}
    assert wire.tick({"symbol": "A"}) == {"type": "tick", "symbol": "A"}
    assert wire.reply(None, universe=[]) == {"type": "reply", "universe": []}
    assert wire.error("bad", 9) == {"type": "error", "error": "bad", "id": 9}


# Messages in pieces ---------------------------------------------------------------

def listing(count: int) -> list[dict]:
    return [{"symbol": f"S{i}", "name": f"Company number {i} Inc", "sector": "Energy"}
            for i in range(count)]


def quote(i: int) -> dict:
    return {"symbol": f"S{i}", "price": 123.45, "open": 120.5, "high": 125.25, "low": 119.75,
            "change": 2.95, "change_pct": 2.45, "volume": 1_234_500, "size": 300,
            "ts": 1_800_000_000_000, "seq": 1_234_567 + i}


def reassemble(lines: list[bytes], key: str) -> tuple[dict, list[dict]]:
    """The first line's message and every piece after it, checked for shape."""
    decoded = [item for line in lines for item in Decoder().feed(line)]
    assert len(decoded) == len(lines) and all(isinstance(item, dict) for item in decoded)
    first, *pieces = decoded
    assert wire.missing(first, key) == sum(len(piece[key]) for piece in pieces)
    return first, pieces


@pytest.mark.parametrize("count", [0, 1, 50, 250])
def test_a_small_market_is_one_line_each(count):
    hello = wire.hello("e1", 7, listing(count), 20.0)
    snapshot = wire.snapshot(7, [quote(i) for i in range(count)])
    assert wire.split(hello, {"type": "universe"}) == [wire.encode(hello)]
    assert wire.split(snapshot, {"type": "quotes"}) == [wire.encode(snapshot)]
    assert wire.symbols_reply(3, listing(count)) == [wire.encode(
        {"type": "reply", "id": 3, "count": count, "universe": listing(count)})]


@pytest.mark.parametrize("count", [1000, 2000, 10_000])
def test_a_large_market_comes_in_pieces_under_the_line_limit(count):
    listed, quotes = listing(count), [quote(i) for i in range(count)]
    for lines, key, kind, items in [
        (wire.split(wire.hello("e1", 7, listed, 20.0), {"type": "universe"}),
         "universe", "universe", listed),
        (wire.split(wire.snapshot(7, quotes), {"type": "quotes"}), "quotes", "quotes", quotes),
        (wire.symbols_reply("s", listed), "universe", "universe", listed),
    ]:
        assert len(lines) > 1
        assert all(len(line) <= MAX_LINE and line.count(b"\n") == 1 for line in lines)
        assert all(len(line) > MAX_LINE - 400 for line in lines[:-1])  # each piece full
        first, pieces = reassemble(lines, key)
        assert first["count"] == count
        assert first[key] + [item for piece in pieces for item in piece[key]] == items
        assert all(piece["type"] == kind and len(piece) == 2 + ("id" in first)
                   for piece in pieces)
    assert [piece["id"] for piece in reassemble(lines, "universe")[1]] == ["s"] * (len(lines) - 1)


def test_the_first_line_keeps_the_message_fields_in_order():
    hello = wire.hello("e1", 7, listing(3000), 20.0, oldest=2)
    first = json.loads(wire.split(hello, {"type": "universe"})[0])
    assert list(first) == ["type", "epoch", "seq", "oldest", "rate", "count", "universe"]
    assert (first["epoch"], first["seq"], first["oldest"], first["count"]) == ("e1", 7, 2, 3000)
    reply = json.loads(wire.symbols_reply(5, listing(3000))[0])
    assert list(reply) == ["type", "id", "count", "universe"]


@given(st.lists(st.text(alphabet="ab \"\\é\n", max_size=20), max_size=60),
       st.integers(min_value=300, max_value=900))
def test_pieces_hold_every_item_at_any_limit(names, limit):
    listed = [{"symbol": "A", "name": name} for name in names]
    lines = wire.split(wire.hello("e1", 1, listed, 1.0), {"type": "universe"}, limit=limit)
    assert all(len(line) <= limit for line in lines)
    first, pieces = reassemble(lines, "universe")
    assert first["universe"] + [c for piece in pieces for c in piece["universe"]] == listed


def test_a_first_line_too_full_for_an_item_holds_none():
    listed = [{"symbol": "A", "name": "x" * 60}] * 3
    lines = wire.split(wire.hello("e1", 1, listed, 1.0), {"type": "universe"}, limit=120)
    first, pieces = reassemble(lines, "universe")
    assert first["universe"] == [] and first["count"] == 3
    assert [piece["universe"] for piece in pieces] == [[listed[0]]] * 3


def test_an_item_too_long_for_any_line_is_refused():
    with pytest.raises(ValueError, match="does not fit"):
        wire.split(wire.snapshot(1, [quote(1)]), {"type": "quotes"}, limit=100)


@pytest.mark.parametrize("message, left", [
    ({"universe": [1, 2]}, 0),
    ({"universe": [1, 2], "count": 2}, 0),
    ({"universe": [1, 2], "count": 10}, 8),
])
def test_missing_counts_what_the_pieces_still_owe(message, left):
    assert wire.missing(message, "universe") == left


@pytest.mark.parametrize("message, reason", [
    ({"type": "hello"}, "hello has no universe"),
    ({"universe": {}}, "has no universe"),
    ({"universe": [1, 2], "count": 1}, "count must be an integer, at least the 2"),
    ({"universe": [], "count": True}, "count must be an integer"),
    ({"universe": [], "count": 2.5}, "count must be an integer"),
])
def test_missing_refuses_a_bad_count(message, reason):
    with pytest.raises(WireError, match=reason):
        wire.missing(message, "universe")


# Requests -------------------------------------------------------------------------

@pytest.mark.parametrize("message, request_", [
    ({"op": "symbols"}, SymbolsRequest()),
    ({"op": "symbols", "id": "x"}, SymbolsRequest("x")),
    ({"op": "inject", "symbol": "CARR", "price": 12.5}, InjectRequest("CARR", 12.5)),
    ({"op": "inject", "symbol": "CARR", "price": 3, "id": 1}, InjectRequest("CARR", 3.0, 1)),
    ({"op": "inject", "symbol": "CARR", "price": 1e-9}, InjectRequest("CARR", 1e-9)),
    ({"op": "symbols", "id": 2.5}, SymbolsRequest(2.5)),
    ({"op": "auth", "secret": "s"}, AuthRequest("s")),
    ({"op": "replay", "after": 0}, ReplayRequest(0)),
    ({"op": "replay", "after": 5, "id": "r"}, ReplayRequest(5, None, "r")),
    ({"op": "replay", "after": 5, "until": 5}, ReplayRequest(5, 5)),
    ({"op": "replay", "after": 5, "until": None}, ReplayRequest(5)),
    ({"op": "replay", "after": 5, "until": 9, "id": 1}, ReplayRequest(5, 9, 1)),
])
def test_good_requests(message, request_):
    assert wire.parse_request(message) == request_


@pytest.mark.parametrize("message, reason", [
    ({}, "request has no op"),
    ({"op": "sell"}, "unknown op 'sell'"),
    ({"op": 1}, "unknown op '1'"),
    ({"op": "inject", "price": 5}, "inject needs a symbol"),
    ({"op": "inject", "symbol": "", "price": 5}, "inject needs a symbol"),
    ({"op": "inject", "symbol": 5, "price": 5}, "inject needs a symbol"),
    ({"op": "inject", "symbol": "CARR"}, "price must be a number"),
    ({"op": "inject", "symbol": "CARR", "price": "5"}, "price must be a number"),
    ({"op": "inject", "symbol": "CARR", "price": True}, "price must be a number"),
    ({"op": "inject", "symbol": "CARR", "price": -5}, "finite positive"),
    ({"op": "inject", "symbol": "CARR", "price": 0}, "finite positive"),
    ({"op": "inject", "symbol": "CARR", "price": math.inf}, "finite positive"),
    ({"op": "inject", "symbol": "CARR", "price": math.nan}, "finite positive"),
    ({"op": "symbols", "id": True}, "id must be"),
    ({"op": "symbols", "id": [1]}, "id must be"),
    ({"op": "auth"}, "auth needs a secret"),
    ({"op": "replay"}, "after must be a non-negative integer"),
    ({"op": "replay", "after": -1}, "after must be a non-negative integer"),
    ({"op": "replay", "after": 1.5}, "after must be a non-negative integer"),
    ({"op": "replay", "after": "3"}, "after must be a non-negative integer"),
    ({"op": "replay", "after": True}, "after must be a non-negative integer"),
    ({"op": "replay", "after": 3, "until": -2}, "until must be a non-negative integer"),
    ({"op": "replay", "after": 3, "until": 2}, "until must not be below after"),
    ({"op": "replay", "after": 3, "id": "x" * 300}, "replay's id must be at most 256"),
])
def test_bad_requests(message, reason):
    with pytest.raises(WireError, match=reason):
        wire.parse_request(message)


@pytest.mark.parametrize("symbol, ok", [
    ("A", True), ("BRK.B", True), ("ABCDEFGHIJ", True), ("ABCDEFGHIJK", False),
    ("a", False), ("1A", False), (".A", False), ("A-B", False), ("", False), ("CARR\n", False),
])
def test_symbol_syntax(symbol, ok):
    assert bool(wire.SYMBOL_RE.match(symbol)) is ok


def test_regression_infinite_id_is_refused_before_it_breaks_the_reply():
    [message] = Decoder().feed(b'{"op":"symbols","id":1e999}\n')
    with pytest.raises(WireError, match="id must be"):
        wire.parse_request(message)


def test_regression_huge_integer_price_is_a_wire_error():
    [message] = Decoder().feed(b'{"op":"inject","symbol":"A","price":1' + b"0" * 400 + b"}\n")
    with pytest.raises(WireError, match="price"):
        wire.parse_request(message)


def test_regression_huge_integer_in_a_quote_is_a_wire_error():
    quote = {"symbol": "A", "price": 1.0, "open": 10 ** 400}
    with pytest.raises(WireError, match="open must be a finite number"):
        wire.parse_quote(quote)


# Ticks read without JSON (``read_tick``) agree with the general path -------------------

finite = st.floats(allow_nan=False, allow_infinity=False)
counts = st.integers(min_value=0, max_value=10**18)
quote_fields = {
    "symbol": st.from_regex(r"[A-Z][A-Z0-9.]{0,9}", fullmatch=True),
    "price": st.floats(min_value=5e-324, allow_infinity=False),
    "open": finite, "high": finite, "low": finite, "change": finite, "change_pct": finite,
    "volume": counts, "size": counts, "ts": counts, "seq": counts,
}
market_quotes = st.fixed_dictionaries(quote_fields)
# Prices a market shows (drawn in range: filtering the whole range fails Hypothesis's checks).
plain_quotes = st.fixed_dictionaries({**quote_fields, "price": st.floats(
    min_value=1e-4, max_value=1e6, exclude_min=True, exclude_max=True)})


def general(line: bytes) -> wire.Tick | WireError:
    """What the general path makes of a line: ``json.loads``, then ``parse_quote``."""
    [item] = Decoder().feed(line + b"\n")
    if isinstance(item, WireError):
        return item
    try:
        return wire.parse_tick(item)
    except WireError as exc:
        return exc


@given(quote=market_quotes)
def test_a_market_tick_line_is_read_as_the_general_path_reads_it(quote):
    line = tick_line(quote)[:-1]
    fast = wire.read_tick(line)
    slow = general(line)
    assert isinstance(slow, wire.Tick)
    if fast is not None:  # a number too long for the fast path goes the general way
        assert (fast.symbol, fast.seq, fast.ts, fast.data) == (
            slow.symbol, slow.seq, slow.ts, slow.data)


@given(quote=plain_quotes, at=st.data())
def test_a_damaged_tick_line_is_read_fast_only_when_the_general_path_agrees(quote, at):
    line = bytearray(tick_line(quote)[:-1])
    position = at.draw(st.integers(0, len(line) - 1))
    line[position:position + 1] = at.draw(st.sampled_from(
        [b"", b"-", b"0", b"9", b".", b"e", b"E", b"+", b",", b'"', b" ", b"a", b"}", b"00"]))
    fast, slow = wire.read_tick(bytes(line)), general(bytes(line))
    if fast is not None:
        assert isinstance(slow, wire.Tick), "the fast path took a line the general one refuses"
        assert fast.quote() == slow.quote() and (fast.seq, fast.ts) == (slow.seq, slow.ts)


@pytest.mark.parametrize("price", ["0", "0.0", "-1.5", "1e999", "NaN", "Infinity", '"1"', "true"])
def test_a_tick_without_a_finite_positive_price_is_refused_with_its_reason(price):
    line = (b'{"type":"tick","symbol":"AB","price":%s,"open":1.0,"high":1.0,"low":1.0,'
            b'"change":0.0,"change_pct":0.0,"volume":1,"size":1,"ts":1,"seq":1}' % price.encode())
    assert wire.read_tick(line) is None
    assert isinstance(general(line), WireError)
    [item] = Decoder(ticks=True).feed(line + b"\n")
    assert not isinstance(item, wire.Tick)


def test_a_decoder_for_ticks_reads_tick_lines_as_ticks_and_the_rest_as_before():
    quote = {"symbol": "AB", "price": 12.5, "open": 12.0, "high": 13.0, "low": 11.5,
             "change": 0.5, "change_pct": 4.17, "volume": 100, "size": 100, "ts": 7, "seq": 3}
    line = tick_line(quote)
    items = Decoder(ticks=True).feed(line + b'{"type":"hello"}\n' + line.replace(b",", b", "))
    assert [type(item) for item in items] == [wire.Tick, dict, dict]
    first = items[0]
    assert first.quote() == quote and (first.symbol, first.seq, first.ts) == ("AB", 3, 7)
    assert wire.parse_tick(items[2]).data == first.data, "the same tick, however it was written"
