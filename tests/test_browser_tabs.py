"""Ten tabs of the page in one Chromium, over plain HTTP/1.1, against a real market and
gunicorn: they share one stream (a browser opens at most six connections to a site), and
when the tab holding it closes, another takes over with no tick lost."""

from __future__ import annotations

import json
import time
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import Page, expect

from tests.browsing import (
    DEFAULT_SIZE,
    PRICE_TEXT,
    chromium,
    expect_live,
    open_live,
    streams_open,
    watched,
)
from tests.observers import Tape, wait_until
from tests.procs import run_simulator
from tests.servers import run_gunicorn

pytestmark = pytest.mark.browser

TABS = 10

# Every `price` event a tab receives, from its own EventSource (as leader) or relayed over
# the BroadcastChannel (as follower): the seqs, in arrival order, in window.priceSeqs.
RECORD_PRICE_SEQS = """
(() => {
  const seqs = (window.priceSeqs = []);
  const record = (data) => seqs.push(JSON.parse(data).seq);
  const NativeEventSource = window.EventSource;
  window.EventSource = class extends NativeEventSource {
    constructor(...args) {
      super(...args);
      this.addEventListener("price", (event) => record(event.data));
    }
  };
  const NativeChannel = window.BroadcastChannel;
  window.BroadcastChannel = class extends NativeChannel {
    constructor(...args) {
      super(...args);
      this.addEventListener("message", ({ data }) => {
        if (data?.kind === "event" && data.name === "price") record(data.data);
      });
    }
  };
})();
"""


@pytest.fixture(scope="module")
def browser():
    with chromium() as browser:
        yield browser


@pytest.fixture
def tape(market):
    tape = Tape(market.path).start()
    yield tape
    tape.stop()


def seqs(page: Page) -> list[int]:
    return page.evaluate("window.priceSeqs")


def wait_for_new_prices(pages: list[Page], count: int = 3, timeout: float = 5.0) -> None:
    """Until every page has received ``count`` more price events than it has now."""
    marks = [len(seqs(page)) for page in pages]
    for page, mark in zip(pages, marks, strict=True):
        page.wait_for_function(
            "mark => window.priceSeqs.length >= mark", arg=mark + count, timeout=timeout * 1000
        )


def test_ten_tabs_share_one_stream_and_survive_its_tab(browser, server, tape):
    context = browser.new_context(base_url=server.url, locale="en-US")
    context.add_init_script(RECORD_PRICE_SEQS)
    problems: list[str] = []
    context.on("console", lambda m: m.type in ("error", "warning") and problems.append(m.text))
    opened: dict[Page, int] = {}  # each page: how many /stream requests it made

    def count_streams(page: Page):
        def on_request(request) -> None:
            if urlsplit(request.url).path == "/stream":
                opened[page] += 1
        return on_request

    pages = []
    for _ in range(TABS):
        page = context.new_page()
        opened[page] = 0
        page.on("request", count_streams(page))
        page.goto("/")
        pages.append(page)
    for page in pages:
        expect_live(page)
    symbols = frozenset(watched(pages[0]))
    assert len(symbols) == DEFAULT_SIZE

    # Every tab live, one stream at the server, and room left for everything else.
    wait_for_new_prices(pages)
    assert streams_open(server, 1) == 1
    leaders = [page for page in pages if opened[page]]
    assert len(leaders) == 1
    for page in pages:
        started = time.monotonic()
        status = page.evaluate("fetch('/api/snapshot').then(response => response.status)")
        assert status == 200 and time.monotonic() - started < 2

    # The tab that holds the stream goes; another takes it over within 5 s.
    leader = leaders[0]
    pages.remove(leader)
    leader.close()
    closed_at = time.monotonic()
    wait_for_new_prices(pages, timeout=5.0)
    assert time.monotonic() - closed_at < 5
    assert [page for page in pages if opened[page]] != []
    assert streams_open(server, 1) == 1
    for page in pages:
        expect(page.locator("#connection")).to_have_attribute("data-state", "live")

    # No gap, before, across or after the handover: each tab got every tick of its symbols
    # from its first to its last, as the market's own tape has them.
    received = [seqs(page) for page in pages]
    last = max(max(got) for got in received)
    wait_until(lambda: tape.head >= last, 5, "the tape reaching the tabs' last tick")
    ticks = tape.copy()
    for got in received:
        expected = [seq for seq in range(min(got), max(got) + 1)
                    if ticks[seq]["symbol"] in symbols]
        assert sorted(set(got)) == expected
    assert problems == []
    context.close()


