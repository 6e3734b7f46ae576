"""Access tokens as JWTs: minting and checking them with a secret or a public key (pure),
the app's answers with and without one (in-process), streams behind them (real gunicorn),
the CLI, and the page passing its token on (real Chromium)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from hypothesis import given, settings
from hypothesis import strategies as st
from playwright.sync_api import expect, sync_playwright

from tests.market_state import UNIVERSE, filled_app
from tests.servers import ROOT, run_gunicorn
from tests.sse_client import SSEClient
from ticker import auth
from ticker.config import Config, ConfigError

SECRET = "a-secret-for-the-tests-0123456789"
NOW = int(time.time())
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
OTHER_EC_KEY = ec.generate_private_key(ec.SECP256R1())


def later(seconds: int = 600) -> int:
    return int(time.time()) + seconds


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def public_pem(key) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def private_pem(key, password: bytes | None = None) -> bytes:
    encryption = (serialization.BestAvailableEncryption(password) if password
                  else serialization.NoEncryption())
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)


def hs256(payload: bytes, header: dict | None = None, key: bytes = SECRET.encode()) -> str:
    """A JWS over ``payload`` as it comes, well-formed or not, with a valid HMAC under ``key``."""
    signing_input = f"{b64(json.dumps(header or {'alg': 'HS256', 'typ': 'JWT'}).encode())}." \
                    f"{b64(payload)}"
    return f"{signing_input}.{b64(hmac.new(key, signing_input.encode(), hashlib.sha256).digest())}"


def claims(**values) -> bytes:
    return json.dumps({"sym": ["AAA"], "exp": later(), **values}).encode()


HS = auth.Verifier.of(SECRET)
BY_RSA = auth.Verifier.of(public=RSA_KEY.public_key())
BY_EC = auth.Verifier.of(public=EC_KEY.public_key())
BOTH = auth.Verifier.of(SECRET, EC_KEY.public_key())


# Pure: mint and verify -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "verifier"),
    [(SECRET, HS), (RSA_KEY, BY_RSA), (EC_KEY, BY_EC), (SECRET, BOTH), (EC_KEY, BOTH)],
    ids=["hs256", "rs256", "es256", "both-hs256", "both-es256"],
)
@pytest.mark.parametrize(
    ("symbols", "granted"),
    [
        (["AAA"], frozenset({"AAA"})),
        (["aaa", " brk.b ", "AAA"], frozenset({"AAA", "BRK.B"})),
        ("*", None),
    ],
)
def test_a_minted_token_verifies_to_its_grant(key, verifier, symbols, granted):
    expires = later(60)
    grant = verifier.verify(auth.mint(key, symbols, expires))
    assert grant == auth.Grant(granted, expires)
    assert grant.allows("AAA")
    assert grant.allows("CCC") is (granted is None)


@pytest.mark.parametrize(
    ("key", "alg", "checking_key"),
    [(SECRET, "HS256", SECRET), (RSA_KEY, "RS256", public_pem(RSA_KEY)),
     (EC_KEY, "ES256", public_pem(EC_KEY))],
)
def test_a_token_is_a_standard_jwt(key, alg, checking_key):
    token = auth.mint(key, ["AAA", "BRK.B"], NOW + 60, audience="ticker")
    assert jwt.get_unverified_header(token) == {"alg": alg, "typ": "JWT"}
    # Any JWT library reads it: here PyJWT itself, outside ticker.auth.
    assert jwt.decode(token, checking_key, algorithms=[alg], audience="ticker",
                      options={"verify_exp": False}) == {
        "sym": ["AAA", "BRK.B"], "exp": NOW + 60, "aud": "ticker"}
    assert len(token) < 600 and token.count(".") == 2
    assert token.replace(".", "").replace("-", "").replace("_", "").isalnum()


def test_an_identity_providers_token_is_read_as_it_is_written():
    """Lowercase symbols and extra claims, as another issuer may write them."""
    token = jwt.encode({"sym": ["aaa"], "exp": later(), "sub": "ann", "iat": NOW,
                        "iss": "https://id.example"}, EC_KEY, algorithm="ES256",
                       headers={"kid": "key-1"})
    assert BY_EC.verify(token).symbols == {"AAA"}


def _tampered_payload() -> str:
    header, _, signature = auth.mint(SECRET, ["AAA"], later()).split(".")
    widened = b64(json.dumps({"sym": "*", "exp": later()}, separators=(",", ":")).encode())
    return f"{header}.{widened}.{signature}"


_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _tampered_signature(key=SECRET) -> str:
    token = auth.mint(key, ["AAA"], later())
    head, _, signature = token.rpartition(".")
    return f"{head}.{_ALPHABET[_ALPHABET.index(signature[0]) ^ 1]}{signature[1:]}"


def _respelled_signature() -> str:
    """The same signature bytes spelled another way: the unused low bits of its last character."""
    token = auth.mint(SECRET, ["AAA"], later())
    respelled = token[:-1] + _ALPHABET[_ALPHABET.index(token[-1]) ^ 1]
    same = [base64.urlsafe_b64decode(t.split(".")[2] + "=") for t in (token, respelled)]
    assert same[0] == same[1] and respelled != token
    return respelled


def _unsigned(signature: str = "") -> str:
    """``alg: none``: no signature at all, or one made up."""
    header = b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return f"{header}.{b64(claims(sym='*'))}.{signature}"


def _alg_confusion(key=EC_KEY) -> str:
    """HS256 "signed" with the server's public key PEM as the secret: the classic forgery."""
    return hs256(claims(sym="*"), key=public_pem(key))


