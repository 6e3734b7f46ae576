"""Access tokens: minting and checking them (pure), the app's answers with and without
one (in-process), streams behind them (real gunicorn), the CLI, and the page passing
its token on (real Chromium)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import subprocess
import sys
import time
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import expect, sync_playwright

from tests.market_state import UNIVERSE, filled_app
from tests.servers import ROOT, run_gunicorn
from tests.sse_client import SSEClient
from ticker import auth
from ticker.config import Config, ConfigError

SECRET = "a-secret-for-the-tests-0123456789"
NOW = 1_700_000_000


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def signed(payload: bytes, secret: str = SECRET) -> str:
    """A token over ``payload`` as it comes, well-formed or not, with a valid MAC."""
    text = b64(payload)
    return f"{text}.{b64(hmac.new(secret.encode(), text.encode(), hashlib.sha256).digest())}"


def later(seconds: int = 600) -> int:
    return int(time.time()) + seconds


# Pure: mint and verify -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("symbols", "granted"),
    [
        (["AAA"], frozenset({"AAA"})),
        (["aaa", " brk.b ", "AAA"], frozenset({"AAA", "BRK.B"})),
        ("*", None),
    ],
)
def test_a_minted_token_verifies_to_its_grant(symbols, granted):
    token = auth.mint(SECRET, symbols, NOW + 60)
    grant = auth.verify(SECRET, token, NOW)
    assert grant == auth.Grant(granted, NOW + 60)
    assert grant.allows("AAA")
    assert grant.allows("CCC") is (granted is None)


def test_a_token_is_compact_url_safe_text():
    token = auth.mint(SECRET, ["AAA", "BRK.B"], NOW + 60)
    payload, mac = token.split(".")
    assert json.loads(base64.urlsafe_b64decode(payload + "==")) == {
        "sym": ["AAA", "BRK.B"], "exp": NOW + 60,
    }
    assert len(mac) == 43 and len(token) < 120
    assert token.replace(".", "").replace("-", "").replace("_", "").isalnum()


def _tampered_payload() -> str:
    mac = auth.mint(SECRET, ["AAA"], NOW + 60).split(".")[1]
    widened = b64(json.dumps({"sym": "*", "exp": NOW + 60}, separators=(",", ":")).encode())
    return f"{widened}.{mac}"


_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _tampered_mac() -> str:
    token = auth.mint(SECRET, ["AAA"], NOW + 60)
    payload, mac = token.split(".")
    return f"{payload}.{_ALPHABET[_ALPHABET.index(mac[0]) ^ 1]}{mac[1:]}"


def _respelled_mac() -> str:
    """The same MAC bytes spelled another way: the unused low bits of its last character."""
    token = auth.mint(SECRET, ["AAA"], NOW + 60)
    respelled = token[:-1] + _ALPHABET[_ALPHABET.index(token[-1]) ^ 1]
    same = [base64.urlsafe_b64decode(t.split(".")[1] + "=") for t in (token, respelled)]
    assert same[0] == same[1] and respelled != token
    return respelled


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (auth.mint(SECRET, ["AAA"], NOW), "expired"),
        (auth.mint(SECRET, ["AAA"], NOW - 1), "expired"),
        (_tampered_payload(), "signature"),
        (_tampered_mac(), "signature"),
        (_respelled_mac(), "signature"),
        (auth.mint("another-secret-entirely", ["AAA"], NOW + 60), "signature"),
        (auth.mint(SECRET, ["AAA"], NOW + 60) + "=", "malformed"),
        (auth.mint(SECRET, ["AAA"], NOW + 60) + ".x", "malformed"),
        ("", "malformed"),
        ("garbage", "malformed"),
        ("a.b.c", "malformed"),
        ("\u00e9\u00e9.\u00e9\u00e9", "malformed"),
        ("eyJ9 .abc", "malformed"),
        (signed(b"not json"), "malformed"),
        (signed(b"\xff\xfe"), "malformed"),
        (signed(b'["AAA"]'), "malformed"),
        (signed(b'{"sym":["AAA"],"exp":"soon"}'), "malformed"),
        (signed(b'{"sym":["AAA"],"exp":true}'), "malformed"),
        (signed(b'{"sym":"AAA","exp":1800000000}'), "malformed"),
        (signed(b'{"sym":[1],"exp":1800000000}'), "malformed"),
    ],
    ids=[
        "expires-now", "expired", "tampered-payload", "tampered-mac", "respelled-mac",
        "wrong-secret",
        "padding", "three-parts", "empty", "no-dot", "not-base64", "non-ascii", "space",
        "signed-not-json", "signed-not-utf8", "signed-not-object", "exp-string", "exp-bool",
        "sym-string", "sym-numbers",
    ],
)
def test_a_bad_token_is_refused_with_a_short_reason(token, reason):
    with pytest.raises(auth.TokenError, match=reason):
        auth.verify(SECRET, token, NOW)


@pytest.mark.parametrize(
    ("secret", "symbols", "expires", "reason"),
    [
        ("", ["AAA"], NOW, "secret"),
        (SECRET, [], NOW, "at least one"),
        (SECRET, ["A$B"], NOW, "malformed symbol"),
        (SECRET, [""], NOW, "malformed symbol"),
        (SECRET, ["AAA"], 1.5, "whole"),
        (SECRET, ["AAA"], True, "whole"),
    ],
)
def test_mint_refuses_what_it_cannot_sign(secret, symbols, expires, reason):
    with pytest.raises(auth.TokenError, match=reason):
        auth.mint(secret, symbols, expires)


def test_a_short_secret_is_a_configuration_error():
    with pytest.raises(ConfigError, match="TICKER_AUTH_SECRET"):
        Config.load(environ={"TICKER_AUTH_SECRET": "short"})
    assert "secret" not in repr(Config.load({"auth_secret": SECRET}))


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
    "wrong-secret": lambda: auth.mint("another-secret-entirely", ["AAA"], later()),
    "wrong-symbol": lambda: auth.mint(SECRET, ["CCC"], later()),
}

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
     ("tampered", 401), ("wrong-secret", 401), ("wrong-symbol", 403)],
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
    assert challenge.startswith("Bearer ") is (status == 401)
    assert ('error="invalid_token"' in challenge) is (kind in ("expired", "tampered",
                                                               "wrong-secret"))


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("expired", "token expired"),
        ("tampered", "token signature does not match"),
        ("wrong-symbol", "this token does not grant AAA, BRK.B"),
    ],
)
def test_refusals_say_why(client, kind, reason):
    response = client.get(f"/api/snapshot?symbols=AAA,BRK.B,CCC&token={TOKENS[kind]()}")
    assert response.json["error"] == reason


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


def test_without_a_secret_no_token_is_asked_for():
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
            ("/stream", {"Authorization": f"Bearer {auth.mint(SECRET, '*', NOW)}"}, 401),
        ]
        for path, headers, status in refusals:
            with SSEClient(server.url, path, headers=headers) as client:
                assert client.status == status, path
                assert json.loads(client.body())["error"]
                assert ("WWW-Authenticate" in client.headers) is (status == 401)
        assert "Traceback" not in server.output()


def mint_cli(*args: str, secret: str | None = SECRET) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin"}
    if secret is not None:
        env["TICKER_AUTH_SECRET"] = secret
    return subprocess.run(
        [sys.executable, "-m", "ticker", "token", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=30,
    )


def test_cli_prints_a_token_the_server_accepts():
    done = mint_cli("--symbols", "aaa,BRK.B", "--ttl", "120")
    assert done.returncode == 0, done.stderr
    grant = auth.verify(SECRET, done.stdout.strip(), time.time())
    assert grant.symbols == {"AAA", "BRK.B"}
    assert time.time() + 100 < grant.expires <= time.time() + 120
    everything = mint_cli("--symbols", "*")
    assert auth.verify(SECRET, everything.stdout.strip(), time.time()).symbols is None


@pytest.mark.parametrize(
    ("args", "secret", "reason"),
    [
        (("--symbols", "AAA"), None, "TICKER_AUTH_SECRET is not set"),
        (("--symbols", "AAA"), "short", "at least 16"),
        (("--symbols", "A$B"), SECRET, "malformed symbol"),
        (("--symbols", "AAA", "--ttl", "0"), SECRET, "--ttl"),
        (("--symbols", "AAA", "--ttl", "soon"), SECRET, "--ttl"),
        ((), SECRET, "--symbols"),
    ],
)
def test_cli_errors_are_one_line(args, secret, reason):
    done = mint_cli(*args, secret=secret)
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
            assert {url.path for url in data} == {"/api/symbols", "/stream"}
            assert all(parse_qs(url.query)["token"] == [token] for url in data)

            page.goto("/")  # no token: the page says why it cannot load
            expect(page.locator("#notice")).to_contain_text("token is required", timeout=10_000)
        finally:
            browser.close()
