"""Server-Sent Events framing, exactly as the WHATWG HTML standard parses it.

Pure: values in, bytes out. Every frame the server sends is built here, once, and the
same bytes then go to every stream that wants them.

The parser's rules this follows (html.spec.whatwg.org, "Server-sent events"):
- lines end in LF, CR or CRLF; we always emit LF, and split multi-line data on all three
  so a CR inside the data can never end a line early on the client;
- ``field: value`` loses exactly one space after the colon, so one space is always written
  and a value that itself starts with a space survives;
- ``event`` and ``id`` are single-line by construction, so a CR or LF in them is refused
  (a broken frame is never emitted), and an ``id`` holding U+0000 would be ignored by the
  client, so it is refused too;
- a blank line dispatches; a frame with no data is not dispatched, but its ``id`` still
  sets the client's last event ID, which is what heartbeats use.
"""

from __future__ import annotations

import re

__all__ = ["SSEError", "encode", "encode_line"]

_LINE_BREAK = re.compile(r"\r\n|\r|\n")


class SSEError(ValueError):
    """A value that cannot be framed without breaking the stream."""


def _single_line(field: str, value: str) -> str:
    if "\r" in value or "\n" in value:
        raise SSEError(f"{field} must not contain CR or LF")
    return value


def encode(
    data: str | None = None,
    *,
    event: str | None = None,
    id: str | None = None,
    retry: int | None = None,
    comment: str | None = None,
) -> bytes:
    """One complete frame, terminated by its blank line; ``b""`` when given nothing.

    Raises:
        SSEError: a CR or LF in ``event`` or ``id``, a NUL in ``id``, or a ``retry``
            that is not a non-negative integer.
    """
    lines: list[str] = []
    if comment is not None:
        lines.extend(f": {line}" if line else ":" for line in _LINE_BREAK.split(comment))
    if event is not None:
        lines.append(f"event: {_single_line('event', event)}")
    if id is not None:
        if "\0" in id:
            raise SSEError("id must not contain NUL")
        lines.append(f"id: {_single_line('id', id)}")
    if retry is not None:
        if isinstance(retry, bool) or not isinstance(retry, int) or retry < 0:
            raise SSEError("retry must be a non-negative integer")
        lines.append(f"retry: {retry}")
    if data is not None:
        lines.extend(f"data: {line}" for line in _LINE_BREAK.split(data))
    if not lines:
        return b""
    lines.append("\n")
    return "\n".join(lines).encode("utf-8")


def encode_line(data: bytes, *, event: str, id: str) -> bytes:
    """``encode(data, event=event, id=id)`` for data that is one line of UTF-8 already
    (compact JSON), at a fraction of the cost: every tick's frame is made here.

    Raises:
        SSEError: a line break in ``data``, ``event`` or ``id``, or a NUL in ``id``.
    """
    if b"\n" in data or b"\r" in data:
        raise SSEError("data must be one line")
    if "\0" in id:
        raise SSEError("id must not contain NUL")
    head = f"event: {_single_line('event', event)}\nid: {_single_line('id', id)}\ndata: "
    return head.encode() + data + b"\n\n"
