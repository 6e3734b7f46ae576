"""The picker at full size, in a real Chromium against a real market of 8,000 companies:
any of them found as you type, by symbol or by name, a few suggestions at a time, picked
with the keyboard; the listing arrives gzipped and is revalidated, not fetched again."""

from __future__ import annotations

import json

import pytest
from playwright.sync_api import Page, expect

from tests.browsing import DEFAULT_SIZE, PRICE_TEXT, chromium, open_live, watched
from tests.conftest import attach_log_on_failure
from tests.procs import run_simulator
from tests.servers import ROOT, run_gunicorn

pytestmark = pytest.mark.browser

ARTIFACTS = ROOT / "test-artifacts"
SIZE = 8_000
SHOWN = 8  # suggestions at most


@pytest.fixture(scope="module")
def big_server(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("picker")
    market = run_simulator(tmp_path, "--seed", "11", "--symbols", str(SIZE), "--rate", "40")
    with market as sim, run_gunicorn(tmp_path, sim.feed, workers=1) as web:
        yield web


@pytest.fixture(scope="module")
def companies(big_server) -> list[dict]:
    status, _, body = big_server.get("/api/symbols")
    assert status == 200
    listing = json.loads(body)
    assert len(listing) == SIZE
    return listing


@pytest.fixture
def page(request, big_server):
    with chromium() as browser:
        context = browser.new_context(base_url=big_server.url, locale="en-US")
        page = context.new_page()
        problems: list[str] = []
        page.on("console", lambda m: m.type in ("error", "warning") and problems.append(m.text))
        page.on("pageerror", lambda error: problems.append(str(error)))
        yield page
        assert problems == []
        attach_log_on_failure(request, "gunicorn log", big_server.output)


def suggestions(page: Page):
    return page.locator("#suggestions [role=option]")


def test_any_company_is_found_by_name_or_symbol_and_picked_by_keyboard(page, companies):
    listings = []
    page.on("response", lambda r: r.url.endswith("/api/symbols") and listings.append(r))
    open_live(page)
    assert len(watched(page)) == DEFAULT_SIZE  # thousands listed, a few watched
    assert listings[0].headers["content-encoding"] == "gzip"

    box = page.locator("#add-symbol")
    deep = companies[7_777]
    box.fill(deep["name"])
    expect(suggestions(page).first).to_contain_text(deep["symbol"])
    expect(box).to_have_attribute("aria-expanded", "true")
    box.fill(deep["symbol"].lower())
    expect(suggestions(page).first).to_have_text(f"{deep['symbol']} {deep['name']}")

    box.fill("a")  # thousands match
    expect(suggestions(page)).to_have_count(SHOWN)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / "picker.png")

    # Part of a name, then down to the company and Enter, as a keyboard user would.
    unwatched = companies[SIZE // 2]
    box.fill(unwatched["name"][:-1])
    expect(suggestions(page).first).to_contain_text(unwatched["symbol"])
    box.press("ArrowDown")
    expect(box).to_have_attribute("aria-activedescendant", "suggestion-0")
    expect(suggestions(page).first).to_have_attribute("aria-selected", "true")
    box.press("Enter")
    row = page.locator(f'tr[data-symbol="{unwatched["symbol"]}"]')
    expect(row.locator("[data-field=price]")).to_have_text(PRICE_TEXT, timeout=5_000)
    expect(box).to_have_value("")
    expect(box).to_have_attribute("aria-expanded", "false")
    expect(page.locator("#suggestions")).to_be_hidden()
    assert watched(page)[-1] == unwatched["symbol"]

    # Escape closes the list and keeps the text; Enter on text that names nothing says so.
    box.fill(deep["name"])
    expect(suggestions(page)).not_to_have_count(0)
    box.press("Escape")
    expect(page.locator("#suggestions")).to_be_hidden()
    expect(box).to_have_value(deep["name"])
    box.fill("zzzz-no-such-company")
    box.press("Enter")
    expect(page.locator("#notice")).to_contain_text("No listed company matches")

    # Another visit revalidates the listing: the browser sends the tag it holds.
    page.reload()
    expect(page.locator("#rows tr")).to_have_count(DEFAULT_SIZE + 1)
    assert listings[-1].request.all_headers()["if-none-match"] == listings[0].headers["etag"]


# The index itself, on a listing small enough to read: (typed, limit, expected symbols).
LISTING = [
    {"symbol": "ACME", "name": "Acme Holdings"},
    {"symbol": "AC", "name": "Alpine Capital"},
    {"symbol": "BRK.B", "name": "Berkshire Acme Partners"},
    {"symbol": "CAFE", "name": "Café Lumière Group"},
    {"symbol": "ZED", "name": "Zed Machinery"},
    {"symbol": "MACH", "name": "Machina Labs"},
]
SEARCHES = [
    # Symbols first (the exact one first), then names with a word starting so, then
    # names holding it anywhere, in listing order.
    ("ac", 8, ["AC", "ACME", "BRK.B", "ZED", "MACH"]),
    ("ACME", 8, ["ACME", "BRK.B"]),
    ("acme h", 8, ["ACME"]),  # several words: the whole text at a word's start
    ("mach", 8, ["MACH", "ZED"]),
    ("achin", 8, ["ZED", "MACH"]),
    ("cafe lumiere", 8, ["CAFE"]),  # accents and case do not matter
    ("brk.b", 8, ["BRK.B"]),
    ("a", 2, ["AC", "ACME"]),  # never more than asked for
    ("  ", 8, []),
    ("nothing like it", 8, []),
]


def test_the_index_ranks_and_bounds_suggestions(page):
    page.goto("/")
    got = page.evaluate(
        """async ([listing, searches]) => {
               const { CompanyIndex } = await import("/static/search.js");
               const index = new CompanyIndex(listing);
               return searches.map(([text, limit]) =>
                   index.search(text, limit).map((company) => company.symbol));
           }""",
        [LISTING, SEARCHES],
    )
    assert got == [expected for _, _, expected in SEARCHES]
    resolved = page.evaluate(
        """async (listing) => {
               const { CompanyIndex } = await import("/static/search.js");
               const index = new CompanyIndex(listing);
               return ["acme", "Alpine Capital", "lumi", "ma", "zzz"].map((text) => {
                   const { company, problem } = index.resolve(text);
                   return company ? company.symbol : problem;
               });
           }""",
        LISTING,
    )
    assert resolved == [
        "ACME", "AC", "CAFE",
        "“ma” matches 2 companies: type more, or pick one.",
        "No listed company matches “zzz”.",
    ]