def _relabelled(alg: str) -> str:
    """An ES256 token whose header now names ``alg``; the signature is unchanged."""
    _, payload, signature = auth.mint(EC_KEY, ["AAA"], later()).split(".")
    return f"{b64(json.dumps({'alg': alg, 'typ': 'JWT'}).encode())}.{payload}.{signature}"


BAD_TOKENS = {
    # (verifier, token, reason)
    "expires-now": (HS, lambda: auth.mint(SECRET, ["AAA"], int(time.time())), "token expired"),
    "expired": (HS, lambda: auth.mint(SECRET, ["AAA"], NOW - 1), "token expired"),
    "expired-es256": (BY_EC, lambda: auth.mint(EC_KEY, ["AAA"], NOW - 1), "token expired"),
    "not-yet-valid": (HS, lambda: hs256(claims(nbf=later())), "not yet valid"),
    "tampered-payload": (HS, _tampered_payload, "signature does not match"),
    "tampered-signature": (HS, _tampered_signature, "signature does not match"),
    "tampered-rs256": (BY_RSA, lambda: _tampered_signature(RSA_KEY), "signature does not match"),
    "respelled-signature": (HS, _respelled_signature, "malformed"),
    "wrong-secret": (HS, lambda: auth.mint("another-secret-entirely-0123456789", ["AAA"],
                                           later()), "signature does not match"),
    "another-ec-key": (BY_EC, lambda: auth.mint(OTHER_EC_KEY, ["AAA"], later()),
                       "signature does not match"),
    "none-unsigned": (HS, _unsigned, "malformed"),
    "none-with-signature": (BOTH, lambda: _unsigned("c2lnbmF0dXJl"), "algorithm not accepted"),
    "confusion-public-only": (BY_EC, _alg_confusion, "algorithm not accepted (ES256 only)"),
    "confusion-with-secret": (BOTH, _alg_confusion, "signature does not match"),
    "rs256-to-a-secret": (HS, lambda: auth.mint(RSA_KEY, ["AAA"], later()),
                          "algorithm not accepted (HS256 only)"),
    "es256-to-rsa": (BY_RSA, lambda: auth.mint(EC_KEY, ["AAA"], later()),
                     "algorithm not accepted (RS256 only)"),
    "relabelled-es384": (BY_EC, lambda: _relabelled("ES384"), "algorithm not accepted"),
    "relabelled-hs256": (BOTH, lambda: _relabelled("HS256"), "signature does not match"),
    "alg-not-text": (HS, lambda: hs256(claims(), {"alg": ["HS256"]}), "algorithm not accepted"),
    "no-exp": (HS, lambda: hs256(json.dumps({"sym": ["AAA"]}).encode()), "no exp claim"),
    "exp-null": (HS, lambda: hs256(claims(exp=None)), "no exp claim"),
    "exp-word": (HS, lambda: hs256(claims(exp="soon")), "malformed"),
    "exp-text": (HS, lambda: hs256(claims(exp=str(later()))), "exp must be a number"),
    "exp-bool": (HS, lambda: hs256(claims(exp=True)), "expired"),  # true is 1: 1970
    "no-sym": (HS, lambda: hs256(json.dumps({"exp": later()}).encode()), "no sym claim"),
    "sym-string": (HS, lambda: hs256(claims(sym="AAA")), "sym must be a list"),
    "sym-numbers": (HS, lambda: hs256(claims(sym=[1])), "sym must be a list"),
    "sym-object": (BY_EC, lambda: jwt.encode({"sym": {"AAA": 1}, "exp": later()}, EC_KEY,
                                             algorithm="ES256"), "sym must be a list"),
    "unexpected-audience": (HS, lambda: auth.mint(SECRET, ["AAA"], later(), "elsewhere"),
                            "audience does not match"),
    "signed-not-json": (HS, lambda: hs256(b"not json"), "malformed"),
    "signed-not-utf8": (HS, lambda: hs256(b"\xff\xfe"), "malformed"),
    "signed-not-object": (HS, lambda: hs256(b'["AAA"]'), "malformed"),
    "kid-not-text": (HS, lambda: hs256(claims(), {"alg": "HS256", "kid": 7}), "malformed"),
    "header-not-object": (HS, lambda: "WzFd." + hs256(claims()).split(".", 1)[1], "malformed"),
    "padding": (HS, lambda: auth.mint(SECRET, ["AAA"], later()) + "=", "malformed"),
    "four-parts": (HS, lambda: auth.mint(SECRET, ["AAA"], later()) + ".x", "malformed"),
    "too-long": (HS, lambda: hs256(claims(pad="x" * 9000)), "malformed"),
    "empty": (HS, lambda: "", "malformed"),
    "garbage": (HS, lambda: "garbage", "malformed"),
    "three-garbage-parts": (HS, lambda: "a.b.c", "malformed"),
    "non-ascii": (HS, lambda: "\u00e9\u00e9.\u00e9\u00e9.\u00e9", "malformed"),
    "space": (HS, lambda: "eyJ9 .abc.def", "malformed"),
}


