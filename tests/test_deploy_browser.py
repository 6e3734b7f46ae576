"""The page in a real Chromium through the shipped nginx: over HTTP/2, ten tabs of it are
all live at once (HTTP/1.1 would hold six streams per host), and nothing the proxy adds,
its Content-Security-Policy above all, costs a console error."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect, sync_playwright

from tests.conftest import attach_log_on_failure
from tests.nginx_proc import run_nginx

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
TABS = 10


@pytest.fixture
def proxy(request, tmp_path, server):
    """The shipped nginx in front of ``server``."""
    with run_nginx(tmp_path, server.port) as nginx:
        yield nginx
        attach_log_on_failure(request, "nginx error log", nginx.output)


def test_ten_tabs_over_http2_are_all_live_with_no_console_error(proxy):
    problems: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(base_url=proxy.url, ignore_https_errors=True)
            tabs = []
            for _ in range(TABS):
                tab = context.new_page()
                tab.on("console", lambda message: message.type in ("error", "warning")
                       and problems.append(f"{message.type}: {message.text}"))
                tab.on("pageerror", lambda error: problems.append(f"pageerror: {error}"))
                tab.goto("/", wait_until="commit")
                tabs.append(tab)
            for tab in tabs:
                expect(tab.locator("#connection")).to_have_attribute("data-state", "live",
                                                                     timeout=15_000)
                assert tab.evaluate(
                    "performance.getEntriesByType('navigation')[0].nextHopProtocol") == "h2"
        finally:
            browser.close()
    assert not problems, problems
