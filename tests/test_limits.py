"""Limits with the real gunicorn: streams per client address, and request sizes."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
import time

import pytest

from tests.servers import ROOT, free_port, run_gunicorn
from tests.sse_client import SSEClient
from ticker.config import Config, ConfigError


def stream_status_from(server, source: str) -> tuple[int, str | None]:
    """Status and content type of a stream opened from another loopback address."""
    connection = http.client.HTTPConnection(
        "127.0.0.1", server.port, timeout=10, source_address=(source, 0))
    try:
        connection.request("GET", "/stream")
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type")
    finally:
        connection.close()


def test_one_client_address_holds_at_most_its_share(tmp_path, market):
    env = {"TICKER_MAX_STREAMS_PER_CLIENT": "2"}
    with run_gunicorn(tmp_path, market.feed, workers=1, env=env) as server:
        held = [SSEClient(server.url, path) for path in ("/stream", "/stream?symbols=")]
        opened = []
        try:
            assert [client.status for client in held] == [200, 200]
            refused = SSEClient(server.url, "/stream")
            opened.append(refused)
            assert refused.status == 503
            assert int(refused.headers["Retry-After"]) > 0
            assert "client" in json.loads(refused.body())["error"]
            symbol = json.loads(server.get("/api/symbols")[2])[0]["symbol"]
            one = SSEClient(server.url, f"/stream/{symbol}")
            opened.append(one)
            assert one.status == 503, "every stream route counts"
            assert server.get("/api/symbols")[0] == 200, "only streams are counted"

            # Another address is another client.
            assert stream_status_from(server, "127.0.0.2") == (200, "text/event-stream")

            # A closed stream gives its place back (the server sees the close on its next
            # write, within a tick or a heartbeat).
            held.pop().close()
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                again = SSEClient(server.url, "/stream")
                opened.append(again)
                if again.status == 200:
                    break
                time.sleep(0.2)
            assert again.status == 200
            assert again.next(type="snapshot")
            opened.append(SSEClient(server.url, "/stream"))
            assert opened[-1].status == 503, "and only that place"
        finally:
            for client in held + opened:
                client.close()
        assert "Traceback" not in server.output()


def raw_status(server, request: bytes) -> int:
    """The status gunicorn answers a hand-made request with."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(request)
        head = b""
        while b"\r\n" not in head:
            data = sock.recv(4096)
            if not data:
                break
            head += data
    return int(head.split()[1])


def get(path: str, *headers: str) -> bytes:
    return "\r\n".join([f"GET {path} HTTP/1.1", "Host: x", *headers, "", ""]).encode()


def test_request_size_limits_come_from_the_environment(tmp_path, market):
    env = {
        "TICKER_LIMIT_REQUEST_LINE": "2048",
        "TICKER_LIMIT_REQUEST_FIELDS": "20",
        "TICKER_LIMIT_REQUEST_FIELD_SIZE": "1024",
    }
    with run_gunicorn(tmp_path, market.feed, workers=1, env=env) as server:
        assert raw_status(server, get("/healthz", "X-A: " + "a" * 900)) == 200
        assert raw_status(server, get("/healthz?x=" + "a" * 3000)) == 414
        assert raw_status(server, get("/healthz", *(f"X-{i}: 1" for i in range(25)))) == 431
        assert raw_status(server, get("/healthz", "X-A: " + "a" * 2000)) == 431


def raw_answer(server, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of gunicorn's answer to a hand-made request."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while data := sock.recv(65536):
            answer += data
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in
               (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, body


def test_by_default_a_4_kib_last_event_id_fits_in_the_query_and_the_header(server):
    for client in (SSEClient(server.url, "/stream?lastEventId=" + "x" * 4096),
                   SSEClient(server.url, "/stream", last_event_id="x" * 4096)):
        with client:
            assert client.status == 200
            assert client.next().type == "snapshot"


@pytest.mark.parametrize(
    ("request_bytes", "status", "words"),
    [
        (get("/healthz?x=" + "a" * 8200), 414, "request line too long (limit 8190 bytes)"),
        (get("/healthz", "X-A: " + "a" * 8200), 431, "header fields too large"),
        (get("/healthz", *(f"X-{i}: 1" for i in range(101))), 431, "too many"),
        (b"GET /healthz\x01 HTTP/1.1\r\nHost: x\r\n\r\n", 400, "malformed request line"),
        (b"GET /healthz HTTP/1.1\r\nHost x\r\n\r\n", 400, "malformed header"),
    ],
    ids=["long-line", "long-header", "many-headers", "bad-line", "bad-header"],
)
def test_what_gunicorn_refuses_is_answered_in_json_with_one_log_line(
        tmp_path, market, request_bytes, status, words):
    with run_gunicorn(tmp_path, market.feed, workers=1) as server:
        answer = raw_answer(server, request_bytes)
        assert answer[0] == status
        assert answer[1]["content-type"] == "application/json"
        assert words in json.loads(answer[2])["error"]
        assert int(answer[1]["content-length"]) == len(answer[2])
        deadline = time.monotonic() + 5
        while "Invalid request" not in server.output() and time.monotonic() < deadline:
            time.sleep(0.05)
        [line] = [line for line in server.output().splitlines() if "Invalid request" in line]
        assert len(line) < 400 and "a" * 300 not in line
        assert server.get("/healthz")[0] == 200, "and the worker serves on"
        assert "Traceback" not in server.output()


def test_gunicorn_refuses_to_start_with_http2():
    done = subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py",
         "--bind", f"127.0.0.1:{free_port()}", "--http-protocols", "h1,h2"],
        cwd=ROOT, env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=30,
    )
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and "HTTP/1.1 only" in errors[0] and "http_protocols" in errors[0]
    assert "Traceback" not in done.stderr
    assert "Booting worker" not in done.stderr


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("TICKER_LIMIT_REQUEST_LINE", "9000", "at most 8190"),
        ("TICKER_LIMIT_REQUEST_LINE", "0", "endless request line"),
        ("TICKER_LIMIT_REQUEST_LINE", "big", "whole number"),
        ("TICKER_LIMIT_REQUEST_FIELD_SIZE", "0", "at least 1"),
        ("TICKER_LIMIT_REQUEST_FIELDS", "-3", "whole number"),
        ("TICKER_TLS_KEY", "/nonexistent/key.pem", "TICKER_TLS_CERT"),
    ],
)
def test_a_bad_server_setting_stops_gunicorn_with_one_line(name, value, reason):
    done = subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py",
         "--bind", f"127.0.0.1:{free_port()}"],
        cwd=ROOT, env={"PATH": "/usr/bin:/bin", name: value},
        capture_output=True, text=True, timeout=30,
    )
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and reason in done.stderr and name in done.stderr


@pytest.mark.parametrize("value", ["0", "-1", "many"])
def test_the_per_client_limit_is_checked(value):
    with pytest.raises(ConfigError, match="TICKER_MAX_STREAMS_PER_CLIENT"):
        Config.load(environ={"TICKER_MAX_STREAMS_PER_CLIENT": value})
