"""Chromium as the browser tests drive it, and what they read off the page."""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator

from playwright.sync_api import Browser, Page, expect, sync_playwright

__all__ = [
    "DEFAULT_SIZE", "PRICE_TEXT", "chromium", "expect_live", "open_live", "streams_open", "watched",
]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
DEFAULT_SIZE = 8  # the page's first-visit watchlist
PRICE_TEXT = re.compile(r"^\d[\d,]*\.\d\d$")


@contextlib.contextmanager
def chromium() -> Iterator[Browser]:
    """A headless Chromium, closed when the block ends."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


def open_live(page: Page, size: int = DEFAULT_SIZE) -> None:
    """Load the page and wait until it is live with a price in each of its ``size`` rows."""
    page.goto("/")
    expect_live(page, size)


def expect_live(page: Page, size: int = DEFAULT_SIZE) -> None:
    """Until the page is live with a price in each of its ``size`` rows."""
    expect(page.locator("#connection")).to_have_attribute("data-state", "live", timeout=10_000)
    expect(page.locator("#rows [data-field=price]")).to_have_count(size, timeout=5_000)
    expect(page.locator("#rows [data-field=price]")).to_have_text(
        [PRICE_TEXT] * size, timeout=5_000
    )


def watched(page: Page) -> list[str]:
    return page.locator("#rows tr").evaluate_all("rows => rows.map(row => row.dataset.symbol)")


def streams_open(server, expected: int, timeout: float = 5.0) -> int:
    """``ticker_streams_open`` once it reads ``expected``, or its last reading at the deadline.

    A stream the browser dropped is closed by the server at its next write, a tick later.
    """
    deadline = time.monotonic() + timeout
    while True:
        _, _, body = server.get("/metrics")
        match = re.search(rb"^ticker_streams_open(?:\{[^}]*\})? (\S+)$", body, re.MULTILINE)
        value = int(float(match.group(1)))
        if value == expected or time.monotonic() > deadline:
            return value
        time.sleep(0.1)
