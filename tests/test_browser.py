"""The page in a real Chromium, against a real market and gunicorn: it loads clean, streams,
shows an injected price, rides out a server restart, keeps its watchlist and its sort,
and holds exactly one stream whatever it watches."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import Page, expect

from tests.browsing import DEFAULT_SIZE, PRICE_TEXT, chromium, open_live, streams_open, watched
from tests.procs import run_simulator
from tests.servers import ROOT, run_gunicorn

pytestmark = pytest.mark.browser

ARTIFACTS = ROOT / "test-artifacts"


class Recorder:
    """What a page did that the tests check: console problems and the streams it opened."""

    def __init__(self, page: Page) -> None:
        self.problems: list[str] = []
        self.streams: list[list[str]] = []  # the symbols of each /stream request, in order
        self.rates: list[str] = []  # the max_rate of each ("" for none)
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.problems.append(f"pageerror: {error}"))
        page.on("request", self._request)

    def _console(self, message) -> None:
        if message.type in ("error", "warning"):
            self.problems.append(f"{message.type}: {message.text}")

    def _request(self, request) -> None:
        url = urlsplit(request.url)
        if url.path == "/stream":
            query = parse_qs(url.query)
            self.streams.append(query["symbols"][0].split(","))
            self.rates.append(query.get("max_rate", [""])[0])


@pytest.fixture(scope="module")
def browser():
    with chromium() as browser:
        yield browser


@pytest.fixture
def page(browser, server):
    """A fresh visitor (empty localStorage) on the server's origin."""
    context = browser.new_context(
        base_url=server.url, locale="en-US", viewport={"width": 1200, "height": 720}
    )
    page = context.new_page()
    page.recorder = Recorder(page)
    yield page
    context.close()


def wait_for_prices_to_move(page: Page) -> None:
    before = page.locator("#rows tr").evaluate_all(
        "rows => rows.map(row => row.querySelector('[data-field=price]').textContent)"
    )
    page.wait_for_function(
        """before => [...document.querySelectorAll('#rows tr')].some(
               (row, i) => row.querySelector('[data-field=price]').textContent !== before[i])""",
        arg=before,
        timeout=5_000,
    )


def listing(server) -> list[dict]:
    status, _, body = server.get("/api/symbols")
    assert status == 200
    return json.loads(body)


def test_page_loads_clean_and_streams(page, server):
    open_live(page)
    wait_for_prices_to_move(page)
    expect(page.locator("#latency")).to_have_text(re.compile(r"^\d+ ms$"), timeout=5_000)
    # Every row's sparkline has drawn something once its symbol has ticked twice.
    page.wait_for_function(
        """() => [...document.querySelectorAll('#rows canvas')].every(canvas => {
               const blank = Object.assign(document.createElement('canvas'),
                                           {width: canvas.width, height: canvas.height});
               return canvas.toDataURL() !== blank.toDataURL();
           })""",
        timeout=10_000,
    )
    assert page.recorder.problems == []
    assert page.recorder.streams == [watched(page)]

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / "page-light.png")
    light = page.evaluate("getComputedStyle(document.body).backgroundColor")
    page.emulate_media(color_scheme="dark")
    dark = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert dark != light
    page.screenshot(path=ARTIFACTS / "page-dark.png")


def test_injected_price_shows_within_a_second(page, market):
    open_live(page)
    symbol = watched(page)[0]
    # A dime: the walk moves a price by a fraction of a percent a tick, far under a cent
    # from here, so the exact price stays on screen for many ticks, not for one frame.
    price = "0.10"
    subprocess.run(
        [sys.executable, "-m", "simulator", "inject", symbol, price, "--feed", market.feed],
        cwd=ROOT, check=True, capture_output=True, timeout=10,
    )
    cell = page.locator(f'tr[data-symbol="{symbol}"] [data-field=price]')
    expect(cell).to_have_text(price, timeout=1_000)