@pytest.mark.parametrize("name", sorted(BAD_TOKENS))
def test_a_bad_token_is_refused_with_a_short_reason(name):
    verifier, make, reason = BAD_TOKENS[name]
    with pytest.raises(auth.TokenError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        verifier.verify(make())


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                 max_size=3),
    max_leaves=8,
)
_CLAIM_NAMES = st.sampled_from(["sym", "exp", "nbf", "iat", "aud", "iss", "sub", "jti", "x"])
_HEADER_NAMES = st.sampled_from(["alg", "typ", "kid", "crit", "b64", "jku", "x"])


@settings(max_examples=300, deadline=None, database=None)
@given(
    header=st.dictionaries(_HEADER_NAMES, _JSON | st.sampled_from(["HS256", "none", "ES256"])),
    body=st.dictionaries(_CLAIM_NAMES, _JSON | st.sampled_from(["*", ["AAA"], later()])),
    text=st.text(max_size=40),
)
def test_whatever_a_token_holds_the_answer_is_a_grant_or_a_token_error(header, body, text):
    """Signed nonsense included: a key holder may write claims of any shape."""
    checking = auth.Verifier.of(SECRET, EC_KEY.public_key(), audience="ticker")
    for token in (hs256(json.dumps(body).encode(), header), text):
        try:
            assert isinstance(checking.verify(token), auth.Grant)
        except auth.TokenError as exc:
            assert str(exc) and '"' not in str(exc) and "\\" not in str(exc)


