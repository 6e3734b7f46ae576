"""SSE framing against the WHATWG parsing rules, checked by two independent parsers."""

import pytest
import sseclient as sseclient_py  # PyPI's sseclient-py
from hypothesis import given
from hypothesis import strategies as st

from tests.sse_client import Parser
from ticker.sse import SSEError, encode, encode_line


@pytest.mark.parametrize(
    ("kwargs", "wire"),
    [
        ({"data": "x"}, b"data: x\n\n"),
        ({"data": ""}, b"data: \n\n"),
        ({"data": " lead"}, b"data:  lead\n\n"),
        ({"data": "a\nb"}, b"data: a\ndata: b\n\n"),
        ({"data": "a\r\nb\rc"}, b"data: a\ndata: b\ndata: c\n\n"),
        ({"data": "a\n"}, b"data: a\ndata: \n\n"),
        ({"data": "{}", "event": "price", "id": "e-1"}, b"event: price\nid: e-1\ndata: {}\n\n"),
        ({"retry": 2000}, b"retry: 2000\n\n"),
        ({"comment": "hb"}, b": hb\n\n"),
        ({"comment": ""}, b":\n\n"),
        ({"comment": "a\nb"}, b": a\n: b\n\n"),
        ({"comment": "hb", "id": "e-9"}, b": hb\nid: e-9\n\n"),
        ({"data": "caf\u00e9"}, "data: caf\u00e9\n\n".encode()),
        ({}, b""),
    ],
)
def test_encoding_table(kwargs, wire):
    assert encode(**kwargs) == wire


@pytest.mark.parametrize(
    "kwargs",
    [
        {"data": "x", "event": "a\nb"},
        {"data": "x", "event": "a\rb"},
        {"data": "x", "id": "1\n2"},
        {"data": "x", "id": "1\r"},
        {"data": "x", "id": "1\x002"},
        {"retry": -1},
        {"retry": True},
        {"retry": 1.5},
    ],
)
def test_refuses_what_would_break_the_frame(kwargs):
    with pytest.raises(SSEError):
        encode(**kwargs)


def test_id_only_frame_sets_last_event_id_without_an_event():
    parser = Parser()
    assert parser.feed(encode(comment="heartbeat", id="e-7")) == []
    assert parser.last_event_id == "e-7"
    assert parser.comments == [" heartbeat"]
    [event] = parser.feed(encode("x", event="price"))
    assert event.id == "e-7"


text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=200)
single_line = text.filter(lambda s: "\r" not in s and "\n" not in s and "\0" not in s)


@given(data=text, event=single_line.filter(bool), id=single_line)
def test_round_trip_through_a_whatwg_parser(data, event, id):
    frame = encode(data, event=event, id=id)
    expected = data.replace("\r\n", "\n").replace("\r", "\n")
    # Feed it split at every byte boundary: a parser must not care where reads end.
    for cut in range(0, len(frame) + 1, max(1, len(frame) // 7)):
        parser = Parser()
        events = parser.feed(frame[:cut]) + parser.feed(frame[cut:])
        assert [(e.type, e.data, e.id) for e in events] == [(event, expected, id)]


@given(data=text, id=single_line)
def test_round_trip_through_sseclient_py(data, id):
    frame = encode(data, event="price", id=id)
    [event] = list(sseclient_py.SSEClient([frame]).events())
    assert event.event == "price"
    assert event.data == data.replace("\r\n", "\n").replace("\r", "\n")
    assert (event.id or "") == id


@given(data=single_line, event=single_line.filter(bool), id=single_line)
def test_a_line_of_data_is_framed_as_encode_frames_it(data, event, id):
    assert encode_line(data.encode(), event=event, id=id) == encode(data, event=event, id=id)


@pytest.mark.parametrize(
    ("data", "event", "id"),
    [(b"a\nb", "price", "e-1"), (b"a\rb", "price", "e-1"), (b"{}", "pri\nce", "e-1"),
     (b"{}", "price", "e-\r1"), (b"{}", "price", "e-\x001")],
)
def test_a_line_of_data_refuses_what_would_break_the_frame(data, event, id):
    with pytest.raises(SSEError):
        encode_line(data, event=event, id=id)