def test_the_update_rate_is_asked_of_the_stream_and_remembered(page):
    open_live(page)
    assert page.recorder.rates == [""], "live by default: every tick"
    with page.expect_request(lambda request: "/stream?" in request.url, timeout=5_000):
        page.locator("#rate").select_option("1")
    assert page.recorder.rates[-1] == "1"
    expect(page.locator("#connection")).to_have_attribute("data-state", "live", timeout=10_000)
    page.reload()
    expect(page.locator("#rate")).to_have_value("1")
    open_live(page)
    assert page.recorder.rates[-1] == "1", "the choice outlives a reload"


def test_a_restarted_market_is_told_on_the_page(page, server, market, tmp_path):
    open_live(page)
    market.stop()
    expect(page.locator("#connection")).to_have_attribute("data-state", "down", timeout=10_000)
    with run_simulator(tmp_path, "--seed", "7", "--symbols", "12", "--rate", "40"):
        expect(page.locator("#notice")).to_contain_text("market restarted", timeout=20_000)
        expect(page.locator("#connection")).to_have_attribute("data-state", "live")


def test_reconnects_after_server_restart(page, server, market, tmp_path):
    open_live(page)
    indicator = page.locator("#connection")
    server.stop()
    expect(indicator).to_have_attribute("data-state", "reconnecting", timeout=5_000)
    with run_gunicorn(tmp_path, market.feed, port=server.port):
        expect(indicator).to_have_attribute("data-state", "live", timeout=20_000)
        wait_for_prices_to_move(page)


def test_watchlist_and_sort_persist(page, server):
    open_live(page)
    first = watched(page)
    extra = next(c for c in listing(server) if c["symbol"] not in first)

    page.fill("#add-symbol", extra["name"])  # by company name
    page.press("#add-symbol", "Enter")
    expect(page.locator(f'tr[data-symbol="{extra["symbol"]}"] [data-field=price]')).to_have_text(
        PRICE_TEXT, timeout=5_000
    )
    page.locator(f'tr[data-symbol="{first[0]}"] button.remove').focus()
    page.keyboard.press("Enter")
    expect(page.locator(f'tr[data-symbol="{first[0]}"]')).to_have_count(0)
    expected = [*first[1:], extra["symbol"]]
    assert watched(page) == expected

    header = page.locator("th[data-sort=price]")
    header.locator("button").focus()
    page.keyboard.press("Enter")
    expect(header).to_have_attribute("aria-sort", "ascending")
    assert_sorted_by_price(page, descending=False)
    page.keyboard.press("Enter")
    expect(header).to_have_attribute("aria-sort", "descending")
    assert_sorted_by_price(page, descending=True)

    page.reload()
    expect(page.locator("#rows [data-field=price]")).to_have_text(
        [PRICE_TEXT] * len(expected), timeout=5_000
    )
    expect(header).to_have_attribute("aria-sort", "descending")
    assert_sorted_by_price(page, descending=True)
    assert sorted(watched(page)) == sorted(expected)
    header.locator("button").click()  # a third click: back to the watchlist's own order
    expect(header).not_to_have_attribute("aria-sort", re.compile("."))
    assert watched(page) == expected


def test_one_stream_whatever_is_watched(page, server):
    open_live(page)
    for company in listing(server):
        if company["symbol"] not in watched(page):
            page.fill("#add-symbol", company["symbol"].lower())
            page.press("#add-symbol", "Enter")
            expect(page.locator(f'tr[data-symbol="{company["symbol"]}"]')).to_have_count(1)
    every = [company["symbol"] for company in listing(server)]
    expect(page.locator("#connection")).to_have_attribute("data-state", "live", timeout=5_000)

    streams = page.recorder.streams
    assert streams[-1] == every
    # One new stream per change of the watchlist, each for the whole list at that moment.
    assert len(streams) == 1 + len(every) - DEFAULT_SIZE
    assert [len(symbols) for symbols in streams] == list(range(DEFAULT_SIZE, len(every) + 1))
    # And the server holds one open stream: each change closed the one before.
    assert streams_open(server, 1) == 1


def assert_sorted_by_price(page: Page, *, descending: bool) -> None:
    # One read of every cell: rows re-sort within the frame that paints a tick, never
    # between two cells of one read.
    texts = page.locator("#rows [data-field=price]").all_text_contents()
    prices = [float(text.replace(",", "")) for text in texts]
    assert prices == sorted(prices, reverse=descending)
