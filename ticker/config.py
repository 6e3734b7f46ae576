"""Configuration: defaults, then ``TICKER_*`` environment variables, then a test dict.

Every setting is listed once, here, with its variable; the README's table mirrors it.
gunicorn's own settings (request sizes, TLS) are read in gunicorn.conf.py instead: the
master must not import the app before it forks.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from simulator import address
from ticker import auth

__all__ = ["Config", "ConfigError"]

# An origin as browsers send it: scheme, host, optional port; no path, not even "/".
_ORIGIN = re.compile(r"https?://[^\s/?#*@]+\Z")


class ConfigError(ValueError):
    """A setting with a value that cannot be used; the text names the variable."""


@dataclass(frozen=True)
class Config:
    feed: str = ""  # TICKER_FEED: the market's address (default: the simulator's socket)
    log_size: int = 20_000  # TICKER_LOG_SIZE: ticks kept for exact resume (per worker)
    max_streams: int = 10_000  # TICKER_MAX_STREAMS: open streams per worker, then 503
    max_symbols: int = 100  # TICKER_MAX_SYMBOLS: symbols one stream may ask for
    heartbeat_s: float = 10.0  # TICKER_HEARTBEAT_S: longest silence on a stream
    retry_ms: int = 2_000  # TICKER_RETRY_MS: the browser's reconnect delay (retry:)
    flush_ms: float = 2.0  # TICKER_FLUSH_MS: shortest pause between two sweeps
    stall_s: float = 30.0  # TICKER_STALL_S: a stream that reads nothing this long is dropped
    catch_up_bytes: int = 1 << 20  # TICKER_CATCH_UP_BYTES: larger catch-ups become a snapshot
    max_streams_per_client: int = 100  # TICKER_MAX_STREAMS_PER_CLIENT: per address, per worker
    auth_secret: str = dataclasses.field(default="", repr=False)  # TICKER_AUTH_SECRET: HS256 key
    auth_public_key: str = ""  # TICKER_AUTH_PUBLIC_KEY: a PEM public key's path (RS256/ES256)
    auth_audience: str = ""  # TICKER_AUTH_AUDIENCE: the aud claim tokens must carry
    # TICKER_FEED_SECRET: the market's shared secret, sent first on a socket feed
    feed_secret: str = dataclasses.field(default="", repr=False)
    cors_origins: str = ""  # TICKER_CORS_ORIGINS: comma-separated origins that may read cross-site

    @classmethod
    def load(cls, overrides: Mapping[str, Any] | None = None,
             environ: Mapping[str, str] = os.environ) -> Config:
        """Defaults, overlaid by the environment, overlaid by ``overrides``.

        Raises:
            ConfigError: a value of the wrong type or out of range.
        """
        values: dict[str, Any] = {"feed": address.feed_from_env()}
        for field in fields(cls):
            name = f"TICKER_{field.name.upper()}"
            if name in environ and field.name != "feed":
                try:
                    values[field.name] = type(field.default)(environ[name])
                except ValueError:
                    raise ConfigError(f"{name}={environ[name]!r} is not a valid value") from None
        config = replace(cls(), **{**values, **dict(overrides or {})})
        config.check()
        return config

    def check(self) -> None:
        try:
            address.parse(self.feed)
        except address.AddressError as exc:
            raise ConfigError(f"TICKER_FEED: {exc}") from None
        for field in fields(self):
            value = getattr(self, field.name)
            if isinstance(value, (int, float)) and not (math.isfinite(value) and value > 0):
                raise ConfigError(f"TICKER_{field.name.upper()} must be a finite positive number")
        if self.heartbeat_s > 15:
            raise ConfigError("TICKER_HEARTBEAT_S must be at most 15 (proxies cut idle streams)")
        if self.auth_secret and len(self.auth_secret.encode()) < auth.MIN_SECRET_BYTES:
            raise ConfigError(f"TICKER_AUTH_SECRET must be at least {auth.MIN_SECRET_BYTES} bytes "
                              "(RFC 7518: as long as the HS256 hash)")
        for origin in self.origins:
            if not _ORIGIN.match(origin):
                raise ConfigError(
                    f"TICKER_CORS_ORIGINS: {origin!r} is not an origin such as "
                    "https://app.example.com (scheme, host, optional port, no path)"
                )

    @property
    def origins(self) -> tuple[str, ...]:
        """The origins in ``cors_origins``; empty when cross-site reads are not allowed."""
        return tuple(o.strip() for o in self.cors_origins.split(",") if o.strip())
