"""The worker's pure parts (refusals, their JSON answers) and its turn-taking, in-process."""

from __future__ import annotations

import json
import ssl
import time

import gevent
import pytest
from gunicorn.http import errors as http_errors

from ticker.worker import _Turn, error_response, refusal


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (http_errors.LimitRequestLine(9000, 8190), 414),
        (http_errors.LimitRequestHeaders("limit request headers fields size"), 431),
        (http_errors.InvalidRequestLine("GET /\x01"), 400),
        (http_errors.InvalidHeader("X-A"), 400),
        (http_errors.InvalidHeaderName("X A"), 400),
        (http_errors.InvalidChunkSize(b"zz"), 400),
        (http_errors.UnsupportedTransferCoding("gzip"), 501),
        (http_errors.ExpectationFailed("200-ok"), 417),
        (http_errors.ForbiddenProxyRequest("10.0.0.1"), 403),
        (ssl.SSLError(1, "http request"), 403),
    ],
)
def test_each_refusal_has_its_status(exc, status):
    assert refusal(exc)[0] == status


@pytest.mark.parametrize(
    "exc",
    [ValueError("bug"), http_errors.InvalidResponseHeader("X-Bad"), OSError(5, "I/O error")],
)
def test_what_is_not_the_client_s_fault_is_no_refusal(exc):
    assert refusal(exc) is None


def test_a_refusal_never_quotes_the_request():
    secret = "GET /?token=abcdef" + "x" * 100
    assert "abcdef" not in refusal(http_errors.InvalidRequestLine(secret))[2]


def test_the_answer_is_complete_http_with_a_json_body():
    answer = error_response(431, "Request Header Fields Too Large", 'too "large"')
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "HTTP/1.1 431 Request Header Fields Too Large"
    assert "Content-Type: application/json" in lines and "Connection: close" in lines
    assert f"Content-Length: {len(body)}" in lines
    assert json.loads(body) == {"error": 'too "large"'}


def longest_wait_of_a_timer_beside(busy) -> float:
    """The longest a 1 ms timer loop waited for its turn while ``busy`` ran for 0.5 s."""
    beats = []

    def beat():
        while True:
            gevent.sleep(0.001)
            beats.append(time.perf_counter())

    timer = gevent.spawn(beat)
    gevent.sleep(0.01)
    started = time.perf_counter()
    gevent.spawn(busy, started + 0.5).join()
    ended = time.perf_counter()
    timer.kill()
    moments = [started, *(t for t in beats if started < t < ended), ended]
    return max(b - a for a, b in zip(moments, moments[1:], strict=False))


def spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def test_a_greedy_greenlet_that_takes_turns_lets_the_loop_run():
    turn = _Turn()

    def greedy(until):
        while time.perf_counter() < until:
            turn.take()  # as before every read of a client's bytes
            spin(0.0002)

    def rude(until):
        while time.perf_counter() < until:
            spin(0.0002)

    assert longest_wait_of_a_timer_beside(rude) > 0.4, "the control holds the loop"
    assert longest_wait_of_a_timer_beside(greedy) < 0.1
