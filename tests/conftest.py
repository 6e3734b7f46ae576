"""Fixtures that run the real thing: the simulator on a temporary socket, gunicorn on a free
loopback port. Each is stopped by PID when its test ends, and its log is attached to the
report of a test that failed."""

from __future__ import annotations

import pytest

from tests.procs import run_simulator
from tests.servers import run_gunicorn


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


def attach_log_on_failure(request, title: str, output) -> None:
    """Add a process's log to the report of a test that failed."""
    failed = any(
        getattr(getattr(request.node, f"report_{when}", None), "failed", False)
        for when in ("setup", "call")
    )
    if failed:
        request.node.add_report_section("teardown", title, output())


@pytest.fixture
def market(request, tmp_path):
    """A running simulator: fixed seed, 12 symbols, 40 ticks/s."""
    with run_simulator(tmp_path, "--seed", "7", "--symbols", "12", "--rate", "40") as sim:
        yield sim
        attach_log_on_failure(request, "simulator log", sim.output)


@pytest.fixture
def server(request, tmp_path, market):
    """gunicorn with 2 gevent workers reading ``market``, ready to stream."""
    with run_gunicorn(tmp_path, market.feed, workers=2) as web:
        yield web
        attach_log_on_failure(request, "gunicorn log", web.output)
