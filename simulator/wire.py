"""The feed protocol: newline-delimited JSON, one UTF-8 object a line.

Strategy: this module is sans-IO. ``Decoder.feed(bytes)`` takes whatever a socket read
returned, keeps a partial last line for the next call, and hands back one item per
complete line: a ``dict`` for a good line, a ``WireError`` for a bad one, in the order
the lines came. Returning errors in-line (instead of raising) lets the caller answer
each bad line and carry on with the next, so one bad line never costs the good ones
around it. A line longer than ``MAX_LINE`` is reported once and skipped up to its
newline without ever being held in memory whole.

The same module validates what each side receives: requests (``parse_request``) on the
market side, and hello, snapshot and tick messages (``parse_quote`` and friends) on the
subscriber side, so a misbehaving source can never put garbage into a stream.

A message that lists the whole market (hello, snapshot, the ``symbols`` reply) carries
``count``, its list's full length, and goes out as ``split`` cuts it: itself with as many
items as fit a line, then pieces of the rest (``universe`` or ``quotes`` lines), each line
under ``MAX_LINE``. A small market's message is one line, exactly as ``encode`` makes it.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "MAX_LINE",
    "MAX_REPLAY_ID",
    "QUOTE_FIELDS",
    "SYMBOL_RE",
    "Decoder",
    "AuthRequest",
    "InjectRequest",
    "ReplayRequest",
    "SymbolsRequest",
    "Tick",
    "WireError",
    "auth",
    "encode",
    "error",
    "hello",
    "parse_hello",
    "parse_quote",
    "parse_request",
    "parse_snapshot",
    "parse_tick",
    "parse_universe",
    "read_tick",
    "missing",
    "reply",
    "snapshot",
    "split",
    "symbols_reply",
    "tick",
]

MAX_LINE = 64 * 1024
MAX_REPLAY_ID = 256  # bytes of JSON: leaves every piece of a replay room for its ticks
SYMBOL_RE = re.compile(r"^[A-Z][A-Z0-9.]{0,9}\Z")  # \Z: "$" would let "A\n" through
QUOTE_FIELDS = (
    "symbol", "price", "open", "high", "low", "change", "change_pct", "volume", "size", "ts", "seq",
)


class WireError(ValueError):
    """A line or message that breaks the protocol; its text is the one-line reason."""


def _reject_constant(name: str) -> Any:
    raise WireError(f"not JSON: {name} is not allowed")


def _loads(line: bytes) -> dict:
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise WireError("line is not UTF-8") from None
    try:
        message = json.loads(text, parse_constant=_reject_constant)
    except WireError:
        raise
    except (ValueError, RecursionError):
        raise WireError("line is not JSON") from None
    if not isinstance(message, dict):
        raise WireError("line is not a JSON object")
    return message


class Decoder:
    """Turns a byte stream into messages, one per newline-terminated line.

    ``ticks``: a tick line in the market's own form is read straight into a ``Tick``
    (``read_tick``), without a JSON round trip; any other line is a ``dict`` as before.
    """

    def __init__(self, max_line: int = MAX_LINE, *, ticks: bool = False) -> None:
        self._max_line = max_line
        self._ticks = ticks
        self._partial = bytearray()
        self._skipping = False

    def feed(self, data: bytes) -> list[dict | Tick | WireError]:
        items: list[dict | Tick | WireError] = []
        start = 0
        while True:
            end = data.find(b"\n", start)
            if end < 0:
                break
            if self._skipping:
                self._skipping = False
            elif len(self._partial) + (end - start) > self._max_line:
                items.append(self._too_long())
            else:
                if self._partial:
                    self._partial += data[start:end]
                    line = bytes(self._partial)
                    self._partial.clear()
                else:
                    line = data[start:end]
                item = self._decode(line)
                if item is not None:
                    items.append(item)
            self._partial.clear()
            start = end + 1
        rest = len(data) - start
        if rest and not self._skipping:
            if len(self._partial) + rest > self._max_line:
                items.append(self._too_long())
                self._partial.clear()
                self._skipping = True
            else:
                self._partial += data[start:]
        return items

    def _too_long(self) -> WireError:
        return WireError(f"line longer than {self._max_line} bytes")

    def _decode(self, line: bytes) -> dict | Tick | WireError | None:
        if line.endswith(b"\r"):
            line = line[:-1]
        if self._ticks and line.startswith(_TICK_START) and (tick := read_tick(line)):
            return tick
        if not line.strip():
            return None
        try:
            return _loads(line)
        except WireError as exc:
            return exc


_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False)


def encode(message: dict) -> bytes:
    """One message as one line: compact JSON, UTF-8, newline-terminated."""
    return _ENCODER.encode(message).encode() + b"\n"


def split(message: dict, piece: dict, limit: int = MAX_LINE) -> list[bytes]:
    """``message``, whose last field is a list, as lines of at most ``limit`` bytes each,
    newline included: ``message`` with the first items of the list that fit, then lines
    ``{**piece, key: [...]}`` with the rest, in order, each as full as it can be. When all
    fits, the one line is ``encode(message)``.

    Example: ``split(hello(...), {"type": "universe"})``.

    Raises:
        ValueError: an item cannot fit in a line of its own.
    """
    key = next(reversed(message))
    lines: list[bytes] = []
    head = _ENCODER.encode({**message, key: []}).encode()[:-2]  # up to and with the "["
    batch: list[bytes] = []
    room = limit - len(head) - len(b"]}\n") + 1  # +1: no comma before the first item
    for item in message[key]:
        encoded = _ENCODER.encode(item).encode()
        if len(encoded) + 1 > room and (batch or not lines):  # the first line may hold none
            lines.append(head + b",".join(batch) + b"]}\n")
            head = _ENCODER.encode({**piece, key: []}).encode()[:-2]
            batch, room = [], limit - len(head) - len(b"]}\n") + 1
        if len(encoded) + 1 > room:
            raise ValueError(f"an item of {key!r} does not fit in a line")
        batch.append(encoded)
        room -= len(encoded) + 1
    lines.append(head + b",".join(batch) + b"]}\n")
    return lines


def missing(message: dict, key: str) -> int:
    """How many items of ``message``'s list ``key`` are still to come in pieces: its
    ``count`` less what it holds (0 for a message with no ``count``, one line as before).

    Raises:
        WireError: ``key`` is not a list, or ``count`` is not an integer at least its length.
    """
    items = message.get(key)
    if not isinstance(items, list):
        raise WireError(f"{message.get('type', 'message')} has no {key}")
    count = message.get("count", len(items))
    if isinstance(count, bool) or not isinstance(count, int) or count < len(items):
        raise WireError(f"count must be an integer, at least the {len(items)} items listed")
    return count - len(items)


# Market -> subscriber -------------------------------------------------------------

def hello(epoch: str, seq: int, universe: Sequence[dict], rate: float,
          oldest: int | None = None) -> dict:
    """``oldest``: the smallest ``after`` a replay request may name now (``seq`` if none).
    Sent as ``split(hello(...), {"type": "universe"})``."""
    return {"type": "hello", "epoch": epoch, "seq": seq,
            "oldest": seq if oldest is None else oldest, "rate": rate,
            "count": len(universe), "universe": universe}


def snapshot(seq: int, quotes: Sequence[dict]) -> dict:
    """Sent as ``split(snapshot(...), {"type": "quotes"})``."""
    return {"type": "snapshot", "seq": seq, "count": len(quotes), "quotes": quotes}


def symbols_reply(request_id: Any, universe: Sequence[dict]) -> list[bytes]:
    """The answer lines to a ``symbols`` request: a reply, then its ``universe`` pieces."""
    head = {"type": "reply"} if request_id is None else {"type": "reply", "id": request_id}
    piece = {"type": "universe"} if request_id is None else {"type": "universe", "id": request_id}
    return split({**head, "count": len(universe), "universe": universe}, piece)


def tick(quote: dict) -> dict:
    return {"type": "tick", **quote}


def reply(request_id: Any = None, **fields: Any) -> dict:
    message = {"type": "reply", **fields}
    if request_id is not None:
        message["id"] = request_id
    return message


def error(reason: str, request_id: Any = None) -> dict:
    message = {"type": "error", "error": reason}
    if request_id is not None:
        message["id"] = request_id
    return message


# Subscriber -> market -------------------------------------------------------------

def auth(secret: str) -> dict:
    """The first line a subscriber sends to a market that requires a shared secret."""
    return {"op": "auth", "secret": secret}


@dataclass(frozen=True)
class InjectRequest:
    symbol: str
    price: float
    id: Any = None


@dataclass(frozen=True)
class SymbolsRequest:
    id: Any = None


@dataclass(frozen=True)
class ReplayRequest:
    """The ticks with ``after < seq <= until`` (``until`` None: up to the market's seq)."""

    after: int
    until: int | None = None
    id: Any = None


def _request_id(message: dict) -> Any:
    value = message.get("id")
    if value is None or isinstance(value, (str, int)) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and math.isfinite(value):  # 1e999 parses as inf
        return value
    raise WireError("id must be a string or a finite number")


def positive_price(value: Any) -> float:
    """A price is a finite number above zero (booleans are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise WireError("price must be a number")
    try:
        price = float(value)
    except OverflowError:  # an integer too large for a float
        raise WireError("price must be a finite positive number, not a huge integer") from None
    if not math.isfinite(price) or price <= 0:
        raise WireError(f"price must be a finite positive number, not {value!r}")
    return price


@dataclass(frozen=True)
class AuthRequest:
    secret: str
    id: Any = None


def parse_request(
    message: dict,
) -> InjectRequest | SymbolsRequest | AuthRequest | ReplayRequest:
    """Validate a subscriber's request line.

    Raises:
        WireError: unknown op or bad fields; the reason goes back as an error reply.
    """
    op = message.get("op")
    request_id = _request_id(message)
    if op == "inject":
        symbol = message.get("symbol")
        if not isinstance(symbol, str) or not symbol:
            raise WireError("inject needs a symbol")
        return InjectRequest(symbol, positive_price(message.get("price")), request_id)
    if op == "symbols":
        return SymbolsRequest(request_id)
    if op == "auth":
        secret = message.get("secret")
        if not isinstance(secret, str):
            raise WireError("auth needs a secret")
        return AuthRequest(secret, request_id)
    if op == "replay":
        after = _int(message, "after")
        until = None if message.get("until") is None else _int(message, "until")
        if until is not None and until < after:
            raise WireError("until must not be below after")
        if len(json.dumps(request_id)) > MAX_REPLAY_ID:  # every piece of the answer carries it
            raise WireError(f"a replay's id must be at most {MAX_REPLAY_ID} bytes of JSON")
        return ReplayRequest(after, until, request_id)
    if op is None:
        raise WireError("request has no op")
    raise WireError(f"unknown op {str(op)[:40]!r}")


# Subscriber-side validation -------------------------------------------------------

def _int(message: dict, key: str) -> int:
    value = message.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise WireError(f"{key} must be a non-negative integer")
    return value


def _number(message: dict, key: str) -> float:
    value = message.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise WireError(f"{key} must be a finite number")
    try:
        finite = math.isfinite(value)
    except OverflowError:  # an integer too large for a float
        finite = False
    if not finite:
        raise WireError(f"{key} must be a finite number")
    return value


def parse_quote(message: dict) -> dict:
    """The quote in a tick or snapshot, reduced to the known fields and checked."""
    symbol = message.get("symbol")
    if not isinstance(symbol, str) or not SYMBOL_RE.match(symbol):
        raise WireError("quote has no valid symbol")
    positive_price(message.get("price"))
    quote = {"symbol": symbol}
    for key in QUOTE_FIELDS[1:]:
        if key in ("volume", "size", "ts", "seq"):
            quote[key] = _int(message, key)
        else:
            quote[key] = _number(message, key)
    return quote


class Tick:
    """One tick as a subscriber keeps it: symbol, seq and time, and the quote itself as
    compact JSON (the ``QUOTE_FIELDS``, in that order), ready to be framed as it is."""

    __slots__ = ("symbol", "seq", "ts", "data")

    def __init__(self, symbol: str, seq: int, ts: int, data: bytes) -> None:
        self.symbol = symbol
        self.seq = seq
        self.ts = ts
        self.data = data

    @classmethod
    def of(cls, quote: dict) -> Tick:
        """The tick of a quote ``parse_quote`` returned."""
        return cls(quote["symbol"], quote["seq"], quote["ts"], _ENCODER.encode(quote).encode())

    def quote(self) -> dict:
        return json.loads(self.data)


def parse_tick(item: dict | Tick) -> Tick:
    """A tick message, however it was read (``read_tick``'s ``Tick``, or a ``dict``).

    Raises:
        WireError: as ``parse_quote``.
    """
    return item if isinstance(item, Tick) else Tick.of(parse_quote(item))


# A tick line exactly as the market writes it (``simulator.pump.tick_line``): numbers as
# Python's repr writes a finite float or an int, bounded so that each one is finite as
# JSON. A longer number, or a line in any other form, takes the general path
# (``json.loads`` and ``parse_quote``), which reads the same values from every line this
# matches.
_TICK_START = b'{"type":"tick",'
_INT = rb"(?:0|[1-9][0-9]{0,17})"
_UNSIGNED = (rb"(?:(?:0|[1-9][0-9]{0,15})(?:\.[0-9]{1,17})?"
             rb"|[1-9](?:\.[0-9]{1,16})?[eE][-+]?(?:[0-9]{1,2}|[12][0-9]{2}|30[0-7]))")
_SIGNED = rb"-?" + _UNSIGNED
_TICK_LINE = re.compile(
    rb'\{"type":"tick","symbol":"([A-Z][A-Z0-9.]{0,9})","price":(' + _UNSIGNED + rb"),"
    rb'"open":' + _SIGNED + rb',"high":' + _SIGNED + rb',"low":' + _SIGNED
    + rb',"change":' + _SIGNED + rb',"change_pct":' + _SIGNED + rb',"volume":' + _INT
    + rb',"size":' + _INT + rb',"ts":(' + _INT + rb'),"seq":(' + _INT + rb")\}"
)


def read_tick(line: bytes) -> Tick | None:
    """The tick of a line in the market's own form (without its newline), read without
    decoding JSON: the feed's hot path. None for any other line (and for a price of
    zero), which the general path then reads, or refuses with its reason."""
    match = _TICK_LINE.fullmatch(line)
    if match is None:
        return None
    symbol, price, ts, seq = match.groups()
    if float(price) <= 0:
        return None
    return Tick(symbol.decode(), int(seq), int(ts), b"{" + line[len(_TICK_START):])


def parse_hello(message: dict) -> tuple[str, int, list[dict]]:
    epoch = message.get("epoch")
    if not isinstance(epoch, str) or not re.fullmatch(r"[A-Za-z0-9]{1,32}", epoch):
        raise WireError("hello has no valid epoch")
    return epoch, _int(message, "seq"), parse_universe(message)


def parse_universe(message: dict) -> list[dict]:
    """The companies a hello, or a ``universe`` piece after it, lists."""
    universe = message.get("universe")
    if not isinstance(universe, list):
        raise WireError("hello has no universe")
    listed = []
    for company in universe:
        if not isinstance(company, dict):
            raise WireError("universe entry is not an object")
        symbol, name = company.get("symbol"), company.get("name")
        if not isinstance(symbol, str) or not SYMBOL_RE.match(symbol) or not isinstance(name, str):
            raise WireError("universe entry needs a symbol and a name")
        listed.append({"symbol": symbol, "name": name, "sector": str(company.get("sector", ""))})
    return listed


def parse_snapshot(message: dict) -> tuple[int, list[dict]]:
    quotes = message.get("quotes")
    if not isinstance(quotes, list):
        raise WireError("snapshot has no quotes")
    return _int(message, "seq"), [parse_quote(q) for q in quotes if isinstance(q, dict)]
