"""A small SSE client for tests: a WHATWG-exact parser over a plain HTTP connection.

Written from the standard's parsing rules, not from the server's encoder, so the tests
check the bytes on the wire the way a browser reads them.
"""

from __future__ import annotations

import http.client
import json
import re
import select
import socket
import ssl
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

_LINE_END = re.compile(rb"[\r\n]")


@dataclass
class Event:
    type: str
    data: str
    id: str

    def json(self):
        return json.loads(self.data)


@dataclass
class Parser:
    """The event-stream interpretation algorithm, fed bytes in arbitrary pieces."""

    last_event_id: str = ""
    retry: int | None = None
    comments: list[str] = field(default_factory=list)
    _buffer: bytes = b""
    _data: list[str] = field(default_factory=list)
    _type: str = ""
    _id_buffer: str = ""
    _first_line: bool = True
    _pending_cr: bool = False

    def __post_init__(self) -> None:
        self._id_buffer = self.last_event_id

    def feed(self, chunk: bytes) -> list[Event]:
        events: list[Event] = []
        self._buffer += chunk
        while True:
            found = _LINE_END.search(self._buffer)
            if found is None:
                return events
            cut = found.start()
            ending = self._buffer[cut]
            line = self._buffer[:cut]
            rest = self._buffer[cut + 1:]
            if self._pending_cr and cut == 0 and ending == 0x0A:
                # the LF of a CRLF whose CR ended the previous line
                self._pending_cr = False
                self._buffer = rest
                continue
            self._pending_cr = ending == 0x0D
            self._buffer = rest
            text = line.decode("utf-8", errors="replace")
            if self._first_line:
                self._first_line = False
                text = text.removeprefix("\ufeff")
            event = self._line(text)
            if event is not None:
                events.append(event)

    def _line(self, line: str) -> Event | None:
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            self.comments.append(line[1:])
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._type = value
        elif name == "data":
            self._data.append(value)
        elif name == "id":
            if "\0" not in value:
                self._id_buffer = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self.retry = int(value)
        return None

    def _dispatch(self) -> Event | None:
        self.last_event_id = self._id_buffer
        if not self._data:
            self._type = ""
            return None
        event = Event(self._type or "message", "\n".join(self._data), self.last_event_id)
        self._data = []
        self._type = ""
        return event


class ChunkedDecoder:
    """HTTP/1.1 chunked transfer decoding, fed bytes in arbitrary pieces."""

    def __init__(self) -> None:
        self._buffer = b""
        self._left = 0  # bytes of the current chunk still to come, then its CRLF
        self.finished = False

    def feed(self, data: bytes) -> bytes:
        self._buffer += data
        out = []
        while not self.finished:
            if self._left > 0:
                take = self._buffer[: self._left]
                out.append(take)
                self._left -= len(take)
                self._buffer = self._buffer[len(take):]
                if self._left:
                    break
                self._left = -2
            if self._left == -2:
                if len(self._buffer) < 2:
                    break
                assert self._buffer[:2] == b"\r\n", "chunk not followed by CRLF"
                self._buffer = self._buffer[2:]
                self._left = 0
            line_end = self._buffer.find(b"\r\n")
            if line_end < 0:
                break
            size = int(self._buffer[:line_end].split(b";")[0], 16)
            self._buffer = self._buffer[line_end + 2:]
            if size == 0:
                self.finished = True
            else:
                self._left = size
        return b"".join(out)


