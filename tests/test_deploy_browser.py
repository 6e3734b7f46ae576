"""The page in a real Chromium through the shipped nginx: over HTTP/2, ten tabs that do not
share a stream are all live at once, ten streams at the server (over HTTP/1.1 a browser
holds six connections per host, so four tabs would wait), and nothing the proxy adds, its
Content-Security-Policy above all, costs a console error."""

from __future__ import annotations

import pytest

from tests.browsing import chromium, expect_live, streams_open
from tests.conftest import attach_log_on_failure
from tests.nginx_proc import run_nginx

pytestmark = pytest.mark.browser

TABS = 10
# What a browser without Web Locks and BroadcastChannel shows the page: each tab then holds
# a stream of its own, as tabs of different sites or profiles would.
WITHOUT_SHARING = "delete Navigator.prototype.locks; delete window.BroadcastChannel;"


@pytest.fixture
def proxy(request, tmp_path, server):
    """The shipped nginx in front of ``server``."""
    with run_nginx(tmp_path, server.port) as nginx:
        yield nginx
        attach_log_on_failure(request, "nginx error log", nginx.output)


def test_ten_tabs_over_http2_each_with_its_stream_are_all_live(proxy, server):
    problems: list[str] = []
    with chromium() as browser:
        context = browser.new_context(base_url=proxy.url, ignore_https_errors=True,
                                      locale="en-US")
        context.add_init_script(WITHOUT_SHARING)
        tabs = []
        for _ in range(TABS):
            tab = context.new_page()
            tab.on("console", lambda message: message.type in ("error", "warning")
                   and problems.append(f"{message.type}: {message.text}"))
            tab.on("pageerror", lambda error: problems.append(f"pageerror: {error}"))
            tab.goto("/", wait_until="commit")
            tabs.append(tab)
        for tab in tabs:
            expect_live(tab)
            assert tab.evaluate(
                "performance.getEntriesByType('navigation')[0].nextHopProtocol") == "h2"
        assert streams_open(server, TABS) == TABS
        context.close()
    assert not problems, problems
