"""Nothing lost across restarts: a worker killed, gunicorn restarted or reloaded, the market
restarted from its saved state, and every client resumes exactly by ``Last-Event-ID``.

Each test runs a real market, gunicorn and clients that behave like ``EventSource`` (when
a stream ends or a connection fails they wait ``retry`` and come back with their last
event id). A tape reads every tick straight from the market's socket, so the truth does
not depend on gunicorn; each client's ``price`` events are then compared with it
(``tests.sequences``): no gap, no duplicate, no snapshot after the first connect, ids
strictly increasing. One client follows a few symbols, one every symbol.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from tests import sequences
from tests.observers import Follower, HealthPoller, Tape, wait_until
from tests.procs import Simulator, run_simulator
from tests.servers import Gunicorn, run_gunicorn, serving_worker

MARKET = ("--seed", "5", "--symbols", "20", "--rate", "50")
# Clients come back a quarter of a second after losing a stream (browsers: 2 s).
SERVER_ENV = {"TICKER_RETRY_MS": "250"}
AWAY_S = 2.0  # how long a client that leaves stays away


def start(stack: contextlib.ExitStack, tmp_path: Path, *, workers: int,
          market_args: tuple[str, ...] = MARKET) -> tuple[Simulator, Tape, Gunicorn]:
    """The market, its tape and gunicorn, each stopped when ``stack`` closes."""
    market = stack.enter_context(run_simulator(tmp_path, *market_args))
    tape = Tape(market.path).start()
    stack.callback(tape.stop)
    server = stack.enter_context(run_gunicorn(tmp_path, market.feed, workers=workers,
                                              env=SERVER_ENV))
    return market, tape, server


@contextlib.contextmanager
def followers(tape: Tape, server: Gunicorn) -> Iterator[list[Follower]]:
    """Two streaming clients, one on three symbols and one on every symbol, started and
    stopped around the block, each having received a few prices before it runs."""
    chosen = [tape.universe[i] for i in (2, 9, 15)]
    clients = [Follower(server.url, chosen).start(), Follower(server.url, None).start()]
    try:
        wait_until(lambda: all(c.prices() >= 3 for c in clients), 20,
                   "every client's first prices")
        yield clients
    finally:
        for client in clients:
            client.stop()


def assert_exact(tape: Tape, clients: list[Follower], server: Gunicorn,
                 also: Sequence[str] = (), timeout: float = 15.0) -> None:
    """Every client got exactly the market's ticks for its symbols, up to the tape's head now.

    ``also``: other problems the test found, reported in the same failure, with the
    error lines of ``server``'s log.
    """
    upto = tape.head
    deadline = time.monotonic() + timeout
    for client in clients:
        target = tape.last_for(client.symbols, upto)
        while client.newest() < target and time.monotonic() < deadline:
            time.sleep(0.05)
    assert not tape.breaks and not tape.errors, ("the reference is unsound", tape.breaks,
                                                 tape.errors)
    ticks = tape.copy()
    report = list(also)
    for client in clients:
        assert not client.errors, f"{client} broke: {client.errors}"
        found = sequences.problems(ticks, tape.epoch, client.symbols, client.connections, upto)
        if client.answers:
            found.append(f"answers other than 200 on reconnecting: {client.answers}")
        report += [f"{client}: {problem}" for problem in found]
    if report:
        errors = [line for line in server.output().splitlines()
                  if "[ERROR]" in line or line.startswith(("Traceback", "OSError"))]
        report += ["gunicorn's log says:", *errors[-20:]]
    assert not report, "\n".join(report)


def await_new_workers(server: Gunicorn, old: set[int], master: int | None = None,
                      timeout: float = 20.0) -> list[int]:
    """Until ``master`` (default: the server's) has its full count of workers, none in
    ``old``, and each has logged that its feed is up."""
    master = master or server.proc.pid

    def workers() -> list[int]:
        children = Path(f"/proc/{master}/task/{master}/children")
        with contextlib.suppress(OSError):
            return [int(pid) for pid in children.read_text().split()]
        return []

    def ready() -> bool:
        pids = workers()
        return (len(pids) == server.workers and not set(pids) & old
                and server.output().count(" up: epoch ") >= len(old) + server.workers)

    try:
        wait_until(ready, timeout, "the new workers")
    except AssertionError:
        raise AssertionError(
            f"the new workers did not come up:\n{server.output()[-3000:]}") from None
    return workers()


def test_a_killed_worker_is_respawned_and_every_client_resumes_on_it(tmp_path):
    with contextlib.ExitStack() as stack:
        _, tape, server = start(stack, tmp_path, workers=1)
        streaming = stack.enter_context(followers(tape, server))
        away = stack.enter_context(followers(tape, server))
        for client in away:
            client.leave()
        left = time.monotonic()
        [victim] = server.worker_pids()
        os.kill(victim, signal.SIGKILL)
        [respawned] = await_new_workers(server, {victim})
        time.sleep(max(0.0, AWAY_S - (time.monotonic() - left)))
        for client in away:
            client.come_back()
        assert_exact(tape, streaming + away, server)
        for client in streaming + away:
            current = client.client
            assert current is not None, f"{client} is not connected"
            assert serving_worker(server, current.sock) == respawned


def test_gunicorn_stopped_and_started_again_on_the_same_port(tmp_path):
    with contextlib.ExitStack() as stack:
        market, tape, first = start(stack, tmp_path, workers=1)
        clients = stack.enter_context(followers(tape, first))
        assert first.stop() == 0
        time.sleep(AWAY_S)
        second = stack.enter_context(run_gunicorn(tmp_path, market.feed, workers=1,
                                                  env=SERVER_ENV, port=first.port))
        assert_exact(tape, clients, second)
        assert all(client.refused for client in clients), "no client tried while it was down"


def test_hup_reload_loses_nothing_and_refuses_nobody(tmp_path):
    with contextlib.ExitStack() as stack:
        _, tape, server = start(stack, tmp_path, workers=2)
        clients = stack.enter_context(followers(tape, server))
        health = HealthPoller(server.port).start()
        stack.callback(health.stop)
        time.sleep(0.5)
        old = set(server.worker_pids())
        server.proc.send_signal(signal.SIGHUP)
        await_new_workers(server, old)
        wait_until(lambda: not any(Path(f"/proc/{pid}").exists() for pid in old), 10,
                   "the old workers' exit")
        time.sleep(1.0)
        health.stop()
        assert_exact(tape, clients, server, also=health.problems())


def _gone(pid: int) -> bool:
    """Exited (or a zombie nobody has reaped yet)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return True
    return state in ("Z", "X")


def _stop_orphan_master(pid: int) -> None:
    """A master re-executed by USR2 is not our child: stop it, and its workers, by PID."""
    if _gone(pid):
        return
    children = Path(f"/proc/{pid}/task/{pid}/children")
    workers: list[int] = []
    with contextlib.suppress(OSError):
        workers = [int(p) for p in children.read_text().split()]
    os.kill(pid, signal.SIGTERM)
    with contextlib.suppress(AssertionError):
        wait_until(lambda: _gone(pid), 10, "the new master's exit")
    for left in [pid, *workers]:
        if not _gone(left):
            with contextlib.suppress(ProcessLookupError):
                os.kill(left, signal.SIGKILL)


def test_usr2_winch_quit_upgrade_loses_nothing_and_refuses_nobody(tmp_path):
    with contextlib.ExitStack() as stack:
        _, tape, server = start(stack, tmp_path, workers=2)
        clients = stack.enter_context(followers(tape, server))
        health = HealthPoller(server.port).start()
        stack.callback(health.stop)
        time.sleep(0.5)
        old = set(server.worker_pids())
        server.proc.send_signal(signal.SIGUSR2)

        def new_master() -> int | None:
            fresh = set(server.worker_pids()) - old
            return min(fresh) if fresh else None

        try:
            wait_until(lambda: new_master() is not None, 10, "the re-executed master")
        except AssertionError:
            raise AssertionError(
                f"USR2 started no new master:\n{server.output()[-3000:]}") from None
        master = new_master()
        stack.callback(_stop_orphan_master, master)
        await_new_workers(server, old, master=master)
        server.proc.send_signal(signal.SIGWINCH)
        time.sleep(1.0)
        server.proc.send_signal(signal.SIGQUIT)
        server.proc.wait(10)
        wait_until(lambda: all(_gone(pid) for pid in old), 10, "the old workers' exit")
        assert not _gone(master), f"the new master died:\n{server.output()[-3000:]}"
        time.sleep(1.0)
        health.stop()
        assert_exact(tape, clients, server, also=health.problems())


def test_market_restarted_from_its_state_file_continues_every_stream(tmp_path):
    state = tmp_path / "market.state"
    market_args = (*MARKET, "--state", str(state))
    with contextlib.ExitStack() as stack:
        market, tape, server = start(stack, tmp_path, workers=1, market_args=market_args)
        clients = stack.enter_context(followers(tape, server))
        assert market.stop() == 0, market.output()
        assert state.exists(), f"SIGTERM left no state file:\n{market.output()}"
        wait_until(lambda: all(sequences.statuses(c.connections)[-1:] == ["down"]
                               for c in clients), 15, "status down on every stream")
        time.sleep(1.0)
        stack.enter_context(run_simulator(tmp_path, *market_args))
        wait_until(lambda: all(sequences.statuses(c.connections)[-1:] == ["up"]
                               for c in clients), 15, "status up again on every stream")
        wait_until(lambda: tape.sessions >= 2, 10, "the tape back on the market")
        assert_exact(tape, clients, server)
        for client in clients:
            seen = sequences.statuses(client.connections)
            assert seen[-2:] == ["down", "up"] and "down" not in seen[:-2], (client, seen)