class SSEClient:
    """One open stream: ``GET`` with optional ``Last-Event-ID``, then events as they come.

    Speaks HTTP/1.1 over a plain socket (TLS-wrapped with ``ssl_context``), so a read that
    times out can simply be tried again, and the end of the stream (last chunk, or the
    server closing) is seen exactly.
    """

    def __init__(self, base_url: str, path: str, last_event_id: str | None = None,
                 timeout: float = 10.0, headers: dict | None = None,
                 ssl_context: ssl.SSLContext | None = None,
                 receive_buffer: int | None = None) -> None:
        parts = urlsplit(base_url)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        if receive_buffer is not None:
            # A slow link: a small window, sized before connecting, and the segments of a
            # real network (loopback's are 64 KiB, more than such a window holds).
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 1448)
        self.sock.connect((parts.hostname, parts.port))
        if ssl_context is not None:
            self.sock = ssl_context.wrap_socket(self.sock, server_hostname=parts.hostname)
        sent = {"Host": parts.netloc, "Accept": "text/event-stream", **(headers or {})}
        if last_event_id is not None:
            sent["Last-Event-ID"] = last_event_id
        lines = [f"GET {path} HTTP/1.1", *(f"{k}: {v}" for k, v in sent.items()), "", ""]
        self.sock.sendall("\r\n".join(lines).encode())
        head = b""
        while b"\r\n\r\n" not in head:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError("connection closed before the response headers")
            head += data
        head, _, rest = head.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        self.status = int(status_line.split()[1])
        self.headers = http.client.HTTPMessage()
        for line in header_lines:
            name, _, value = line.partition(":")
            self.headers[name.strip()] = value.strip()
        self.chunked = self.headers.get("Transfer-Encoding", "").lower() == "chunked"
        self._dechunk = ChunkedDecoder() if self.chunked else None
        self.parser = Parser(last_event_id or "")
        self.events: list[Event] = []
        self.ended = False
        self._unread: list[Event] = []
        self._body = b""
        self._take(rest)

    def _take(self, data: bytes) -> None:
        if self._dechunk is not None:
            data = self._dechunk.feed(data)
            if self._dechunk.finished:
                self.ended = True
        if self.status != 200:
            self._body += data
            return
        for event in self.parser.feed(data):
            self.events.append(event)
            self._unread.append(event)

    def body(self, timeout: float = 5.0) -> bytes:
        """The whole body of a non-stream answer (an error, say)."""
        length = int(self.headers.get("Content-Length", "-1"))
        deadline = time.monotonic() + timeout
        while len(self._body) != length and not self.ended:
            try:
                self._pump(deadline)
            except EOFError:
                break
        return self._body

    def _pump(self, deadline: float) -> None:
        if self.ended:
            raise EOFError("stream ended")
        remaining = deadline - time.monotonic()
        # Bytes TLS has already decrypted are not on the socket for select() to see.
        buffered = isinstance(self.sock, ssl.SSLSocket) and self.sock.pending()
        if not buffered and (
            remaining <= 0 or not select.select([self.sock], [], [], remaining)[0]
        ):
            raise TimeoutError("no event before the deadline")
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.ended = True
            raise EOFError("stream ended")
        self._take(chunk)

    def take_some(self, most: int, timeout: float = 5.0) -> list[Event]:
        """Read at most ``most`` bytes (a slow reader's sip); the events they completed."""
        if self.ended:
            raise EOFError("stream ended")
        if not select.select([self.sock], [], [], timeout)[0]:
            return []
        chunk = self.sock.recv(most)
        if not chunk:
            self.ended = True
            raise EOFError("stream ended")
        before = len(self.events)
        self._take(chunk)
        self._unread.clear()
        return self.events[before:]

    def next(self, timeout: float = 10.0, type: str | None = None) -> Event:
        """The next unread event (of ``type``, skipping others), or TimeoutError."""
        deadline = time.monotonic() + timeout
        while True:
            while self._unread:
                event = self._unread.pop(0)
                if type is None or event.type == type:
                    return event
            self._pump(deadline)

    def read_until(self, done, timeout: float = 10.0) -> list[Event]:
        """Read until ``done(event)`` is true for an event; returns the events read."""
        deadline = time.monotonic() + timeout
        read = []
        while True:
            event = self.next(max(0.001, deadline - time.monotonic()))
            read.append(event)
            if done(event):
                return read

    def read_for(self, seconds: float) -> list[Event]:
        """Everything that arrives within ``seconds``."""
        deadline = time.monotonic() + seconds
        read = []
        while True:
            try:
                read.append(self.next(max(0.001, deadline - time.monotonic())))
            except TimeoutError:
                return read
            if time.monotonic() >= deadline:
                return read

    def read_to_end(self, timeout: float) -> float:
        """Read until the server ends the stream; returns how long that took."""
        started = time.monotonic()
        deadline = started + timeout
        while not self.ended:
            try:
                self._pump(deadline)
            except EOFError:
                break
        return time.monotonic() - started

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> SSEClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Browser:
    """What an ``EventSource`` does: reconnect after ``retry`` with ``Last-Event-ID``.

    It keeps the quotes it was told (a snapshot replaces them, a price updates one) and
    every price event id it saw, so a test can check that nothing was doubled or lost.
    """

    def __init__(self, base_url: str, path: str) -> None:
        self.base_url = base_url
        self.path = path
        self.last_event_id: str | None = None
        self.retry_s = 0.5
        self.quotes: dict[str, dict] = {}
        self.price_ids: list[str] = []
        self.feed = "unknown"
        self.reconnects = 0
        self.client: SSEClient | None = None

    def _connect(self) -> None:
        try:
            self.client = SSEClient(self.base_url, self.path, last_event_id=self.last_event_id)
        except OSError:
            self.client = None
            return
        if self.client.status != 200:
            raise AssertionError(f"{self.path} answered {self.client.status}")

    def poll(self, seconds: float) -> None:
        """Read for ``seconds``, reconnecting the way a browser would when the stream ends."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.client is None:
                self._connect()
                if self.client is None:
                    time.sleep(self.retry_s)
                    continue
            try:
                self.client.next(max(0.001, min(0.5, deadline - time.monotonic())))
            except TimeoutError:
                pass
            except (EOFError, OSError):
                self._drop()
                time.sleep(self.retry_s)
                continue
            self._absorb()

    def _absorb(self) -> None:
        client = self.client
        for event in client.events:
            if event.type == "snapshot":
                self.quotes = {q["symbol"]: q for q in event.json()["quotes"]}
            elif event.type == "price":
                quote = event.json()
                self.quotes[quote["symbol"]] = quote
                self.price_ids.append(event.id)
            elif event.type == "status":
                self.feed = event.json()["feed"]
        client.events.clear()
        client._unread.clear()
        self.last_event_id = client.parser.last_event_id or None
        if client.parser.retry is not None:
            self.retry_s = client.parser.retry / 1000

    def _drop(self) -> None:
        if self.client is not None:
            self._absorb()
            self.client.close()
            self.client = None
            self.reconnects += 1

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None
