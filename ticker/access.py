"""Who may read the market: a token check in front of the streams and the JSON API.

Off unless ``TICKER_AUTH_SECRET`` or ``TICKER_AUTH_PUBLIC_KEY`` is set. Then every
request for market data carries a JWT (see ``ticker.auth``), as ``?token=`` (a browser's
``EventSource`` cannot set headers) or ``Authorization: Bearer``. A missing or bad token
is a 401 here, before any route runs, with the reason in the body and in the
``WWW-Authenticate`` challenge (RFC 6750); which symbols the token grants is checked
where the request's symbols are read (``validation.parse_symbols``, given
``granted()``). The page, static files, ``/healthz`` and ``/metrics`` stay open. A
stream is checked when it opens (and so on every reconnect); one already open runs on
past its token's expiry.
"""

from __future__ import annotations

import re
from pathlib import Path

from flask import Flask, g, request

from ticker import auth
from ticker.config import Config, ConfigError
from ticker.errors import ApiError

__all__ = ["DATA_PATHS", "granted", "init_app", "verifier"]

# The routes that serve market data: /stream, /stream/<SYMBOL> and /api/*.
DATA_PATHS = re.compile(r"/(stream|stream/.*|api/.*)\Z", re.DOTALL)

_CHALLENGE = 'Bearer realm="ticker"'


def verifier(config: Config) -> auth.Verifier | None:
    """The token checker ``config`` asks for; ``None`` when auth is off.

    Raises:
        ConfigError: the public key file cannot be read or holds no usable public key.
    """
    public = None
    if config.auth_public_key:
        path = Path(config.auth_public_key)
        try:
            public = auth.public_key(path.read_bytes())
        except OSError as exc:
            raise ConfigError(f"TICKER_AUTH_PUBLIC_KEY: cannot read {path}: "
                              f"{exc.strerror or exc}") from None
        except auth.AuthKeyError as exc:
            raise ConfigError(f"TICKER_AUTH_PUBLIC_KEY: {path}: {exc}") from None
    if not (config.auth_secret or public):
        return None
    # The secret's length was checked with the rest of the configuration.
    return auth.Verifier.of(config.auth_secret, public, config.auth_audience)


def init_app(app: Flask) -> None:
    """Require a valid token on the data routes, if the app's config names a key."""
    checker = verifier(app.extensions["ticker"].config)
    if checker is None:
        return

    @app.before_request
    def require_token() -> None:
        # A CORS preflight carries no credentials by design; it reveals nothing either.
        if request.method == "OPTIONS" or not DATA_PATHS.match(request.path):
            return
        token = _token()
        if token is None:
            raise ApiError(
                401, "a token is required: ?token=... or Authorization: Bearer ...",
                headers={"WWW-Authenticate": _CHALLENGE},
            )
        try:
            g.grant = checker.verify(token)
        except auth.TokenError as exc:
            # Reasons are fixed words from ticker.auth: no quote or backslash to escape.
            raise ApiError(401, str(exc), headers={"WWW-Authenticate": (
                f'{_CHALLENGE}, error="invalid_token", error_description="{exc}"'
            )}) from None


def granted() -> frozenset[str] | None:
    """The symbols this request's token grants; ``None`` for all (or when auth is off)."""
    grant = g.get("grant")
    return None if grant is None else grant.symbols


def _token() -> str | None:
    """The bearer token of the header, else of the query; ``None`` when there is neither."""
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return request.args.get("token") or None
