"""Reading SSE responses at a million events a second: HTTP/1.1 framing and frame scanning.

Strategy: the servers measured here write whole frames in each write, so nearly every
read is one chunk holding nothing but ``price`` frames, and in one sweep every stream
of a subscription group gets the very same bytes. ``Bodies`` therefore recognises a
body it has parsed before from its length and its first id and last seq (two slices
and a dict lookup) and shares the one ``Run`` among all the streams that read it. A
run is only counted and bounded (first and last seq and ``ts``) at once; its per-frame
figures are parsed with regexes (C speed) when something asks for them, and frames are
split in Python only in a body that mixes in other events (a snapshot, a status, a
heartbeat).
Lines end in LF only, as both servers write them.

Pure: bytes in, values out; the socket loop lives in ``bench.loadgen``.
"""

from __future__ import annotations

import re

__all__ = ["Bodies", "ProtocolError", "ResponseReader", "Run", "items"]

PRICE = b"event: price\n"
_FRAME_END = b"\n\n"
_SEQ = re.compile(rb'"seq":(\d+)')
_TS = re.compile(rb'"ts":(\d+)')
_QUOTE = re.compile(rb'"symbol":"([^"]+)","price":([^,}]+)')
_ID = re.compile(rb"^id: [^\n]*-(\d+)$", re.MULTILINE)
_MAX_HEADERS = 16 * 1024


class ProtocolError(Exception):
    """A response that is not a readable event stream (bad status, bad framing)."""


class ResponseReader:
    """One HTTP/1.1 response, fed in arbitrary pieces; gives back whole SSE frames."""

    __slots__ = ("status", "chunked", "ended", "_raw", "_left", "_skip", "_tail")

    def __init__(self) -> None:
        self.status = 0  # 0 until the headers are in
        self.chunked = False
        self.ended = False  # the last chunk arrived: the server ended the stream
        self._raw = b""  # bytes of an incomplete header block or chunk-size line
        self._left = 0  # body bytes of the current chunk still to come
        self._skip = 0  # bytes of the CRLF after a chunk body still to come
        self._tail = b""  # body bytes after the last complete frame

    def feed(self, data: bytes) -> bytes:
        """The complete frames that ``data`` finishes (``b""`` when none).

        Raises:
            ProtocolError: a status other than 200, or broken chunk framing.
        """
        if self._raw:
            data, self._raw = self._raw + data, b""
        if not self.status:
            end = data.find(b"\r\n\r\n")
            if end < 0:
                if len(data) > _MAX_HEADERS:
                    raise ProtocolError("response headers too long")
                self._raw = data
                return b""
            self._headers(data[:end])
            data = data[end + 4:]
        if not self.chunked:
            body = data
        elif self._left or self._skip or not (body := self._whole_chunk(data)):
            body = self._dechunk(data)
        if self._tail:
            body, self._tail = self._tail + body, b""
        cut = body.rfind(_FRAME_END)
        if cut < 0:
            self._tail = body
            return b""
        cut += 2
        if cut < len(body):
            self._tail = body[cut:]
            return body[:cut]
        return body

    def _headers(self, block: bytes) -> None:
        lines = block.split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        if len(parts) < 2 or not parts[1].isdigit():
            raise ProtocolError(f"not an HTTP response: {lines[0][:80]!r}")
        if parts[1] != b"200":
            raise ProtocolError(f"HTTP {parts[1].decode()}")
        self.status = 200
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"transfer-encoding":
                self.chunked = b"chunked" in value.lower()

    @staticmethod
    def _whole_chunk(data: bytes) -> bytes:
        """The body of ``data`` if it is exactly one whole chunk (the usual read), else b""."""
        line = data.find(b"\r\n", 0, 18)
        if line > 0:
            try:
                size = int(data[:line], 16)
            except ValueError:  # an extension, or garbage: the slow path tells which
                return b""
            if size and len(data) == line + size + 4:
                return data[line + 2:line + 2 + size]
        return b""

    def _dechunk(self, data: bytes) -> bytes:
        """The chunk bodies in ``data``, joined; keeps the state of a split chunk."""
        parts = []
        pos, end = 0, len(data)
        while pos < end:
            if self._left:
                take = min(self._left, end - pos)
                parts.append(data[pos:pos + take])
                pos += take
                self._left -= take
            elif self._skip:
                take = min(self._skip, end - pos)
                pos += take
                self._skip -= take
            elif self.ended:
                break
            else:
                line = data.find(b"\r\n", pos)
                if line < 0:
                    self._raw = data[pos:]
                    break
                size = self._size(data[pos:line])
                pos = line + 2
                self._left, self._skip = size, 2
                if size == 0:
                    self.ended = True
        return b"".join(parts)

    @staticmethod
    def _size(line: bytes) -> int:
        try:
            return int(line.partition(b";")[0], 16)
        except ValueError:
            raise ProtocolError(f"bad chunk size line {line[:40]!r}") from None


