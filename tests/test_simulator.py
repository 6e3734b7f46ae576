"""The simulator as users and the web app meet it: a real process on a real socket."""

from __future__ import annotations

import collections
import contextlib
import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulator import universe, wire
from simulator.pump import tick_line
from tests.procs import ROOT, run_simulator

SYMBOLS = 50  # the default universe, seed 1
FIRST, SECOND = universe.create(2, seed=1)  # the first companies of every seed 1 universe


class FeedClient:
    """A subscriber that reads the feed message by message, with a deadline on each wait."""

    def __init__(self, path: os.PathLike | str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(os.fspath(path))
        self._decoder = wire.Decoder()
        self._ready: collections.deque = collections.deque()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def next(self, timeout: float = 5.0) -> dict:
        deadline = time.monotonic() + timeout
        while not self._ready:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no message from the feed in time")
            self.sock.settimeout(left)
            data = self.sock.recv(1 << 16)
            if not data:
                raise EOFError("the feed closed the connection")
            self._ready.extend(self._decoder.feed(data))
        item = self._ready.popleft()
        assert isinstance(item, dict), f"the market sent a bad line: {item}"
        return item

    def until(self, wanted: Callable[[dict], bool], timeout: float = 5.0) -> tuple[dict, list]:
        """The first message that is ``wanted``, and the ticks seen before it."""
        deadline = time.monotonic() + timeout
        skipped = []
        while not wanted(message := self.next(max(deadline - time.monotonic(), 0.001))):
            skipped.append(message)
        return message, skipped

    def answer(self, timeout: float = 5.0) -> dict:
        """The next reply or error, skipping ticks."""
        return self.until(lambda m: m["type"] in ("reply", "error"), timeout)[0]

    def close(self) -> None:
        self.sock.close()


@contextlib.contextmanager
def subscribed(path) -> Iterator[FeedClient]:
    """A client that has read its hello and snapshot."""
    client = FeedClient(path)
    try:
        assert client.next()["type"] == "hello"
        assert client.next()["type"] == "snapshot"
        yield client
    finally:
        client.close()


def cli(*args: str, timeout: float = 20) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "simulator", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def assert_one_line_error(result: subprocess.CompletedProcess, reason: str) -> None:
    assert result.returncode != 0
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr
    assert reason in result.stderr
    assert "Traceback" not in result.stderr and "Usage" not in result.stderr


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    """One market for the tests that only talk to it: seed 1, 50 symbols, 200 ticks/s."""
    with run_simulator(tmp_path_factory.mktemp("sim"), "--seed", "1", "--rate", "200") as sim:
        yield sim
    assert "Traceback" not in sim.output()


# What a subscriber gets ---------------------------------------------------------

def test_hello_then_snapshot_then_the_next_tick(sim):
    client = FeedClient(sim.path)
    try:
        hello, snapshot, first = client.next(), client.next(), client.next()
    finally:
        client.close()
    epoch, seq, listed = wire.parse_hello(hello)
    assert epoch.isalnum() and hello["rate"] == 200
    assert hello["count"] == len(listed) == SYMBOLS and all(c["sector"] for c in listed)
    assert snapshot["type"] == "snapshot" and snapshot["count"] == SYMBOLS
    snapshot_seq, quotes = wire.parse_snapshot(snapshot)
    assert snapshot_seq == seq
    assert [q["symbol"] for q in quotes] == [c["symbol"] for c in listed]
    assert max(q["seq"] for q in quotes) == seq
    assert first["type"] == "tick" and first["seq"] == seq + 1


def test_ticks_come_in_seq_order_without_gaps_and_fresh(sim):
    with subscribed(sim.path) as client:
        ticks = [client.next() for _ in range(200)]
    now_ms = time.time() * 1000
    seqs = [tick["seq"] for tick in ticks]
    assert seqs == list(range(seqs[0], seqs[0] + 200))
    for tick in ticks:
        assert wire.parse_quote(tick) == {k: v for k, v in tick.items() if k != "type"}
        assert now_ms - 5000 < tick["ts"] <= now_ms + 1


def test_every_run_has_its_own_epoch(sim, tmp_path):
    with run_simulator(tmp_path, "--seed", "1") as other:
        epochs = set()
        for path in (sim.path, other.path):
            client = FeedClient(path)
            epochs.add(client.next()["epoch"])
            client.close()
    assert len(epochs) == 2


def test_symbols_request_lists_the_hello_universe(sim):
    client = FeedClient(sim.path)
    try:
        hello = client.next()
        client.send(b'{"op":"symbols","id":"s1"}\n')
        answer = client.answer()
    finally:
        client.close()
    assert answer == {"type": "reply", "id": "s1", "count": SYMBOLS,
                      "universe": hello["universe"]}


def read_in_pieces(client: FeedClient, first: dict, key: str, piece: dict) -> list:
    """The whole list of a message sent in pieces: ``first``'s, then each piece's, in order;
    every line of it within the line limit (re-encoded, it is the very line received).
    Ticks may come between the pieces of an answer (``piece`` has an id), never else."""
    items, lines = list(first[key]), [first]
    while len(items) < first["count"]:
        message = client.next()
        if "id" in piece and message["type"] == "tick":
            continue
        lines.append(message)
        assert {k: message.get(k) for k in piece} == piece, message
        items += message[key]
    assert len(items) == first["count"]
    assert all(len(wire.encode(line)) <= wire.MAX_LINE for line in lines)
    return items


def test_a_full_size_market_sends_its_universe_and_quotes_in_pieces(tmp_path):
    count = universe.MAX_SYMBOLS
    with run_simulator(tmp_path, "--seed", "3", "--symbols", str(count),
                       "--rate", "2000") as market:
        with contextlib.closing(FeedClient(market.path)) as client:
            hello = client.next()
            listed = read_in_pieces(client, hello, "universe", {"type": "universe"})
            snapshot = client.next()
            quotes = read_in_pieces(client, snapshot, "quotes", {"type": "quotes"})
            first_tick = client.next()
            client.send(b'{"op":"symbols","id":7}\n')
            reply = client.answer()
            answered = read_in_pieces(client, reply, "universe", {"type": "universe", "id": 7})
        result = cli("symbols", "--feed", market.feed)
    assert hello["type"] == "hello" and 0 < len(hello["universe"]) < count
    assert listed == [c.listing() for c in universe.create(count, seed=3)]
    assert snapshot["type"] == "snapshot" and snapshot["seq"] == hello["seq"]
    assert 0 < len(snapshot["quotes"]) < count
    assert [q["symbol"] for q in quotes] == [c["symbol"] for c in listed]
    assert all(wire.parse_quote(q) == q for q in quotes)
    assert first_tick["type"] == "tick" and first_tick["seq"] == hello["seq"] + 1
    assert reply["type"] == "reply" and answered == listed
    assert result.returncode == 0, result.stderr
    assert [line.split()[0] for line in result.stdout.splitlines()] == [
        c["symbol"] for c in listed]


# Injecting a price ----------------------------------------------------------------

def test_injected_price_reaches_another_subscriber_exactly(sim):
    with subscribed(sim.path) as injector, subscribed(sim.path) as watcher:
        injector.send(b'{"op":"inject","symbol":"%s","price":321.09,"id":42}\n'
                      % FIRST.symbol.encode())
        answer = injector.answer()
        seen, _ = watcher.until(lambda m: m["type"] == "tick" and m["size"] == 0)
    assert answer["type"] == "reply" and answer["id"] == 42
    assert answer["quote"]["price"] == 321.09 and answer["quote"]["symbol"] == FIRST.symbol
    assert seen == {"type": "tick", **answer["quote"]}


def test_walk_continues_from_the_injected_price(sim):
    with subscribed(sim.path) as client:
        client.send(b'{"op":"inject","symbol":"%s","price":5000}\n' % SECOND.symbol.encode())
        assert client.answer()["quote"]["price"] == 5000
        later, _ = client.until(lambda m: m["type"] == "tick" and m["symbol"] == SECOND.symbol,
                                timeout=30)
    assert later["size"] > 0
    assert 4000 < later["price"] < 6000


# Bad lines ------------------------------------------------------------------------

INJECT = b'{"op":"inject","symbol":"%s",' % FIRST.symbol.encode()
BAD_LINES = [
    (b"not json", "line is not JSON"),
    (b"\x00\xff\xfe binary", "line is not UTF-8"),
    (b'{"op":"inject","price":' + b"1" * (wire.MAX_LINE + 10) + b"}", "line longer than"),
    (b'{"price":NaN}', "NaN is not allowed"),
    (b"[1,2,3]", "not a JSON object"),
    (b'{"id":1}', "request has no op"),
    (b'{"op":"sell","id":1}', "unknown op 'sell'"),
    (b'{"op":"inject","symbol":"NOPE","price":10,"id":2}', "unknown symbol 'NOPE'"),
    (INJECT + b'"price":-5,"id":3}', "finite positive"),
    (INJECT + b'"price":"ten","id":4}', "price must be a number"),
    (INJECT + b'"price":0.001,"id":5}', "price must be between"),
    (b'{"op":"symbols","id":1e999}', "id must be"),
]


def test_bad_lines_get_one_error_each_and_nobody_else_notices(sim):
    with subscribed(sim.path) as watcher, subscribed(sim.path) as sender:
        first = watcher.next()["seq"]
        sender.send(b"".join(line + b"\n" for line, _ in BAD_LINES))
        answers = [sender.answer() for _ in BAD_LINES]
        sender.send(b'{"op":"symbols","id":"last"}\n')
        assert sender.answer()["id"] == "last"  # and no extra answer came before it
        ticks = [watcher.next() for _ in range(100)]
    for (_, reason), answer in zip(BAD_LINES, answers, strict=True):
        assert answer["type"] == "error" and reason in answer["error"]
    assert [answer.get("id") for answer in answers[6:11]] == [1, 2, 3, 4, 5]
    assert [tick["seq"] for tick in ticks] == list(range(first + 1, first + 101))


request_like = st.fixed_dictionaries(
    {"op": st.sampled_from(["inject", "symbols", "buy", ""])},
    optional={"symbol": st.text(max_size=12) | st.integers(),
              "price": st.floats() | st.integers() | st.text(max_size=5) | st.none(),
              "id": st.integers() | st.text(max_size=5) | st.booleans() | st.lists(st.none())},
).map(lambda request: json.dumps(request).encode())  # NaN and Infinity included
garbage_lines = (request_like | st.binary(max_size=300) | st.text(max_size=300).map(str.encode))


def answered(line: bytes) -> bool:
    """Whether the decoder makes a message of this line (blank lines are skipped)."""
    return b"\n" not in line and line.removesuffix(b"\r").strip() != b""


@settings(max_examples=75, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(garbage_lines.filter(answered), min_size=1, max_size=5))
def test_any_garbage_gets_exactly_one_answer_per_line(sim, lines):
    with subscribed(sim.path) as client:
        client.send(b"".join(line + b"\n" for line in lines))
        answers = [client.answer() for _ in lines]
        client.send(b'{"op":"symbols","id":"end"}\n')
        assert client.answer()["id"] == "end"
    assert all(answer["type"] in ("reply", "error") for answer in answers)


def test_silent_client_is_just_a_subscriber(sim):
    with subscribed(sim.path) as client:
        assert client.next()["type"] == "tick"


# Replay ---------------------------------------------------------------------------

def ask_replay(client: FeedClient, request: dict) -> tuple[list[dict], list[dict], dict]:
    """The replay pieces, the live ticks among them, and the one final answer."""
    client.send(json.dumps(request).encode() + b"\n")
    pieces, live = [], []
    while (message := client.next(10))["type"] not in ("reply", "error"):
        (pieces if message["type"] == "replay" else live).append(message)
    return pieces, live, message


def test_replay_gives_the_missed_ticks_in_pieces_then_one_reply(sim):
    with contextlib.closing(FeedClient(sim.path)) as client:
        hello = client.next()
        assert client.next()["type"] == "snapshot"
        client.until(lambda m: m["type"] == "tick" and m["seq"] >= hello["seq"] + 20)
        pieces, live, done = ask_replay(client, {"op": "replay", "after": hello["seq"],
                                                 "id": "r1"})
    ticks = [tick for piece in pieces for tick in piece["ticks"]]
    assert done == {"type": "reply", "id": "r1", "after": hello["seq"], "until": done["until"],
                    "count": len(ticks)}
    assert [t["seq"] for t in ticks] == list(range(hello["seq"] + 1, done["until"] + 1))
    assert all(piece["id"] == "r1" for piece in pieces)
    assert all(wire.parse_quote(t) == {k: v for k, v in t.items() if k != "type"} for t in ticks)
    seqs = [tick["seq"] for tick in live]  # the live stream goes on meanwhile, unbroken
    assert all(b == a + 1 for a, b in zip(seqs, seqs[1:], strict=False))


def test_replay_bounds_and_errors(tmp_path):
    with run_simulator(tmp_path, "--seed", "1", "--rate", "200", "--replay-ticks", "100",
                       "--replay-seconds", "600") as market:
        with subscribed(market.path) as client:
            client.until(lambda m: m["type"] == "tick" and m["seq"] >= 150)
        with contextlib.closing(FeedClient(market.path)) as client:
            hello = client.next()
            assert hello["oldest"] == hello["seq"] - 100
            _, _, too_old = ask_replay(client, {"op": "replay", "after": 3, "id": 1})
            _, _, ahead = ask_replay(client, {"op": "replay", "after": 10**9, "id": 2})
            _, _, negative = ask_replay(client, {"op": "replay", "after": -1, "id": 3})
            pieces, _, capped = ask_replay(client, {"op": "replay", "after": hello["seq"] - 10,
                                                    "until": hello["seq"] - 5, "id": 4})
    assert too_old["type"] == "error" and "is older than the replay (oldest" in too_old["error"]
    assert ahead["type"] == "error" and "is ahead of the market" in ahead["error"]
    assert negative == {"type": "error", "id": 3,
                        "error": "after must be a non-negative integer"}
    assert capped["count"] == 5 and capped["until"] == hello["seq"] - 5
    assert [t["seq"] for p in pieces for t in p["ticks"]] == list(
        range(hello["seq"] - 9, hello["seq"] - 4))


def test_a_long_replay_holds_up_no_one(tmp_path):
    with run_simulator(tmp_path, "--seed", "1", "--rate", "5000",
                       "--replay-ticks", "20000") as market:
        deadline = time.monotonic() + 30
        while True:  # until the replay holds its 20,000 ticks
            with contextlib.closing(FeedClient(market.path)) as probe:
                if probe.next()["seq"] >= 21_000:
                    break
            assert time.monotonic() < deadline
            time.sleep(0.2)
        with subscribed(market.path) as watcher:
            seqs, done_asking = [], threading.Event()

            def watch() -> None:
                while not done_asking.is_set() or len(seqs) < 5_000:
                    seqs.append(watcher.next()["seq"])

            reading = threading.Thread(target=watch)
            reading.start()
            with contextlib.closing(FeedClient(market.path)) as asker:
                hello = asker.next()
                after = hello["oldest"] + 500  # room for the trimming while it is asked
                pieces, _, done = ask_replay(asker, {"op": "replay", "after": after})
            done_asking.set()
            reading.join(30)
    ticks = [tick["seq"] for piece in pieces for tick in piece["ticks"]]
    assert ticks == list(range(after + 1, done["until"] + 1)) and len(ticks) >= 19_000
    assert done["count"] == len(ticks) and len(pieces) > 40
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # the others got every tick
    assert "stalled" not in market.output() and "dropped" not in market.output()


# The command line -----------------------------------------------------------------

def test_cli_inject_prints_the_quote(sim):
    result = cli("inject", FIRST.symbol.lower(), "77.7", "--feed", sim.feed)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("\n") == 1
    quote = json.loads(result.stdout)
    assert tuple(quote) == wire.QUOTE_FIELDS
    assert (quote["symbol"], quote["price"], quote["size"]) == (FIRST.symbol, 77.7, 0)


def test_cli_inject_reads_the_feed_from_the_environment(sim):
    result = subprocess.run(
        [sys.executable, "-m", "simulator", "inject", FIRST.symbol, "12"], cwd=ROOT,
        capture_output=True, text=True, timeout=20, env={**os.environ, "TICKER_FEED": sim.feed},
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["price"] == 12


@pytest.mark.parametrize("price, reason", [
    ("-5", "not -5.0"),
    ("nan", "not nan"),
    ("inf", "not inf"),
    ("0", "not 0.0"),
    ("ten", "not a number: 'ten'"),
    ("0.001", "price must be between"),
])
def test_cli_inject_refuses_a_bad_price_in_one_line(sim, price, reason):
    assert_one_line_error(cli("inject", FIRST.symbol, price, "--feed", sim.feed), reason)


def test_cli_inject_unknown_symbol(sim):
    assert_one_line_error(cli("inject", "NOPE", "10", "--feed", sim.feed), "unknown symbol 'NOPE'")


def test_cli_without_a_market(tmp_path):
    feed = f"unix:{tmp_path}/none.sock"
    assert_one_line_error(cli("inject", "CARR", "10", "--feed", feed), "no market running at")
    assert_one_line_error(cli("symbols", "--feed", feed), "no market running at")


@pytest.mark.parametrize("args, reason", [
    (("inject", "CARR"), "Missing argument 'PRICE'"),
    (("inject", "CARR", "10", "--feed", "ftp://x"), "is not unix:PATH"),
    (("symbols", "--bogus"), "No such option"),
    (("run", "--symbols", "0"), "--symbols must be between 1 and"),
    (("run", "--symbols", "10001"), "--symbols must be between 1 and 10000, not 10001"),
    (("run", "--symbols", "A,A"), "listed twice"),
    (("run", "--rate", "0"), "--rate must be above 0"),
    (("run", "--rate", "nan"), "--rate must be above 0"),
    (("run", "--feed", "redis://127.0.0.1:1/0"), "cannot publish on redis://127.0.0.1:1/0"),
    (("inject", "CARR", "10", "--feed", "redis://127.0.0.1:1/0"), "cannot reach redis at"),
    (("run", "--replay-ticks", "-1"), "--replay-ticks must be between 0 and"),
    (("run", "--replay-ticks", "many"), "'many' is not a valid integer"),
    (("run", "--replay-seconds", "0"), "--replay-seconds must be above 0"),
    (("run", "--replay-seconds", "inf"), "--replay-seconds must be above 0"),
    (("run", "--state", "/"), "is a directory"),
])
def test_cli_usage_errors_are_one_line(args, reason):
    assert_one_line_error(cli(*args), reason)


def test_cli_symbols_lists_every_symbol_aligned(sim):
    result = cli("symbols", "--feed", sim.feed)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == SYMBOLS
    assert lines[0].split() == [FIRST.symbol, *FIRST.name.split(), *FIRST.sector.split()]
    name_column = {line.index(line.split()[1]) for line in lines}
    assert len(name_column) == 1


def test_cli_help_teaches_by_example():
    result = cli("inject", "--help")
    assert result.returncode == 0
    assert f"python -m simulator inject {FIRST.symbol} 123.45" in result.stdout


# Keeping up -----------------------------------------------------------------------

def test_subscriber_that_stops_reading_is_dropped_and_others_go_on(tmp_path):
    with run_simulator(tmp_path, "--seed", "1", "--rate", "20000") as sim:
        stuck = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stuck.connect(str(sim.path))
        with subscribed(sim.path) as reader:
            seqs = [reader.next()["seq"]]
            deadline = time.monotonic() + 30
            while "dropped" not in sim.output():
                assert time.monotonic() < deadline, sim.output()
                seqs += [reader.next()["seq"] for _ in range(2000)]
            seqs += [reader.next()["seq"] for _ in range(2000)]
        stuck.close()
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    assert "subscriber 1 dropped: 8." in sim.output()


# Life cycle -----------------------------------------------------------------------

def test_socket_is_private_to_its_user(sim):
    assert stat.S_IMODE(os.stat(sim.path).st_mode) == 0o600


def test_sigterm_closes_the_market_cleanly(tmp_path):
    with run_simulator(tmp_path, "--seed", "1") as sim:
        with subscribed(sim.path):
            pass
        sim.proc.send_signal(signal.SIGTERM)
        assert sim.proc.wait(10) == 0
    assert not sim.path.exists()
    assert re.search(r"market closed on SIGTERM after \d+ ticks$", sim.output().splitlines()[-1])
    assert "Traceback" not in sim.output()


def test_sigint_closes_the_market_cleanly(tmp_path):
    with run_simulator(tmp_path, "--seed", "1") as sim:
        sim.proc.send_signal(signal.SIGINT)
        assert sim.proc.wait(10) == 0
    assert not sim.path.exists()
    assert "market closed on SIGINT" in sim.output()


def test_stale_socket_is_replaced(tmp_path):
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(tmp_path / "feed.sock"))
    stale.close()  # the file stays, nobody listens: what a killed market leaves
    with run_simulator(tmp_path, "--seed", "1") as sim, subscribed(sim.path) as client:
        assert client.next()["type"] == "tick"
    assert "removing stale socket" in sim.output()


def test_live_socket_is_refused(sim):
    result = cli("run", "--feed", sim.feed, "--seed", "2")
    assert_one_line_error(result, f"a market is already running at {sim.feed}")
    with subscribed(sim.path) as client:  # and the first market is still serving
        assert client.next()["type"] == "tick"


def test_file_in_the_way_is_refused(tmp_path):
    (tmp_path / "feed.sock").write_text("not a socket")
    assert_one_line_error(cli("run", "--feed", f"unix:{tmp_path}/feed.sock"),
                          "exists and is not a socket")


def test_tcp_feed(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    feed = f"tcp://127.0.0.1:{port}"
    with open(tmp_path / "log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "simulator", "run", "--feed", feed,
                                 "--seed", "1"], cwd=ROOT, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                sock = socket.create_connection(("127.0.0.1", port), timeout=5)
                break
            except ConnectionRefusedError:
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.05)
        with sock:
            assert sock.recv(100).startswith(b'{"type":"hello"')
        result = cli("inject", FIRST.symbol, "50", "--feed", feed)
        assert result.returncode == 0 and json.loads(result.stdout)["price"] == 50
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0


# The fast tick encoder ------------------------------------------------------------

finite = st.floats(allow_nan=False, allow_infinity=False)
quotes = st.fixed_dictionaries({
    "symbol": st.from_regex(r"[A-Z][A-Z0-9.]{0,9}", fullmatch=True),
    **{key: finite | st.integers() for key in wire.QUOTE_FIELDS[1:7]},
    **{key: st.integers(min_value=0, max_value=2 ** 63) for key in wire.QUOTE_FIELDS[7:]},
}).map(lambda quote: {key: quote[key] for key in wire.QUOTE_FIELDS})  # the model's order


@given(quotes)
def test_tick_line_is_byte_for_byte_the_wire_encoding(quote):
    assert tick_line(quote) == wire.encode(wire.tick(quote))
