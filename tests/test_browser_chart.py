"""A row's detail view in a real Chromium, against a real market and gunicorn: it opens by
a click or by Enter, shows the day's figures and the market's one-minute candles, moves
when a price is injected, closes on Escape with the focus back on its row, and opens
again with the market's own candles, the injection counted."""

from __future__ import annotations

import re
import subprocess
import sys
from itertools import pairwise
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Page, expect

from tests.browsing import PRICE_TEXT, chromium, open_live, watched
from tests.servers import ROOT

pytestmark = pytest.mark.browser

ARTIFACTS = ROOT / "test-artifacts"
INJECTED = "5000.00"  # far above every opening price of the test market, so it is the high


@pytest.fixture(scope="module")
def browser():
    with chromium() as browser:
        yield browser


@pytest.fixture
def page(browser, server):
    context = browser.new_context(
        base_url=server.url, locale="en-US", viewport={"width": 1200, "height": 800}
    )
    page = context.new_page()
    page.problems = []
    page.candles_answers = []
    page.on("console", lambda message: message.type in ("error", "warning")
            and page.problems.append(f"{message.type}: {message.text}"))
    page.on("pageerror", lambda error: page.problems.append(f"pageerror: {error}"))
    page.on("response", lambda response: urlsplit(response.url).path.startswith("/api/candles/")
            and page.candles_answers.append(response.status))
    yield page
    context.close()


def candles(page: Page) -> list[dict]:
    return page.locator("#detail svg .candle").evaluate_all(
        "gs => gs.map(g => ({t: +g.dataset.t, h: +g.dataset.h, c: +g.dataset.c}))"
    )


def expect_candles_from_the_market(page: Page, symbol: str, company: str) -> None:
    dialog = page.locator("#detail")
    expect(dialog).to_be_visible()
    expect(page.get_by_role("dialog", name=re.compile(rf"^{re.escape(symbol)} "))).to_be_visible()
    expect(dialog.locator("h2")).to_have_text(f"{symbol} {company}")
    for stat in ("price", "open", "high", "low"):
        expect(dialog.locator(f'[data-detail="{stat}"]')).to_have_text(PRICE_TEXT)
    expect(dialog.locator('[data-detail="volume"]')).not_to_have_text("–")
    expect(dialog.locator("svg .candle").first).to_be_attached(timeout=5_000)
    expect(dialog.locator('[data-detail="notice"]')).to_have_text("")  # the candles came
    expect(page.get_by_role("img", name=re.compile(
        rf"^{re.escape(symbol)} last [\d,]+\.\d\d; today's range [\d,]+\.\d\d to [\d,]+\.\d\d"
    ))).to_be_visible()


def test_the_chart_opens_shows_candles_and_moves_with_an_injected_price(page, market):
    open_live(page)
    symbols = watched(page)
    symbol = symbols[0]
    row = page.locator(f'tr[data-symbol="{symbol}"]')
    company = row.locator("[data-field=name]").text_content()

    row.locator("[data-field=name]").click()
    expect_candles_from_the_market(page, symbol, company)
    assert page.candles_answers == [200]
    before = candles(page)
    assert before and all(b["t"] - a["t"] >= 60_000 for a, b in pairwise(before))
    assert all(c["t"] % 60_000 == 0 for c in before)

    subprocess.run(
        [sys.executable, "-m", "simulator", "inject", symbol, INJECTED, "--feed", market.feed],
        cwd=ROOT, check=True, capture_output=True, timeout=10,
    )
    # The newest candle moves (or a new minute's opens) to the injected price, live.
    page.wait_for_function(
        """() => {
               const all = document.querySelectorAll('#detail svg .candle');
               return all.length && +all[all.length - 1].dataset.h >= 5000;
           }""",
        timeout=2_000,
    )
    expect(page.locator('#detail [data-detail="high"]')).to_have_text(
        re.compile(r"^5,0\d\d\.\d\d$"))
    expect(page.locator("#chart-summary")).to_contain_text("to 5,0")
    assert candles(page)[:-1] == before[:len(candles(page)) - 1]  # the older ones stay

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / "detail-light.png")
    page.emulate_media(color_scheme="dark")
    page.screenshot(path=ARTIFACTS / "detail-dark.png")

    page.keyboard.press("Escape")
    expect(page.locator("#detail")).to_be_hidden()
    assert page.evaluate("document.activeElement.dataset.symbol") == symbol

    # Enter on the focused row opens it again, with the market's own candles this time:
    # the injection is in them.
    page.keyboard.press("Enter")
    expect_candles_from_the_market(page, symbol, company)
    assert page.candles_answers == [200, 200]
    page.wait_for_function(
        "() => [...document.querySelectorAll('#detail svg .candle')]"
        ".some(g => +g.dataset.h >= 5000)",
        timeout=2_000,
    )
    page.get_by_role("button", name="Close").click()
    expect(page.locator("#detail")).to_be_hidden()
    assert page.evaluate("document.activeElement.dataset.symbol") == symbol

    # Another row by keyboard: Tab order reaches the rows, Enter opens that one's.
    other = page.locator(f'tr[data-symbol="{symbols[1]}"]')
    other.focus()
    page.keyboard.press("Enter")
    expect(page.locator("#detail h2")).to_contain_text(symbols[1])
    expect(page.locator("#detail svg .candle").first).to_be_attached(timeout=5_000)
    page.keyboard.press("Escape")
    assert page.evaluate("document.activeElement.dataset.symbol") == symbols[1]
    assert page.problems == []


def test_a_click_on_remove_does_not_open_the_chart(page):
    open_live(page)
    symbols = watched(page)
    page.locator(f'tr[data-symbol="{symbols[0]}"] button.remove').click()
    expect(page.locator(f'tr[data-symbol="{symbols[0]}"]')).to_have_count(0)
    expect(page.locator("#detail")).to_be_hidden()
    assert page.candles_answers == [] and page.problems == []
