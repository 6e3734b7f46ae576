"""Writing to a stream's socket: non-blocking, sliced for TLS, framed as HTTP/1.1 chunks.

The sweeper's only contact with sockets. Nothing here waits: a write takes what the
kernel (or the TLS layer) accepts now, and says how much that was.

A plain stream is written through the operating system's socket under gevent's wrapper,
which gevent keeps non-blocking: the wrapper's own ``send`` is skipped on every write, and
nothing of the wrapper gunicorn holds is changed. It is still the socket object, never its
descriptor: once gunicorn closes the socket, a write fails, and cannot reach a new
connection that was given the same descriptor number.
"""

from __future__ import annotations

import contextlib
import fcntl
import socket
import struct
import termios

import gevent.socket
import gevent.ssl
from gevent.select import select

__all__ = ["chunk", "cut", "hand_back", "nonblocking", "send", "unsent", "writable"]

_SLICE = 16 * 1024  # a TLS record's worth


def chunk(body: bytes) -> bytes:
    """``body`` as one HTTP/1.1 chunk."""
    return b"%x\r\n%b\r\n" % (len(body), body)


def nonblocking(sock: socket.socket) -> socket.socket:
    """What the sweeper writes ``sock`` through: its operating system socket when it is
    plain gevent, else (TLS) the socket itself, its timeout set to zero so that a send
    takes what the TLS layer accepts now and never waits."""
    if isinstance(sock, gevent.socket.socket) and not isinstance(sock, gevent.ssl.SSLSocket):
        return sock._sock  # non-blocking already: gevent waits in its wrapper, not here
    sock.settimeout(0.0)
    return sock


def hand_back(sock: socket.socket) -> None:
    """Undo ``nonblocking`` before gunicorn writes again: a TLS socket blocks again."""
    if isinstance(sock, gevent.socket.socket):
        with contextlib.suppress(OSError):
            sock.settimeout(None)


def send(sock: socket.socket, data: bytes | memoryview) -> int:
    """A non-blocking send of ``data``: what the socket takes now.

    TLS takes a buffer whole or not at all and must be offered the same one again, so a
    TLS socket gets slices of the same size from the same place until it is full: a slow
    reader then shows its progress, and a retry is always the same call. A plain socket
    takes everything it can in one call. Returns the bytes written, or -1 when the
    socket failed (the client left).
    """
    written = 0
    try:
        if len(data) <= _SLICE or not isinstance(sock, gevent.ssl.SSLSocket):
            return sock.send(data)  # the sweeper's usual write: one call, whatever it takes
        while written < len(data):
            sent = sock.send(data[written:written + _SLICE])
            if not sent:
                break
            written += sent
    except BlockingIOError:
        pass
    except OSError:
        return -1  # the client is gone
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
