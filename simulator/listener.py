"""The listener: the socket subscribers connect to, and the socket file it lives at.

A Unix socket is private to its user from its first moment and appears at its path only
once it accepts connections; a socket file a crashed market left behind is replaced, a
live market's never.
"""

from __future__ import annotations

import logging
import os
import socket as stdsocket
import stat

from gevent import socket

from simulator.address import Address, TcpAddress, UnixAddress

__all__ = ["FeedError", "file_id", "listen"]

log = logging.getLogger("simulator")


class FeedError(Exception):
    """The feed cannot start; the text is a one-line reason for the operator."""


def listen(address: Address) -> socket.socket:
    """A listening socket for ``address``.

    A Unix socket is bound under a temporary name with mode 0600 and renamed into
    place, so its path appears only once it accepts connections and is never open to
    other users. A socket file left by a crashed market is replaced; a live one is not.

    Raises:
        FeedError: a market is already running there, or the address is unusable.
    """
    try:
        if isinstance(address, TcpAddress):
            listener = stdsocket.create_server((address.host, address.port), backlog=128)
            return socket.socket(fileno=listener.detach())  # gevent's, so accept() yields
        return _listen_unix(address)
    except OSError as exc:
        raise FeedError(f"cannot listen on {address}: {exc.strerror or exc}") from None


def _listen_unix(address: UnixAddress) -> socket.socket:
    path = address.path
    _remove_if_stale(path)
    temporary = f"{path}.{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    umask = os.umask(0o177)  # the socket file is born 0600: no moment open to others
    try:
        sock.bind(temporary)
    except OSError:
        sock.close()
        raise
    finally:
        os.umask(umask)
    try:
        sock.listen(128)
        os.rename(temporary, path)
    except OSError:
        sock.close()
        os.unlink(temporary)
        raise
    return sock


def _remove_if_stale(path: str) -> None:
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise FeedError(f"cannot listen on unix:{path}: the file exists and is not a socket")
    probe = stdsocket.socket(stdsocket.AF_UNIX, stdsocket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        log.info("removing stale socket unix:%s", path)
        os.unlink(path)
        return
    except OSError:
        pass  # a socket that does not answer in time is taken as live
    finally:
        probe.close()
    raise FeedError(f"a market is already running at unix:{path}")


def file_id(address: Address) -> tuple[int, int] | None:
    """What tells our socket file from one that replaced it: (device, inode)."""
    if not isinstance(address, UnixAddress):
        return None
    try:
        info = os.stat(address.path)
    except OSError:
        return None
    return info.st_dev, info.st_ino
