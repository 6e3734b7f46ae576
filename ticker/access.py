"""Who may read the market: a token check in front of the streams and the JSON API.

Off unless ``TICKER_AUTH_SECRET`` is set. Then every request for market data carries a
token (see ``ticker.auth``), as ``?token=`` (a browser's ``EventSource`` cannot set
headers) or ``Authorization: Bearer``. A missing or bad token is a 401 here, before any
route runs; which symbols the token grants is checked where the request's symbols are
read (``validation.parse_symbols``, given ``granted()``). The page, static files,
``/healthz`` and ``/metrics`` stay open. A stream is checked when it opens (and so on
every reconnect); one already open runs on past its token's expiry.
"""

from __future__ import annotations

import re
import time

from flask import Flask, g, request

from ticker import auth
from ticker.errors import ApiError

__all__ = ["DATA_PATHS", "granted", "init_app"]

# The routes that serve market data: /stream, /stream/<SYMBOL> and /api/*.
DATA_PATHS = re.compile(r"/(stream|stream/.*|api/.*)\Z", re.DOTALL)

_CHALLENGE = 'Bearer realm="ticker"'


def init_app(app: Flask) -> None:
    """Require a valid token on the data routes, if the app's config has a secret."""
    secret = app.extensions["ticker"].config.auth_secret
    if not secret:
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
            g.grant = auth.verify(secret, token, time.time())
        except auth.TokenError as exc:
            raise ApiError(
                401, str(exc), headers={"WWW-Authenticate": f'{_CHALLENGE}, error="invalid_token"'}
            ) from None


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
