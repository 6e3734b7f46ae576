"""The tests' own SSE client: its chunked decoding, fed a body split at every byte."""

from __future__ import annotations

import pytest

from tests.sse_client import ChunkedDecoder

BODY = b"5\r\nhello\r\n1\r\n \r\nb\r\nhello again\r\n0\r\n\r\n"


@pytest.mark.parametrize("cut", range(1, len(BODY)))
def test_a_body_split_anywhere_decodes_the_same(cut):
    decoder = ChunkedDecoder()
    out = decoder.feed(BODY[:cut]) + decoder.feed(BODY[cut:])
    assert out == b"hello hello again" and decoder.finished


def test_a_body_fed_a_byte_at_a_time_decodes_the_same():
    decoder = ChunkedDecoder()
    assert b"".join(decoder.feed(BODY[i:i + 1]) for i in range(len(BODY))) == b"hello hello again"