def test_an_audience_is_required_once_configured():
    checking = auth.Verifier.of(SECRET, audience="ticker")
    assert checking.verify(auth.mint(SECRET, ["AAA"], later(), "ticker")).symbols == {"AAA"}
    as_list = hs256(claims(aud=["other", "ticker"]))
    assert checking.verify(as_list).symbols == {"AAA"}
    for token, reason in [
        (auth.mint(SECRET, ["AAA"], later()), "no aud claim"),
        (auth.mint(SECRET, ["AAA"], later(), "elsewhere"), "audience does not match"),
        (hs256(claims(aud=7)), "audience does not match"),
    ]:
        with pytest.raises(auth.TokenError, match=reason):
            checking.verify(token)


@pytest.mark.parametrize(
    ("key", "symbols", "expires", "reason"),
    [
        ("", ["AAA"], NOW, "secret"),
        (SECRET, [], NOW, "at least one"),
        (SECRET, ["A$B"], NOW, "malformed symbol"),
        (SECRET, [""], NOW, "malformed symbol"),
        (SECRET, ["AAA"], 1.5, "whole"),
        (SECRET, ["AAA"], True, "whole"),
        ("x" * 31, ["AAA"], NOW, "at least 32 bytes"),
        (rsa.generate_private_key(public_exponent=65537, key_size=1024), ["AAA"], NOW, "2048"),
        (ec.generate_private_key(ec.SECP384R1()), ["AAA"], NOW, "P-256"),
        (ed25519.Ed25519PrivateKey.generate(), ["AAA"], NOW, "only RSA and EC"),
    ],
    ids=["no-secret", "no-symbols", "bad-symbol", "empty-symbol", "float-expiry",
         "bool-expiry", "short-secret", "small-rsa", "p384", "ed25519"],
)
def test_mint_refuses_what_it_cannot_sign(key, symbols, expires, reason):
    with pytest.raises(auth.TokenError, match=reason):
        auth.mint(key, symbols, expires)


@pytest.mark.parametrize(
    ("load", "pem", "reason"),
    [
        (auth.public_key, private_pem(EC_KEY), "private key: give its public half"),
        (auth.public_key, b"garbage", "not a PEM public key"),
        (auth.public_key, public_pem(ec.generate_private_key(ec.SECP384R1())), "P-256"),
        (auth.public_key, public_pem(ed25519.Ed25519PrivateKey.generate()), "only RSA and EC"),
        (auth.private_key, private_pem(EC_KEY, b"pass"), "encrypted"),
        (auth.private_key, public_pem(EC_KEY), "not a PEM private key"),
        (auth.private_key, b"", "not a PEM private key"),
    ],
    ids=["public-given-private", "public-garbage", "public-p384", "public-ed25519",
         "private-encrypted", "private-given-public", "private-empty"],
)
def test_an_unusable_key_file_is_refused(load, pem, reason):
    with pytest.raises(auth.AuthKeyError, match=reason):
        load(pem)


def test_keys_load_from_pem():
    assert auth.public_key(public_pem(RSA_KEY)).public_numbers() == \
        RSA_KEY.public_key().public_numbers()
    loaded = auth.private_key(private_pem(EC_KEY))
    assert BY_EC.verify(auth.mint(loaded, "*", later())).symbols is None


def test_a_secret_shorter_than_the_hash_is_a_configuration_error():
    with pytest.raises(ConfigError, match="TICKER_AUTH_SECRET must be at least 32 bytes"):
        Config.load(environ={"TICKER_AUTH_SECRET": "x" * 31})
    with pytest.raises(ConfigError, match="TICKER_AUTH_SECRET"):  # 16 characters, 32 bytes
        Config.load(environ={"TICKER_AUTH_SECRET": "\u00e9" * 15})
    assert Config.load(environ={"TICKER_AUTH_SECRET": "\u00e9" * 16}).auth_secret
    assert "secret" not in repr(Config.load({"auth_secret": SECRET}))


@pytest.mark.parametrize(
    ("content", "reason"),
    [(None, "cannot read"), (b"not a key", "not a PEM public key"),
     (private_pem(RSA_KEY), "private key")],
)
def test_an_unusable_public_key_file_stops_the_app(tmp_path, content, reason):
    path = tmp_path / "public.pem"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ConfigError, match=f"TICKER_AUTH_PUBLIC_KEY: .*{reason}"):
        filled_app(auth_public_key=str(path))


