"""Cross-origin reads: allowed origins, foreign ones, preflight, and the default of none."""

from __future__ import annotations

import pytest

from tests.market_state import filled_app
from tests.servers import run_gunicorn
from tests.sse_client import SSEClient
from ticker import auth
from ticker.config import Config, ConfigError

ALLOWED = "https://app.example.com"
OTHER_ALLOWED = "http://localhost:5173"
FOREIGN = "https://evil.example.net"
SECRET = "a-secret-for-the-tests-0123456789"


def make_client(**config):
    return filled_app(**config).test_client()


@pytest.fixture
def client():
    return make_client(cors_origins=f"{ALLOWED}, {OTHER_ALLOWED}")


def cors_headers(response) -> list[str]:
    return [name for name, _ in response.headers if name.startswith("Access-Control-")]


def preflight(client, path, origin=ALLOWED, method="GET",
              headers="authorization, last-event-id"):
    return client.options(path, headers={
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": headers,
    })


@pytest.mark.parametrize("origin", [ALLOWED, OTHER_ALLOWED, ALLOWED.upper()])
@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/api/symbols"), ("GET", "/api/snapshot?symbols=AAA"), ("HEAD", "/stream"),
     ("HEAD", "/stream/AAA")],
)
def test_an_allowed_origin_may_read(client, origin, method, path):
    response = client.open(path, method=method, headers={"Origin": origin})
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == origin
    assert response.headers.getlist("Access-Control-Allow-Origin") == [origin]
    assert "Retry-After" in response.headers["Access-Control-Expose-Headers"]
    assert "Origin" in response.vary
    assert "Access-Control-Allow-Credentials" not in response.headers


@pytest.mark.parametrize(
    "origin",
    [FOREIGN, "https://app.example.com.evil.net", "http://app.example.com",
     "https://app.example.com:8443", "null", ""],
)
def test_a_foreign_origin_gets_no_cors_header(client, origin):
    response = client.get("/api/symbols", headers={"Origin": origin})
    assert response.status_code == 200  # same answer; its browser keeps it from the page
    assert cors_headers(response) == []
    assert "Origin" in response.vary


def test_preflight_allows_get_with_authorization_and_last_event_id(client):
    response = preflight(client, "/stream?symbols=AAA")
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == ALLOWED
    assert response.headers["Access-Control-Allow-Methods"] == "GET"
    allowed = response.headers["Access-Control-Allow-Headers"].lower().replace(" ", "").split(",")
    assert sorted(allowed) == ["authorization", "last-event-id"]
    assert int(response.headers["Access-Control-Max-Age"]) > 0


def test_preflight_refuses_other_methods_and_headers(client):
    post = preflight(client, "/api/symbols", method="POST")
    assert "Access-Control-Allow-Methods" not in post.headers
    extra = preflight(client, "/api/symbols", headers="x-custom, authorization")
    assert extra.headers["Access-Control-Allow-Headers"] == "authorization"
    foreign = preflight(client, "/stream", origin=FOREIGN)
    assert cors_headers(foreign) == []


def test_preflight_needs_no_token_but_the_request_does():
    client = make_client(cors_origins=ALLOWED, auth_secret=SECRET)
    assert preflight(client, "/stream").status_code == 200
    refused = client.get("/stream", headers={"Origin": ALLOWED})
    # The page can read why it was refused.
    assert refused.status_code == 401
    assert refused.headers["Access-Control-Allow-Origin"] == ALLOWED
    assert refused.json["error"]


def test_errors_carry_the_cors_headers_too(client):
    for path, status in [("/api/snapshot?symbols=ZZZ", 404), ("/api/snapshot?symbols=$", 400)]:
        response = client.get(path, headers={"Origin": ALLOWED})
        assert response.status_code == status
        assert response.headers["Access-Control-Allow-Origin"] == ALLOWED


@pytest.mark.parametrize("path", ["/", "/healthz", "/metrics", "/static/app.js"])
def test_only_the_data_routes_are_shared(client, path):
    with client.get(path, headers={"Origin": ALLOWED}) as response:
        assert response.status_code == 200
        assert "Access-Control-Allow-Origin" not in response.headers


def test_no_origins_configured_means_no_cors_at_all():
    client = make_client()
    response = client.get("/api/symbols", headers={"Origin": ALLOWED})
    assert cors_headers(response) == []
    assert "Origin" not in response.vary
    assert "Access-Control-Allow-Origin" not in preflight(client, "/stream").headers


@pytest.mark.parametrize(
    "origins",
    ["*", "https://app.example.com/", "app.example.com", "https://*.example.com",
     "ftp://files.example.com", "https://user@app.example.com"],
)
def test_what_is_not_an_origin_is_a_configuration_error(origins):
    with pytest.raises(ConfigError, match="TICKER_CORS_ORIGINS"):
        Config.load(environ={"TICKER_CORS_ORIGINS": f"{ALLOWED},{origins}"})


def test_a_stream_through_gunicorn_carries_the_header(tmp_path, market):
    env = {"TICKER_CORS_ORIGINS": ALLOWED, "TICKER_AUTH_SECRET": SECRET}
    token = auth.mint(SECRET, "*", 2**40)
    with run_gunicorn(tmp_path, market.feed, workers=1, env=env) as server:
        with SSEClient(server.url, f"/stream?token={token}", headers={"Origin": ALLOWED}) as c:
            assert c.status == 200
            assert c.headers["Access-Control-Allow-Origin"] == ALLOWED
            assert c.next(type="snapshot").json()["quotes"]
            assert c.next(type="price", timeout=15)
        with SSEClient(server.url, f"/stream?token={token}", headers={"Origin": FOREIGN}) as c:
            assert c.status == 200
            assert "Access-Control-Allow-Origin" not in c.headers
