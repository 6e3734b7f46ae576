"""Writing to a stream's socket: non-blocking, sliced for TLS, framed as HTTP/1.1 chunks.

The sweeper's only contact with sockets. Nothing here waits: a write takes what the
kernel (or the TLS layer) accepts now, and says how much that was.
"""

from __future__ import annotations

import contextlib
import fcntl
import socket
import struct
import termios

from gevent.select import select

__all__ = ["Gone", "chunk", "cut", "send", "unsent", "writable"]

_SLICE = 16 * 1024  # a TLS record's worth


class Gone(OSError):
    """The client is gone: the socket failed."""


def chunk(body: bytes) -> bytes:
    """``body`` as one HTTP/1.1 chunk."""
    return b"%x\r\n%b\r\n" % (len(body), body)


def send(sock: socket.socket, data: bytes | memoryview) -> int:
    """Non-blocking sends, a TLS record's worth at a time, until the socket is full.

    TLS takes a buffer whole or not at all and must be offered the same one again, so
    every send is a slice of the same size from the same place: a slow reader then shows
    its progress, and a retry is always the same call. Returns the bytes written.

    Raises:
        Gone: the socket failed (the client left).
    """
    written = 0
    try:
        if len(data) <= _SLICE:
            return sock.send(data)  # the sweeper's usual write: one call, whatever it takes
        while written < len(data):
            sent = sock.send(data[written:written + _SLICE])
            if not sent:
                break
            written += sent
    except BlockingIOError:
        pass
    except OSError as exc:
        raise Gone(str(exc)) from None
    return written


def unsent(sock: socket.socket) -> int:
    """Bytes in the socket's send queue that the peer has not acknowledged yet."""
    try:
        return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0" * 4))[0]
    except OSError:
        return 0


def writable(sock: socket.socket) -> bool:
    """Whether the socket takes more now."""
    try:
        return bool(select([], [sock], [], 0)[1])
    except (OSError, ValueError):
        return False


def cut(sock: socket.socket) -> None:
    """Shut the socket down both ways: any write fails at once, any wait on it wakes."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
