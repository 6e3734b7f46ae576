"""Access tokens: which symbols a client may read, and until when, signed by the server.

A token is ``PAYLOAD.MAC``, both base64url without padding: ``PAYLOAD`` is compact JSON
``{"sym": ["A", "B"] or "*", "exp": UNIX_SECONDS}`` and ``MAC`` is HMAC-SHA256 of the
``PAYLOAD`` text under the server's secret. Signing the encoded text, not re-serialised
JSON, means nothing is ever parsed before it has been authenticated, and the MAC is
compared as text with ``hmac.compare_digest``, so each token has exactly one valid
spelling. Tokens hold no secret and need no store: any worker or instance sharing the
secret checks them alone.

Pure: the caller supplies the secret and the clock; no I/O.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass

from simulator.wire import SYMBOL_RE

__all__ = ["ALL", "Grant", "TokenError", "mint", "verify"]

ALL = "*"
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+\Z")


class TokenError(ValueError):
    """A token that cannot be made or cannot be accepted; the text says which, briefly."""


@dataclass(frozen=True)
class Grant:
    """What a valid token allows: ``symbols`` (``None``: every symbol) until ``expires``."""

    symbols: frozenset[str] | None
    expires: int

    def allows(self, symbol: str) -> bool:
        return self.symbols is None or symbol in self.symbols


def mint(secret: str, symbols: Iterable[str] | str, expires: int) -> str:
    """A token for ``symbols`` (a list, or ``"*"`` for all) valid until ``expires``.

    Raises:
        TokenError: no secret, no symbols, a malformed symbol, or an expiry that is not
            a whole number.
    """
    if not secret:
        raise TokenError("no secret to sign with")
    if isinstance(expires, bool) or not isinstance(expires, int):
        raise TokenError(f"expiry must be whole Unix seconds, not {expires!r}")
    if symbols == ALL:
        granted: str | list[str] = ALL
    else:
        granted = list(dict.fromkeys(s.strip().upper() for s in symbols))
        if not granted:
            raise TokenError("a token grants at least one symbol, or *")
        bad = [s for s in granted if not SYMBOL_RE.match(s)]
        if bad:
            raise TokenError(f"malformed symbol {bad[0][:20]!r}: expected e.g. ACME or BRK.B")
    payload = _encode(json.dumps({"sym": granted, "exp": expires}, separators=(",", ":")).encode())
    return f"{payload}.{_mac(secret, payload)}"


def verify(secret: str, token: str, now: float) -> Grant:
    """The grant ``token`` carries, if ``secret`` signed it and it has not expired at ``now``.

    Raises:
        TokenError: malformed, signed with another secret or altered, or expired.
    """
    payload, dot, mac = token.partition(".")
    if not (dot and _BASE64URL.match(payload) and _BASE64URL.match(mac)):
        raise TokenError("malformed token")
    if not hmac.compare_digest(mac, _mac(secret, payload)):
        raise TokenError("token signature does not match")
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (binascii.Error, ValueError):
        raise TokenError("malformed token") from None
    grant = _grant(claims)
    if now >= grant.expires:
        raise TokenError("token expired")
    return grant


def _grant(claims: object) -> Grant:
    """Signed claims still get their shape checked: a secret may outlive a token format."""
    if not isinstance(claims, dict):
        raise TokenError("malformed token")
    expires, symbols = claims.get("exp"), claims.get("sym")
    if isinstance(expires, bool) or not isinstance(expires, int):
        raise TokenError("malformed token")
    if symbols == ALL:
        return Grant(None, expires)
    if not isinstance(symbols, list) or not all(isinstance(s, str) for s in symbols):
        raise TokenError("malformed token")
    return Grant(frozenset(symbols), expires)


def _mac(secret: str, payload: str) -> str:
    return _encode(hmac.new(secret.encode(), payload.encode("ascii"), hashlib.sha256).digest())


def _encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")
