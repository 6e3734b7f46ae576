"""Who watches a restart: the market's own tape, clients that come back like EventSource,
and a poller of ``/healthz``. Each runs in a thread and counts what it sees, never raising
from it, so a test can stop a process under them and then judge what they saw.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from tests import sequences
from tests.sse_client import Event, SSEClient

__all__ = ["Follower", "HealthPoller", "Tape", "wait_until"]


def wait_until(done: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``done`` until it is true; AssertionError naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g} s")
        time.sleep(0.02)


class Tape:
    """Every tick of the market, read from its socket by a thread, across market restarts.

    A market restarted from its state file must say hello in the same epoch, at or past the
    seq it stopped at; what it published before the tape was back is asked for with a
    ``replay`` request, as any subscriber that had less would. Anything else (another
    epoch, a seq gone back, a replay refused) is recorded in ``breaks``.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.epoch = ""
        self.universe: list[str] = []
        self.ticks: dict[int, dict] = {}
        self.head = -1
        self.sessions = 0
        self.breaks: list[str] = []
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Tape:
        self._thread.start()
        wait_until(lambda: self.head >= 0 or self.errors, 20, "the tape's first hello")
        assert not self.errors, self.errors
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def copy(self) -> dict[int, dict]:
        with self._lock:
            return dict(self.ticks)

    def last_for(self, symbols: frozenset[str] | None, upto: int) -> int:
        """The newest seq up to ``upto`` of one of ``symbols`` (None: any)."""
        with self._lock:
            return max((s for s, q in self.ticks.items()
                        if s <= upto and (symbols is None or q["symbol"] in symbols)), default=0)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    self._session()
                except (FileNotFoundError, ConnectionError):
                    time.sleep(0.05)  # the market is away, or going: its hello will tell
        except Exception as exc:  # noqa: BLE001  reported by the test, not by the thread
            self.errors.append(repr(exc))

    def _session(self) -> None:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(str(self.path))
            sock.settimeout(0.2)
            buffer = b""
            while not self._stop.is_set():
                try:
                    data = sock.recv(1 << 16)
                except TimeoutError:
                    continue
                if not data:
                    return
                *lines, buffer = (buffer + data).split(b"\n")
                for line in lines:
                    request = self._take(json.loads(line))
                    if request:
                        sock.sendall(json.dumps(request).encode() + b"\n")

    def _take(self, message: dict) -> dict | None:
        """Record one message; the request to send back, if it calls for one."""
        kind = message["type"]
        if kind == "hello":
            self.sessions += 1
            epoch, seq = message["epoch"], message["seq"]
            if self.sessions == 1:
                self.epoch, self.head = epoch, seq
                self.universe = [company["symbol"] for company in message["universe"]]
            elif epoch != self.epoch or seq < self.head:
                self.breaks.append(f"the market came back as {epoch} at seq {seq}, "
                                   f"not {self.epoch} at seq {self.head} or later")
            elif seq > self.head:
                return {"op": "replay", "after": self.head, "until": seq, "id": "tape"}
        elif kind == "tick":
            self._record([message])
        elif kind == "replay":
            self._record(message["ticks"])
        elif kind == "error":
            self.breaks.append(f"the market answered the tape: {message['error']}")
        return None

    def _record(self, ticks: list[dict]) -> None:
        with self._lock:
            for tick in ticks:
                self.ticks[tick["seq"]] = {k: v for k, v in tick.items() if k != "type"}
                self.head = max(self.head, tick["seq"])


class _Client(SSEClient):
    """An SSEClient that closes its socket when the response never comes (the server
    accepted and then went away), instead of leaving it to the garbage collector."""

    def __init__(self, *args, **kwargs) -> None:
        try:
            super().__init__(*args, **kwargs)
        except BaseException:
            sock = getattr(self, "sock", None)
            if sock is not None:
                sock.close()
            raise