# In-process: who gets what ----------------------------------------------------------------


@pytest.fixture
def app():
    return filled_app(auth_secret=SECRET)


@pytest.fixture
def client(app):
    return app.test_client()


TOKENS = {
    "valid": lambda: auth.mint(SECRET, ["AAA", "CCC"], later()),
    "everything": lambda: auth.mint(SECRET, "*", later()),
    "expired": lambda: auth.mint(SECRET, ["AAA"], int(time.time()) - 1),
    "tampered": _tampered_payload,
    "wrong-secret": lambda: auth.mint("another-secret-entirely-0123456789", ["AAA"], later()),
    "alg-none": _unsigned,
    "wrong-symbol": lambda: auth.mint(SECRET, ["CCC"], later()),
}
INVALID = {"expired", "tampered", "wrong-secret", "alg-none"}

# Streams are asked with HEAD: validated exactly as GET, without a socket to stream to.
PATHS = {
    "stream": ("HEAD", "/stream?symbols=AAA"),
    "stream-one": ("HEAD", "/stream/AAA"),
    "snapshot": ("GET", "/api/snapshot?symbols=AAA"),
}


def ask(client, path_name, token, form):
    method, path = PATHS[path_name]
    headers = {}
    if token is not None and form == "header":
        headers["Authorization"] = f"Bearer {token}"
    elif token is not None:
        path += f"&token={token}" if "?" in path else f"?token={token}"
    return client.open(path, method=method, headers=headers)


@pytest.mark.parametrize("form", ["query", "header"])
@pytest.mark.parametrize("path_name", sorted(PATHS))
@pytest.mark.parametrize(
    ("kind", "status"),
    [("valid", 200), ("everything", 200), ("missing", 401), ("expired", 401),
     ("tampered", 401), ("wrong-secret", 401), ("alg-none", 401), ("wrong-symbol", 403)],
)
def test_data_routes_answer_by_token(client, path_name, form, kind, status):
    token = None if kind == "missing" else TOKENS[kind]()
    response = ask(client, path_name, token, form)
    assert response.status_code == status
    if status != 200:
        assert response.is_json
        if response.request.method == "GET":
            assert response.json["error"]
    challenge = response.headers.get("WWW-Authenticate", "")
    assert challenge.startswith('Bearer realm="ticker"') is (status == 401)
    assert ('error="invalid_token"' in challenge) is (kind in INVALID)


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("expired", "token expired"),
        ("tampered", "token signature does not match"),
        ("alg-none", "malformed token"),
        ("wrong-symbol", "this token does not grant AAA, BRK.B"),
    ],
)
def test_refusals_say_why(client, kind, reason):
    response = client.get(f"/api/snapshot?symbols=AAA,BRK.B,CCC&token={TOKENS[kind]()}")
    assert response.json["error"] == reason


def test_the_challenge_carries_the_reason(client):
    response = client.get(f"/api/symbols?token={TOKENS['expired']()}")
    assert response.headers["WWW-Authenticate"] == (
        'Bearer realm="ticker", error="invalid_token", error_description="token expired"')
    assert client.get("/api/symbols").headers["WWW-Authenticate"] == 'Bearer realm="ticker"'


@pytest.fixture(params=["rs256", "es256"])
def key_only_client(request, tmp_path):
    """An app holding only a public key: it checks tokens it could never sign."""
    key = RSA_KEY if request.param == "rs256" else EC_KEY
    path = tmp_path / "public.pem"
    path.write_bytes(public_pem(key))
    return key, filled_app(auth_public_key=str(path)).test_client()