def stream_requests(page: Page) -> list[dict]:
    """The query of every /stream request ``page`` makes from now on, as it makes them."""
    queries: list[dict] = []

    def on_request(request) -> None:
        url = urlsplit(request.url)
        if url.path == "/stream":
            queries.append({k: v[0] for k, v in parse_qs(url.query).items()})

    page.on("request", on_request)
    return queries


def pump_until(page: Page, done, what: str, timeout: float = 5.0) -> None:
    """Until ``done()``, letting Playwright deliver ``page``'s events meanwhile."""
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"{what}: not within {timeout:g} s"
        page.wait_for_timeout(50)


def test_the_shared_stream_carries_every_tabs_symbols(browser, server):
    context = browser.new_context(base_url=server.url, locale="en-US")
    first, second = context.new_page(), context.new_page()
    requests = {first: stream_requests(first), second: stream_requests(second)}
    open_live(first)
    open_live(second)
    defaults = watched(first)
    assert requests[second] == []  # the first tab leads

    # The second tab swaps one of its symbols for another: the leader's stream now carries
    # both tabs' symbols, from where it was (no snapshot), and each tab shows its own.
    extra = next(c["symbol"] for c in json.loads(server.get("/api/symbols")[2])
                 if c["symbol"] not in defaults)
    second.locator(f'tr[data-symbol="{defaults[0]}"] button.remove').click()
    second.fill("#add-symbol", extra)
    second.press("#add-symbol", "Enter")
    expect(second.locator(f'tr[data-symbol="{extra}"] [data-field=price]')).to_have_text(
        PRICE_TEXT, timeout=5_000
    )
    assert watched(second) == [*defaults[1:], extra]
    assert watched(first) == defaults
    pump_until(first, lambda: requests[first][-1]["symbols"] == ",".join([*defaults, extra]),
               "the leader streaming both tabs' symbols")
    assert requests[first][-1]["lastEventId"]
    assert requests[second] == []
    assert streams_open(server, 1) == 1

    # The leader goes: the second tab streams its own symbols alone, from where it was.
    first.close()
    pump_until(second, lambda: len(requests[second]) > 0, "the second tab taking the stream over")
    assert requests[second][-1]["symbols"] == ",".join(watched(second))
    assert requests[second][-1]["lastEventId"]
    expect_live(second)
    context.close()


# What a browser without Web Locks and BroadcastChannel shows the page.
WITHOUT_SHARING = "delete Navigator.prototype.locks; delete window.BroadcastChannel;"


def test_without_web_locks_each_tab_has_its_own_stream(browser, server):
    context = browser.new_context(base_url=server.url, locale="en-US")
    context.add_init_script(WITHOUT_SHARING)
    pages = [context.new_page() for _ in range(2)]
    requests = [stream_requests(page) for page in pages]
    for page in pages:
        open_live(page)
    assert page.evaluate("'locks' in navigator || 'BroadcastChannel' in window") is False
    assert [len(made) for made in requests] == [1, 1]
    assert streams_open(server, 2) == 2
    context.close()


def test_past_a_hundred_symbols_the_shared_stream_carries_every_symbol(browser, tmp_path):
    # Three tabs of fifty symbols each: more than one request may name (100 by default).
    with run_simulator(tmp_path, "--seed", "3", "--symbols", "160", "--rate", "40") as market, \
            run_gunicorn(tmp_path, market.feed, workers=1) as server:
        listing = [c["symbol"] for c in json.loads(server.get("/api/symbols")[2])]
        context = browser.new_context(base_url=server.url, locale="en-US")
        pages = [context.new_page() for _ in range(3)]
        requests = [stream_requests(page) for page in pages]
        for i, page in enumerate(pages):
            page.goto("/")
            page.evaluate("list => localStorage.setItem('ticker.watchlist', JSON.stringify(list))",
                          listing[50 * i:50 * (i + 1)])
            page.reload()
            expect_live(page, 50)
        assert watched(pages[2]) == listing[100:150]
        leader = next(made for made in requests if made)
        pump_until(pages[0], lambda: "symbols" not in leader[-1], "a stream of every symbol")
        assert sum(map(len, requests)) == len(leader)  # one tab streams, for all three
        assert streams_open(server, 1) == 1
        for page in pages:
            expect_live(page, 50)
            assert len(watched(page)) == 50  # each keeps to its own symbols
        context.close()