class Run:
    """A run of consecutive ``price`` frames: counted and bounded at once, parsed on demand.

    Every run is counted and its first and last seq and ``ts`` found (a few C-speed
    searches); the per-frame figures are parsed only when asked for, which most runs
    never are: only the sampled streams' latencies need every ``ts``, only the
    reference needs every seq and symbol, and a stream's last prices are taken from its
    newest runs alone (``Stream.fold``).
    """

    __slots__ = ("blob", "count", "first", "last", "ts_first", "ts_last",
                 "_ts10", "_seqs", "_quotes")

    def __init__(self, blob: bytes, count: int | None = None) -> None:
        self.blob = blob
        self.count = blob.count(PRICE) if count is None else count
        first, last = _SEQ.search(blob), _SEQ.match(blob, blob.rfind(b'"seq":'))
        ts_first, ts_last = _TS.search(blob), _TS.match(blob, blob.rfind(b'"ts":'))
        if not (self.count and first and last and ts_first and ts_last):
            raise ProtocolError("price frame without its ts or seq")
        self.first, self.last = int(first.group(1)), int(last.group(1))
        self.ts_first, self.ts_last = int(ts_first.group(1)) * 10, int(ts_last.group(1)) * 10
        self._ts10: tuple[int, ...] | None = None
        self._seqs: tuple[int, ...] | None = None
        self._quotes: list[tuple[bytes, bytes]] | None = None

    @property
    def ts10(self) -> tuple[int, ...]:
        """Each frame's ``ts`` in tenths of a millisecond, the unit latencies are counted in."""
        if self._ts10 is None:
            self._ts10 = tuple(int(ts) * 10 for ts in _TS.findall(self.blob))
        return self._ts10

    @property
    def seqs(self) -> tuple[int, ...]:
        if self._seqs is None:
            self._seqs = tuple(map(int, _SEQ.findall(self.blob)))
        return self._seqs

    @property
    def quotes(self) -> list[tuple[bytes, bytes]]:
        """``(symbol, price text)`` of each frame, in order."""
        if self._quotes is None:
            self._quotes = _QUOTE.findall(self.blob)
            if len(self._quotes) != self.count:
                raise ProtocolError("price frame without a symbol and price")
        return self._quotes

    @property
    def prices(self) -> dict[bytes, bytes]:
        """Each symbol's price text in its last frame."""
        return dict(self.quotes)


class Bodies:
    """Turns bodies into items, each distinct body that starts with a price frame once.

    Such a body is known by its subscription group, length, first id and last seq:
    within one market, two bodies alike in all four hold the same frames, since every
    tick's frame is encoded once and sent to everyone. The ``Run`` is shared too, so
    what one stream parsed of it on demand the others get for free.
    """

    def __init__(self, limit: int = 50_000) -> None:
        self.limit = limit
        self.parsed = 0
        self._cache: dict[tuple, list[tuple]] = {}

    def items(self, group: int, body: bytes) -> list[tuple]:
        """``items(body)``, from the cache when a stream of ``group`` had this body before."""
        if not body.startswith(PRICE):
            return items(body)
        # The first frame's id line and the last frame's seq lie within these slices.
        key = (group, len(body), body[:80], body[-64:])
        found = self._cache.get(key)
        if found is None:
            if len(self._cache) >= self.limit:
                self._cache.clear()
            found = self._cache[key] = items(body)
            self.parsed += 1
        return found


def items(body: bytes) -> list[tuple]:
    """The events in ``body`` (whole frames), in order.

    Each item is ``("price", run)`` for a run of consecutive price frames (and any
    heartbeats among them),
    ``("snapshot", seq, prices)``, or ``("status", up)``. Comments and ``retry`` are
    dropped.

    Raises:
        ProtocolError: a price frame without its figures, a snapshot without an id.
    """
    prices = body.count(PRICE)
    # A heartbeat among price frames is harmless (it has no quote in it); a snapshot or
    # a status is not, and sends the body the slow way.
    if prices and b"event: s" not in body:
        return [("price", Run(body, prices))]
    out: list[tuple] = []
    run: list[bytes] = []
    for frame in body.split(_FRAME_END)[:-1]:
        if frame.startswith(PRICE) or b"\nevent: price\n" in frame:
            run.append(frame + _FRAME_END)
            continue
        if run:
            out.append(("price", Run(b"".join(run))))
            run = []
        if b"event: snapshot" in frame:
            seq = _ID.search(frame)
            if seq is None:
                raise ProtocolError("snapshot without an id")
            out.append(("snapshot", int(seq.group(1)), dict(_QUOTE.findall(frame))))
        elif b"event: status" in frame:
            out.append(("status", b'"feed":"up"' in frame))
    if run:
        out.append(("price", Run(b"".join(run))))
    return out