def test_a_public_key_alone_checks_tokens(key_only_client):
    key, client = key_only_client
    alg = "RS256" if isinstance(key, rsa.RSAPrivateKey) else "ES256"
    good = auth.mint(key, ["AAA"], later())
    assert client.get(f"/api/snapshot?token={good}").json[0]["symbol"] == "AAA"
    assert client.head("/stream/AAA", headers={"Authorization": f"Bearer {good}"}).status_code \
        == 200
    assert client.get(f"/api/snapshot?symbols=CCC&token={good}").status_code == 403
    refused = {
        "token expired": auth.mint(key, ["AAA"], NOW - 1),
        f"token algorithm not accepted ({alg} only)": auth.mint(SECRET, "*", later()),
        "token algorithm not accepted": hs256(claims(sym="*"), key=public_pem(key)),
    }
    for reason, token in refused.items():
        response = client.get(f"/api/snapshot?token={token}")
        assert response.status_code == 401
        assert response.json["error"].startswith(reason)
        assert f'error_description="{response.json["error"]}"' in \
            response.headers["WWW-Authenticate"]


def test_a_configured_audience_is_checked():
    client = filled_app(auth_secret=SECRET, auth_audience="ticker").test_client()
    assert client.get(f"/api/symbols?token={auth.mint(SECRET, '*', later(), 'ticker')}") \
        .status_code == 200
    refused = client.get(f"/api/symbols?token={auth.mint(SECRET, '*', later())}")
    assert refused.status_code == 401 and refused.json["error"] == "token has no aud claim"


def test_naming_no_symbols_means_every_granted_symbol(client):
    token = auth.mint(SECRET, ["CCC", "AAA", "ZZZ"], later())
    listed = client.get(f"/api/symbols?token={token}")
    assert [c["symbol"] for c in listed.json] == ["AAA", "CCC"]  # listing order
    snapshot = client.get(f"/api/snapshot?token={token}")
    assert [q["symbol"] for q in snapshot.json] == ["AAA", "CCC"]
    assert client.head(f"/stream?token={token}").status_code == 200
    every = auth.mint(SECRET, "*", later())
    assert len(client.get(f"/api/symbols?token={every}").json) == len(UNIVERSE)


def test_a_token_for_no_listed_symbol_gets_403(client):
    token = auth.mint(SECRET, ["ZZZ"], later())
    for path in ("/api/symbols", "/api/snapshot", "/stream"):
        response = client.get(f"{path}?token={token}")
        assert response.status_code == 403 and response.json["error"]


def test_an_unlisted_symbol_is_403_to_a_narrow_token_and_404_to_a_wide_one(client):
    narrow = auth.mint(SECRET, ["AAA"], later())
    wide = auth.mint(SECRET, "*", later())
    assert client.get(f"/api/snapshot?symbols=ZZZ&token={narrow}").status_code == 403
    assert client.get(f"/api/snapshot?symbols=ZZZ&token={wide}").status_code == 404
    assert client.get(f"/api/snapshot?symbols=A$&token={narrow}").status_code == 400


@pytest.mark.parametrize(
    "authorization",
    ["", "Bearer", "Bearer   ", "Basic dXNlcjpwYXNz", "Token abc"],
)
def test_an_authorization_header_without_a_bearer_token_is_401(client, authorization):
    response = client.get("/api/symbols", headers={"Authorization": authorization})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_the_header_token_is_used_before_the_query_one(client):
    good = auth.mint(SECRET, "*", later())
    headers = {"Authorization": f"bearer {good}"}
    assert client.get("/api/symbols?token=garbage", headers=headers).status_code == 200


@pytest.mark.parametrize(
    "path", ["/", "/favicon.ico", "/static/app.js", "/healthz", "/metrics"]
)
def test_the_page_health_and_metrics_need_no_token(client, path):
    with client.get(path) as response:
        assert response.status_code == 200


def test_routing_errors_behind_auth_are_still_json(client):
    assert client.get("/api/nothing").status_code == 401
    token = auth.mint(SECRET, "*", later())
    missing = client.get(f"/api/nothing?token={token}")
    assert missing.status_code == 404 and missing.json["error"]
    wrong = client.post(f"/api/symbols?token={token}")
    assert wrong.status_code == 405 and wrong.json["error"]


