"""``/api/symbols`` at full size: one entity tag per universe, a 304 for a browser that has
the listing, gzip for a client that accepts it, the token's share only (in-process), and
the same tag from every gunicorn worker."""

from __future__ import annotations

import gzip
import json
import time

import pytest

from tests.market_state import UNIVERSE, filled_app, quote
from ticker import auth
from ticker.listing import Listing

SECRET = "a-secret-for-the-listing-tests-0123"
BIG = [{"symbol": f"S{i:04d}", "name": f"Company Number {i} Holdings", "sector": "Tech"}
       for i in range(8_000)]


@pytest.fixture
def app():
    return filled_app()


@pytest.fixture
def client(app):
    return app.test_client()


def relist(app, epoch: str, universe: list[dict]) -> None:
    """The worker hears a new hello: ``universe`` in the market run ``epoch``."""
    first = universe[0]["symbol"]
    app.extensions["ticker"].log.reset(epoch, 1, universe, [quote(first, 1)])


def test_the_listing_carries_a_weak_tag_and_asks_to_be_revalidated(client):
    response = client.get("/api/symbols")
    assert response.status_code == 200 and response.json == UNIVERSE
    assert response.headers["ETag"].startswith('W/"') and response.headers["ETag"].endswith('"')
    assert response.headers["Cache-Control"] == "no-cache"
    assert response.headers["Vary"] == "Accept-Encoding"
    assert "Content-Encoding" not in response.headers


@pytest.mark.parametrize("sent", ["{tag}", "{weak}", '"other", {tag}', "*"])
def test_a_known_tag_is_a_304_with_no_body(client, sent):
    tag = client.get("/api/symbols").headers["ETag"]
    header = sent.format(tag=tag, weak=tag.removeprefix("W/"))
    response = client.get("/api/symbols", headers={"If-None-Match": header})
    assert response.status_code == 304 and response.data == b""
    assert response.headers["ETag"] == tag and response.headers["Cache-Control"] == "no-cache"


@pytest.mark.parametrize("sent", ['"other"', 'W/"other"', "garbage", ""])
def test_another_tag_gets_the_listing(client, sent):
    response = client.get("/api/symbols", headers={"If-None-Match": sent})
    assert response.status_code == 200 and response.json == UNIVERSE


@pytest.mark.parametrize("accept", ["gzip", "gzip, deflate, br", "br;q=1.0, gzip;q=0.5", "*"])
def test_gzip_for_a_client_that_accepts_it(client, accept):
    plain = client.get("/api/symbols")
    response = client.get("/api/symbols", headers={"Accept-Encoding": accept})
    assert response.headers["Content-Encoding"] == "gzip"
    assert response.headers["ETag"] == plain.headers["ETag"]
    assert gzip.decompress(response.data) == plain.data


@pytest.mark.parametrize("accept", ["identity", "gzip;q=0", "br", "deflate"])
def test_plain_json_for_a_client_that_does_not(client, accept):
    response = client.get("/api/symbols", headers={"Accept-Encoding": accept})
    assert "Content-Encoding" not in response.headers
    assert response.json == UNIVERSE


def test_the_tag_follows_the_epoch_and_the_universe(app, client):
    first = client.get("/api/symbols").headers["ETag"]
    assert client.get("/api/symbols").headers["ETag"] == first
    relist(app, "ep1", UNIVERSE)  # the same market heard again: the same listing
    assert client.get("/api/symbols").headers["ETag"] == first
    relist(app, "ep2", UNIVERSE)  # a restarted market, the same companies
    second = client.get("/api/symbols").headers["ETag"]
    relist(app, "ep2", UNIVERSE[:2])
    third = client.get("/api/symbols")
    assert len({first, second, third.headers["ETag"]}) == 3
    assert third.json == UNIVERSE[:2]
    stale = client.get("/api/symbols", headers={"If-None-Match": first})
    assert stale.status_code == 200 and stale.json == UNIVERSE[:2]


def test_every_worker_tags_and_compresses_a_listing_alike():
    # Workers build their listings at different moments, in different processes.
    one = Listing.of("ep1", UNIVERSE)
    time.sleep(1.1)  # gzip would stamp the second
    two = Listing.of("ep1", [dict(company) for company in UNIVERSE])
    assert one == two


def test_the_listing_is_built_once_per_universe(app, client):
    client.get("/api/symbols")
    built = app.extensions["ticker.listing"][2]
    for _ in range(3):
        client.get("/api/symbols", headers={"Accept-Encoding": "gzip"})
    assert app.extensions["ticker.listing"][2] is built
    relist(app, "ep2", UNIVERSE)
    client.get("/api/symbols")
    assert app.extensions["ticker.listing"][2] is not built


def test_a_full_size_listing(app, client):
    relist(app, "big", BIG)
    plain = client.get("/api/symbols")
    assert plain.json == BIG
    packed = client.get("/api/symbols", headers={"Accept-Encoding": "gzip"})
    assert json.loads(gzip.decompress(packed.data)) == BIG
    assert len(packed.data) < len(plain.data) / 4
    again = client.get("/api/symbols", headers={"If-None-Match": plain.headers["ETag"],
                                                 "Accept-Encoding": "gzip"})
    assert again.status_code == 304 and again.data == b""


def test_a_token_gets_its_own_share_with_its_own_tag():
    app = filled_app(auth_secret=SECRET)
    client = app.test_client()
    every = auth.mint(SECRET, "*", int(time.time()) + 600)
    some = auth.mint(SECRET, ["CCC", "AAA"], int(time.time()) + 600)
    full = client.get("/api/symbols", headers={"Authorization": f"Bearer {every}"})
    share = client.get(f"/api/symbols?token={some}")
    assert full.json == UNIVERSE
    assert share.json == [UNIVERSE[0], UNIVERSE[2]]  # in listing order
    assert share.headers["ETag"] != full.headers["ETag"]
    again = client.get(f"/api/symbols?token={some}",
                       headers={"If-None-Match": share.headers["ETag"]})
    assert again.status_code == 304
    assert client.get("/api/symbols").status_code == 401


def test_every_worker_answers_with_the_same_tag(server):
    # One connection per request: either of gunicorn's two workers may answer each.
    answers = [server.get("/api/symbols", headers={"Accept-Encoding": "gzip"})
               for _ in range(8)]
    assert {status for status, _, _ in answers} == {200}
    assert len({headers["ETag"] for _, headers, _ in answers}) == 1
    assert len({body for _, _, body in answers}) == 1
    tag = answers[0][1]["ETag"]
    status, headers, body = server.get("/api/symbols", headers={"If-None-Match": tag})
    assert (status, headers["ETag"], body) == (304, tag, b"")