class Follower:
    """A client that behaves like EventSource, in a thread, keeping every event it saw.

    ``leave`` closes its stream and keeps it away; ``come_back`` has it reconnect with
    its last event id. Refused connections and non-200 answers are counted, not raised.
    """

    def __init__(self, base_url: str, symbols: list[str] | None) -> None:
        self.base_url = base_url
        self.symbols = None if symbols is None else frozenset(symbols)
        self.path = "/stream" if symbols is None else "/stream?symbols=" + ",".join(symbols)
        self.connections: list[list[Event]] = []
        self.last_event_id: str | None = None
        self.retry_s = 0.25
        self.refused = 0
        self.answers: list[int] = []  # statuses other than 200
        self.errors: list[str] = []
        self.client: SSEClient | None = None
        self._away = threading.Event()
        self._gone = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __repr__(self) -> str:
        return f"client of {self.path}"

    def start(self) -> Follower:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def leave(self) -> None:
        self._away.set()
        self._gone.wait(5)

    def come_back(self) -> None:
        self._gone.clear()
        self._away.clear()

    def prices(self) -> int:
        return sum(e.type == "price" for events in list(self.connections) for e in events)

    def newest(self) -> int:
        """The highest seq of a price event it has received, 0 before any."""
        seqs = [sequences.seq_of(e.id) or 0 for events in list(self.connections)
                for e in events if e.type == "price"]
        return max(seqs, default=0)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                if self._away.is_set():
                    self._gone.set()
                    time.sleep(0.02)
                    continue
                self._connection()
        except Exception as exc:  # noqa: BLE001  reported by the test, not by the thread
            self.errors.append(repr(exc))

    def _connection(self) -> None:
        try:
            client = _Client(self.base_url, self.path, self.last_event_id, timeout=5)
        except (OSError, EOFError) as exc:
            if isinstance(exc, ConnectionRefusedError):
                self.refused += 1
            time.sleep(self.retry_s)
            return
        with client:
            if client.status != 200:
                self.answers.append(client.status)
                time.sleep(self.retry_s)
                return
            self.client = client
            events: list[Event] = []
            self.connections.append(events)
            try:
                while not self._stop.is_set() and not self._away.is_set():
                    with contextlib.suppress(TimeoutError):
                        events.append(client.next(0.1))
                    self._remember(client)
            except (EOFError, OSError):
                pass
            self._remember(client)
            self.client = None
        if not self._away.is_set():
            time.sleep(self.retry_s)

    def _remember(self, client: SSEClient) -> None:
        self.last_event_id = client.parser.last_event_id or self.last_event_id
        if client.parser.retry is not None:
            self.retry_s = client.parser.retry / 1000


class HealthPoller:
    """``GET /healthz`` every 50 ms from a thread, each answer or failure counted.

    A slow answer is an answer: only one that takes over 10 s counts as a failure.
    """

    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}/healthz"
        self.ok = 0
        self.refused = 0
        self.answers: list[int] = []  # statuses other than 200
        self.failures: list[str] = []  # resets, timeouts: anything but an answer or a refusal
        self.slowest = 0.0  # seconds the slowest answer took
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> HealthPoller:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            asked = time.monotonic()
            try:
                with urllib.request.urlopen(self.url, timeout=10) as answer:
                    status = answer.status
            except urllib.error.HTTPError as exc:
                status = exc.code
                exc.close()
            except (urllib.error.URLError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                if isinstance(reason, ConnectionRefusedError):
                    self.refused += 1
                else:
                    self.failures.append(repr(reason))
                continue
            self.slowest = max(self.slowest, time.monotonic() - asked)
            if status == 200:
                self.ok += 1
            else:
                self.answers.append(status)

    def problems(self) -> list[str]:
        """What went wrong for a client of ``/healthz``: a refusal, an answer but 200, a
        reset or a timeout; or too few answers to tell."""
        if not (self.refused or self.answers or self.failures) and self.ok > 20:
            return []
        return [f"/healthz: {self.ok} answered 200, {self.refused} refused, other answers "
                f"{self.answers}, failures {self.failures[:5]}; the slowest answer took "
                f"{self.slowest:.1f} s"]