def test_without_a_secret_or_key_no_token_is_asked_for():
    client = filled_app().test_client()
    assert client.get("/api/symbols").status_code == 200
    assert client.get("/api/symbols?token=garbage").status_code == 200
    assert client.head("/stream?symbols=AAA").status_code == 200


# Real processes: streams behind tokens, and the CLI ---------------------------------------


def symbols_of(server, token):
    status, _, body = server.get(f"/api/symbols?token={token}")
    assert status == 200
    return [company["symbol"] for company in json.loads(body)]


def test_streams_behind_tokens(tmp_path, market):
    env = {"TICKER_AUTH_SECRET": SECRET}
    with run_gunicorn(tmp_path, market.feed, workers=1, env=env) as server:
        listed = symbols_of(server, auth.mint(SECRET, "*", later()))
        granted = listed[3:6]
        token = auth.mint(SECRET, granted, later())

        # No symbols named: the stream carries exactly the granted ones.
        with SSEClient(server.url, f"/stream?token={token}") as client:
            assert client.status == 200
            snapshot = client.next(type="snapshot")
            assert sorted(q["symbol"] for q in snapshot.json()["quotes"]) == sorted(granted)
            live = client.read_until(
                lambda e: sum(x.type == "price" for x in client.events) >= 5, timeout=15)
            assert {e.json()["symbol"] for e in live if e.type == "price"} <= set(granted)
            last_id = client.parser.last_event_id

        # The header form, resuming where the first stream left off.
        with SSEClient(server.url, f"/stream?symbols={granted[0]}", last_event_id=last_id,
                       headers={"Authorization": f"Bearer {token}"}) as client:
            assert client.status == 200
            event = client.next(type="price", timeout=15)
            assert event.json()["symbol"] == granted[0]
            assert "snapshot" not in {e.type for e in client.events}

        refusals = [
            (f"/stream/{listed[0]}?token={token}", {}, 403),
            ("/stream", {}, 401),
            (f"/stream?token={token[:-2]}", {}, 401),
            (f"/stream?token={_unsigned()}", {}, 401),
            ("/stream", {"Authorization": f"Bearer {auth.mint(SECRET, '*', NOW - 1)}"}, 401),
        ]
        for path, headers, status in refusals:
            with SSEClient(server.url, path, headers=headers) as client:
                assert client.status == status, path
                assert json.loads(client.body())["error"]
                assert ("WWW-Authenticate" in client.headers) is (status == 401)
        assert "Traceback" not in server.output()


def test_streams_behind_a_public_key_only(tmp_path, market):
    """The instance holds no secret and no private key, yet checks every token."""
    (tmp_path / "public.pem").write_bytes(public_pem(EC_KEY))
    env = {"TICKER_AUTH_PUBLIC_KEY": str(tmp_path / "public.pem")}
    with run_gunicorn(tmp_path, market.feed, workers=1, env=env) as server:
        granted = symbols_of(server, auth.mint(EC_KEY, "*", later()))[:2]
        token = auth.mint(EC_KEY, granted, later())
        with SSEClient(server.url, f"/stream?token={token}") as client:
            assert client.status == 200
            snapshot = client.next(type="snapshot")
            assert sorted(q["symbol"] for q in snapshot.json()["quotes"]) == sorted(granted)
        forgeries = [
            (auth.mint(SECRET, "*", later()), "token algorithm not accepted (ES256 only)"),
            (_alg_confusion(), "token algorithm not accepted (ES256 only)"),
            (_unsigned("c2lnbmF0dXJl"), "token algorithm not accepted (ES256 only)"),
            (auth.mint(OTHER_EC_KEY, "*", later()), "token signature does not match"),
        ]
        for forged, reason in forgeries:
            with SSEClient(server.url, f"/stream?token={forged}") as client:
                assert client.status == 401
                assert json.loads(client.body())["error"] == reason
        assert "Traceback" not in server.output()


def mint_cli(*args: str, secret: str | None = SECRET,
             env: dict | None = None) -> subprocess.CompletedProcess:
    environment = {"PATH": "/usr/bin:/bin", **(env or {})}
    if secret is not None:
        environment["TICKER_AUTH_SECRET"] = secret
    return subprocess.run(
        [sys.executable, "-m", "ticker", "token", *args],
        cwd=ROOT, env=environment, capture_output=True, text=True, timeout=30,
    )


