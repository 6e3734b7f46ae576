"""Feed addresses: where the market publishes and where the web app reads.

One string names the feed for both processes (``--feed`` or ``TICKER_FEED``), so the
simulator and gunicorn find each other with no options at all: both default to the
same Unix socket path.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = [
    "Address",
    "AddressError",
    "RedisAddress",
    "TcpAddress",
    "UnixAddress",
    "default_feed",
    "feed_from_env",
    "parse",
    "secret_from_env",
]

ENV_VAR = "TICKER_FEED"
SECRET_VAR = "TICKER_FEED_SECRET"


class AddressError(ValueError):
    """A feed address that cannot be understood."""


@dataclass(frozen=True)
class UnixAddress:
    path: str

    def __str__(self) -> str:
        return f"unix:{self.path}"


@dataclass(frozen=True)
class TcpAddress:
    host: str
    port: int

    def __str__(self) -> str:
        return f"tcp://{self.host}:{self.port}"


@dataclass(frozen=True)
class RedisAddress:
    url: str

    def __str__(self) -> str:
        return self.url


Address = UnixAddress | TcpAddress | RedisAddress


def default_feed() -> str:
    """The Unix socket both processes use when nothing else is said (one per user)."""
    return f"unix:{os.path.join(tempfile.gettempdir(), f'ticker-{os.getuid()}.sock')}"


def feed_from_env() -> str:
    return os.environ.get(ENV_VAR) or default_feed()


def secret_from_env() -> str | None:
    """The feed's shared secret, when one is set: the market asks every subscriber for it
    first (meant for ``tcp://`` feeds, which any local user could otherwise reach)."""
    return os.environ.get(SECRET_VAR) or None


def parse(text: str) -> Address:
    """Parse ``unix:PATH``, ``tcp://HOST:PORT`` or ``redis://HOST:PORT/DB``.

    Raises:
        AddressError: with a one-line reason fit for a CLI error.
    """
    if text.startswith("unix:"):
        path = text[len("unix:"):]
        if path.startswith("//"):
            path = path[2:]
        if not path:
            raise AddressError(f"feed address {text!r} has no socket path")
        return UnixAddress(path)
    if text.startswith("tcp://"):
        parts = urlsplit(text)
        try:
            port = parts.port
        except ValueError:
            port = None
        if not parts.hostname or port is None or parts.path not in ("", "/"):
            raise AddressError(f"feed address {text!r} is not tcp://HOST:PORT")
        return TcpAddress(parts.hostname, port)
    if text.startswith(("redis://", "rediss://")):
        parts = urlsplit(text)
        if not parts.hostname:
            raise AddressError(f"feed address {text!r} has no host")
        return RedisAddress(text)
    raise AddressError(
        f"feed address {text!r} is not unix:PATH, tcp://HOST:PORT or redis://HOST:PORT/DB"
    )
