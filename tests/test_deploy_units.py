"""The shipped systemd units (``deploy/systemd``): valid to systemd, and their commands run
as systemd would run them.

There is no systemd to start them here, so the tests do its part by hand: the units'
paths are mapped into a temporary directory (the checkout for ``/opt/ticker``), the
environment comes from the shipped ``ticker.env``, ``ExecStart`` is started, ``ExecReload``
run, and ``KillSignal`` sent, each within the unit's ``TimeoutStopSec``.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.observers import wait_until
from tests.procs import Simulator
from tests.servers import ROOT, Gunicorn, free_port

UNITS = ROOT / "deploy" / "systemd"
NAMES = ("ticker-market.service", "ticker-web.service")


def read_unit(path: Path) -> dict[str, str]:
    """``Section.Key`` to value, for a unit file whose keys appear once each."""
    settings, section = {}, ""
    for line in path.read_text().splitlines():
        line = line.strip()
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
        elif line and not line.startswith("#"):
            key, _, value = line.partition("=")
            assert f"{section}.{key}" not in settings, f"{path.name}: {key} twice"
            settings[f"{section}.{key}"] = value
    return settings


def place(text: str, tmp_path: Path, port: int) -> str:
    """A unit's text with its machine's paths and port mapped onto this test's."""
    for installed, here in (("/opt/ticker", str(ROOT)), ("/var/lib/ticker", f"{tmp_path}/lib"),
                            ("/run/ticker", f"{tmp_path}/run"), ("127.0.0.1:8000",
                                                                 f"127.0.0.1:{port}")):
        text = text.replace(installed, here)
    return text


def environment(tmp_path: Path, port: int) -> dict[str, str]:
    """The shipped ticker.env over this process's environment, as EnvironmentFile= reads it."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TICKER_", "PROMETHEUS_")) and k != "WEB_CONCURRENCY"}
    for line in place((UNITS / "ticker.env").read_text(), tmp_path, port).splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            env[name.strip()] = value.strip()
    return env


def test_systemd_accepts_the_units(tmp_path):
    for name in NAMES:
        (tmp_path / name).write_text(place((UNITS / name).read_text(), tmp_path, 8000))
    result = subprocess.run(["systemd-analyze", "verify", *(str(tmp_path / n) for n in NAMES)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


@pytest.mark.parametrize("name", NAMES)
def test_each_unit_runs_as_a_dedicated_user_and_stops_gracefully(name):
    unit = read_unit(UNITS / name)
    assert unit["Service.Type"] == "simple"
    assert unit["Service.User"] == unit["Service.Group"] == "ticker"
    assert unit["Service.EnvironmentFile"] == "/etc/ticker/ticker.env"
    assert unit["Service.KillSignal"] == "SIGTERM"
    assert unit["Service.Restart"] == "on-failure"
    # gunicorn's master needs up to 5 s to end its streams and exit.
    assert int(unit["Service.TimeoutStopSec"]) > 5
    every_variable = (ROOT / "README.md").read_text()
    for line in (UNITS / "ticker.env").read_text().splitlines():
        variable = line.lstrip("#").partition("=")[0].strip()
        if "=" in line and variable.isupper():
            assert f"`{variable}`" in every_variable or variable.startswith(
                ("PYTHON", "WEB_")), f"ticker.env sets {variable}, which the README never names"


def test_the_units_commands_run_reload_and_stop_as_systemd_would(tmp_path):
    port = free_port()
    (tmp_path / "lib").mkdir()  # StateDirectory=
    (tmp_path / "run").mkdir()  # RuntimeDirectory=
    env = environment(tmp_path, port)
    market_unit, web_unit = (read_unit(UNITS / n) for n in NAMES)
    assert market_unit["Service.WorkingDirectory"] == web_unit["Service.WorkingDirectory"]

    def start(unit: dict[str, str], log: Path) -> subprocess.Popen:
        argv = shlex.split(place(unit["Service.ExecStart"], tmp_path, port))
        with open(log, "ab") as out:
            return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out,
                                    stderr=subprocess.STDOUT)

    def stop(proc: subprocess.Popen, unit: dict[str, str]) -> int:
        proc.send_signal(getattr(signal, unit["Service.KillSignal"]))
        return proc.wait(int(unit["Service.TimeoutStopSec"]))

    market_proc = start(market_unit, tmp_path / "market.log")
    try:
        market = Simulator(market_proc, tmp_path / "run" / "feed.sock", tmp_path / "market.log")
        market.wait_ready()
        web_proc = start(web_unit, tmp_path / "web.log")
        try:
            web = Gunicorn(web_proc, port, tmp_path / "web.log", int(env["WEB_CONCURRENCY"]))
            web.wait_ready()
            assert web.get("/healthz")[0] == 200
            old = set(web.worker_pids())
            reload = web_unit["Service.ExecReload"].replace("$MAINPID", str(web_proc.pid))
            subprocess.run(shlex.split(reload), check=True, timeout=10)
            wait_until(lambda: len(web.worker_pids()) == web.workers
                       and not set(web.worker_pids()) & old, 20, "the reloaded workers")
            wait_until(lambda: web.get("/healthz")[0] == 200, 20, "/healthz after the reload")
            started = time.monotonic()
            assert stop(web_proc, web_unit) == 0
            assert time.monotonic() - started < 5
        finally:
            web.stop()
        assert stop(market_proc, market_unit) == 0
        assert (tmp_path / "lib" / "market.json").exists(), "the market saved its state"
    finally:
        market.stop()