def test_cli_prints_a_token_the_server_accepts():
    done = mint_cli("--symbols", "aaa,BRK.B", "--ttl", "120")
    assert done.returncode == 0, done.stderr
    grant = HS.verify(done.stdout.strip())
    assert grant.symbols == {"AAA", "BRK.B"}
    assert time.time() + 100 < grant.expires <= time.time() + 120
    everything = mint_cli("--symbols", "*")
    assert HS.verify(everything.stdout.strip()).symbols is None


@pytest.mark.parametrize("kind", ["rs256", "es256"])
def test_cli_signs_with_a_private_key(tmp_path, kind):
    key, verifier = (RSA_KEY, BY_RSA) if kind == "rs256" else (EC_KEY, BY_EC)
    (tmp_path / "private.pem").write_bytes(private_pem(key))
    done = mint_cli("--symbols", "AAA", "--key", str(tmp_path / "private.pem"), secret=None)
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip()
    assert jwt.get_unverified_header(token)["alg"] == kind.upper()
    assert verifier.verify(token).symbols == {"AAA"}


def test_cli_tokens_carry_the_configured_audience():
    done = mint_cli("--symbols", "AAA", env={"TICKER_AUTH_AUDIENCE": "ticker"})
    assert done.returncode == 0, done.stderr
    assert auth.Verifier.of(SECRET, audience="ticker").verify(done.stdout.strip()).symbols \
        == {"AAA"}


@pytest.fixture(scope="module")
def key_files(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("keys")
    (folder / "public.pem").write_bytes(public_pem(EC_KEY))
    (folder / "encrypted.pem").write_bytes(private_pem(EC_KEY, b"pass"))
    return folder


@pytest.mark.parametrize(
    ("args", "secret", "reason"),
    [
        (("--symbols", "AAA"), None, "TICKER_AUTH_SECRET is not set"),
        (("--symbols", "AAA"), "short", "at least 32 bytes"),
        (("--symbols", "A$B"), SECRET, "malformed symbol"),
        (("--symbols", "AAA", "--ttl", "0"), SECRET, "--ttl"),
        (("--symbols", "AAA", "--ttl", "soon"), SECRET, "--ttl"),
        ((), SECRET, "--symbols"),
        (("--symbols", "AAA", "--key", "missing.pem"), None, "--key"),
        (("--symbols", "AAA", "--key", "{keys}/public.pem"), None, "not a PEM private key"),
        (("--symbols", "AAA", "--key", "{keys}/encrypted.pem"), None, "encrypted"),
    ],
)
def test_cli_errors_are_one_line(key_files, args, secret, reason):
    done = mint_cli(*(arg.format(keys=key_files) for arg in args), secret=secret)
    assert done.returncode != 0
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1 and reason in done.stderr
    assert done.stderr.startswith("error: ")


# The page passes its token on -------------------------------------------------------------


@pytest.mark.browser
def test_the_page_passes_its_token_to_every_data_request(tmp_path, market):
    token = auth.mint(SECRET, "*", later())
    env = {"TICKER_AUTH_SECRET": SECRET}
    with run_gunicorn(tmp_path, market.feed, workers=1, env=env) as server, \
            sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            page = browser.new_page(base_url=server.url)
            sent = []
            page.on("request", lambda request: sent.append(urlsplit(request.url)))
            page.goto(f"/?token={token}")
            expect(page.locator("#connection")).to_have_attribute(
                "data-state", "live", timeout=10_000)
            data = [url for url in sent if url.path == "/stream" or url.path.startswith("/api/")]
            paths = {url.path for url in data}
            assert {"/api/symbols", "/stream"} <= paths <= {"/api/symbols", "/api/snapshot",
                                                            "/stream"}
            assert all(parse_qs(url.query)["token"] == [token] for url in data)

            page.goto("/")  # no token: the page says why it cannot load
            expect(page.locator("#notice")).to_contain_text("token is required", timeout=10_000)
        finally:
            browser.close()
