"""Access tokens: which symbols a client may read, and until when, as standard JWTs.

A token is a JWT (RFC 7519) whose claims grant symbols: ``sym`` (a list of symbols, or
``"*"`` for all) until ``exp`` (Unix seconds). PyJWT checks the signature and the time
claims; this module decides which keys are trusted, with which algorithm, and what a
grant looks like.

Strategy against forged tokens: every key is pinned to exactly one algorithm by its own
type, never by the token. A shared secret (``str``) checks HS256 only; an RSA public key
RS256 only; an EC P-256 public key ES256 only. The token's ``alg`` header merely picks
one of the configured pairs, so ``none``, or HS256 "signed" with a public key's PEM as
the secret, finds no key and is refused before any signature is computed. ``exp`` and
``sym`` are required; ``aud`` must match the configured audience when there is one, and
a token that names an audience is refused by a server that expects none.

Each token has one valid spelling, so it can serve as a key in logs or a deny list: the
shape is checked first (three base64url segments, no padding, at most 8 KiB) and PyJWT
refuses a segment that is not the canonical encoding of its bytes.

Pure: keys come in as objects or PEM bytes, never as paths; PyJWT reads the clock.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from simulator.wire import SYMBOL_RE

__all__ = [
    "ALL", "MIN_SECRET_BYTES", "AuthKeyError", "Grant", "TokenError", "Verifier",
    "SigningKey", "mint", "private_key", "public_key",
]

ALL = "*"
MIN_SECRET_BYTES = 32  # RFC 7518 §3.2: an HS256 key at least as long as its hash, 256 bits
_MAX_TOKEN = 8192  # characters; identity providers' tokens run to a few KiB at most
_MIN_RSA_BITS = 2048  # RFC 7518 §3.3
_SHAPE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\Z")
# enforce_minimum_key_length: a short key raises instead of warning on every token.
_JWT = jwt.PyJWT({"require": ["exp", "sym"], "enforce_minimum_key_length": True})

SigningKey = str | rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
_CheckingKey = str | rsa.RSAPublicKey | ec.EllipticCurvePublicKey


class TokenError(ValueError):
    """A token that cannot be made or cannot be accepted; the text says which, briefly."""


class AuthKeyError(ValueError):
    """A key that cannot sign or check tokens: the wrong kind, too short, or unreadable."""


@dataclass(frozen=True)
class Grant:
    """What a valid token allows: ``symbols`` (``None``: every symbol) until ``expires``."""

    symbols: frozenset[str] | None
    expires: int

    def allows(self, symbol: str) -> bool:
        return self.symbols is None or symbol in self.symbols


def _algorithm(key: SigningKey | _CheckingKey) -> str:
    """The one algorithm ``key`` is used with: HS256, RS256 or ES256.

    Raises:
        AuthKeyError: a secret under 32 bytes, an RSA key under 2048 bits, an EC key off
            P-256, or any other kind of key.
    """
    if isinstance(key, str):
        if len(key.encode()) < MIN_SECRET_BYTES:
            raise AuthKeyError(f"a secret must be at least {MIN_SECRET_BYTES} bytes (HS256)")
        return "HS256"
    if isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
        if key.key_size < _MIN_RSA_BITS:
            raise AuthKeyError(f"an RSA key must have at least {_MIN_RSA_BITS} bits")
        return "RS256"
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        if not isinstance(key.curve, ec.SECP256R1):
            raise AuthKeyError(f"an EC key must be on P-256 for ES256, not {key.curve.name}")
        return "ES256"
    raise AuthKeyError("only RSA and EC P-256 keys are supported")


def public_key(pem: bytes) -> rsa.RSAPublicKey | ec.EllipticCurvePublicKey:
    """The RSA or EC P-256 public key in ``pem``, for checking tokens.

    Raises:
        AuthKeyError: not a PEM public key (a private key included: a server that only
            checks tokens should not hold what signs them), or an unsupported one.
    """
    if b"PRIVATE KEY-----" in pem:
        raise AuthKeyError("this is a private key: give its public half (openssl pkey -pubout)")
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, UnsupportedAlgorithm):
        raise AuthKeyError("not a PEM public key (-----BEGIN PUBLIC KEY-----)") from None
    _algorithm(key)
    return key


def private_key(pem: bytes) -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey:
    """The unencrypted RSA or EC P-256 private key in ``pem``, for signing tokens.

    Raises:
        AuthKeyError: not an unencrypted PEM private key, or an unsupported one.
    """
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except TypeError:
        raise AuthKeyError("the private key is encrypted; decrypt it first") from None
    except (ValueError, UnsupportedAlgorithm):
        raise AuthKeyError("not a PEM private key (-----BEGIN PRIVATE KEY-----)") from None
    _algorithm(key)
    return key


def mint(key: SigningKey, symbols: Iterable[str] | str, expires: int,
         audience: str | None = None) -> str:
    """A token for ``symbols`` (a list, or ``"*"`` for all) valid until ``expires``.

    ``key`` is the shared secret (HS256) or a private key (RS256 or ES256, by its type);
    ``audience``, when given, becomes the ``aud`` claim.

    Raises:
        TokenError: no key or an unusable one, no symbols, a malformed symbol, or an
            expiry that is not a whole number.
    """
    if not key:
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
    try:
        alg = _algorithm(key)
    except AuthKeyError as exc:
        raise TokenError(str(exc)) from None
    claims: dict[str, Any] = {"sym": granted, "exp": expires}
    if audience:
        claims["aud"] = audience
    return _JWT.encode(claims, key, algorithm=alg)


@dataclass(frozen=True)
class Verifier:
    """The keys a server accepts tokens from, each pinned to its one algorithm.

    Build it with ``Verifier.of(secret, public_key, audience)``; ``keys`` maps each
    algorithm to its key.
    """

    keys: Mapping[str, _CheckingKey] = field(repr=False)
    audience: str | None = None

    @classmethod
    def of(cls, secret: str = "",
           public: rsa.RSAPublicKey | ec.EllipticCurvePublicKey | None = None,
           audience: str | None = None) -> Verifier:
        """A verifier for a shared secret, a public key (see ``public_key``), or both.

        Raises:
            AuthKeyError: neither key, or a key that is too short or of the wrong kind.
        """
        if isinstance(public, str):
            raise AuthKeyError("a public key is an RSA or EC key object, not text")
        keys = {_algorithm(key): key for key in (secret, public) if key}
        if not keys:
            raise AuthKeyError("no secret or public key to check tokens with")
        return cls(keys, audience or None)

    def verify(self, token: str) -> Grant:
        """The grant ``token`` carries, if one of the keys signed it and it is still valid.

        Raises:
            TokenError: malformed, signed with another algorithm or key, altered, expired,
                not yet valid, for another audience, or without the claims a grant needs.
        """
        if len(token) > _MAX_TOKEN or not _SHAPE.match(token):
            raise TokenError("malformed token")
        try:
            alg = jwt.get_unverified_header(token).get("alg")
        except jwt.PyJWTError:
            raise TokenError("malformed token") from None
        key = self.keys.get(alg) if isinstance(alg, str) else None
        if key is None:
            accepted = " or ".join(sorted(self.keys))
            raise TokenError(f"token algorithm not accepted ({accepted} only)")
        try:
            claims = _JWT.decode(token, key, algorithms=[alg], audience=self.audience)
        except jwt.PyJWTError as exc:
            raise TokenError(_reason(exc)) from None
        return _grant(claims)


def _reason(exc: jwt.PyJWTError) -> str:
    """PyJWT's refusal in a few fixed words: no token text is ever echoed back."""
    if isinstance(exc, jwt.ExpiredSignatureError):
        return "token expired"
    if isinstance(exc, jwt.InvalidSignatureError):
        return "token signature does not match"
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return f"token has no {exc.claim} claim"
    if isinstance(exc, jwt.InvalidAudienceError):
        return "token audience does not match"
    if isinstance(exc, jwt.ImmatureSignatureError):
        return "token not yet valid"
    return "malformed token"


def _grant(claims: dict[str, Any]) -> Grant:
    """Signed claims still get their shape checked: an identity provider may differ."""
    expires, symbols = claims["exp"], claims["sym"]
    if isinstance(expires, bool) or not isinstance(expires, (int, float)):
        raise TokenError("malformed token: exp must be a number")
    if symbols == ALL:
        return Grant(None, int(expires))
    if not isinstance(symbols, list) or not all(isinstance(s, str) for s in symbols):
        raise TokenError("malformed token: sym must be a list of symbols or *")
    return Grant(frozenset(s.strip().upper() for s in symbols), int(expires))
