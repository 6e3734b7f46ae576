"""The fan-out on its own: real sockets (socketpairs), a fake clock, sweeps called by hand.

Each test plays the stream's body the way ``ticker/streams.py`` does (open, first bytes,
arm, wait, close) and reads what the client end of the socket received.
"""

from __future__ import annotations

import contextlib
import json
import random

import gevent
import pytest
from gevent import socket

from simulator.wire import Tick
from tests.sse_client import Parser
from ticker import admission
from ticker.eventlog import EventLog
from ticker.fanout import Fanout, Refused, Stream

UNIVERSE = [{"symbol": s, "name": f"{s} Inc", "sector": "Tech"} for s in ("AAA", "BBB", "CCC")]
HEARTBEAT_S = 10.0
STALL_S = 30.0


def quote(symbol: str, seq: int, pad: int = 0) -> dict:
    return {"symbol": symbol, "price": 10.0 + seq / 100, "open": 10.0, "high": 20.0, "low": 5.0,
            "change": 0.0, "change_pct": 0.0, "volume": seq * 100 + pad, "size": 100,
            "ts": 1_000 + seq, "seq": seq}


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def log():
    log = EventLog(1_000)
    log.reset("ep1", 0, UNIVERSE, [quote(s, 0) for s in ("AAA", "BBB", "CCC")], rate=50.0)
    log.feed_up = True
    return log


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def fanout(log, clock):
    return Fanout(log, max_streams=3, max_streams_per_client=2, heartbeat_s=HEARTBEAT_S,
                  retry_ms=2000, flush_ms=2, stall_s=STALL_S, catch_up_bytes=64 * 1024,
                  clock=clock)


_SOCKETS: list[socket.socket] = []


@pytest.fixture(autouse=True)
def close_sockets():
    yield
    while _SOCKETS:
        _SOCKETS.pop().close()


def socketpair() -> tuple[socket.socket, socket.socket]:
    pair = socket.socketpair()
    _SOCKETS.extend(pair)
    return pair


class Client:
    """The client end of one stream, and the server end as its body holds it."""

    def __init__(self, fanout: Fanout, key=None, last_event_id=None, client="10.0.0.1",
                 rate=None) -> None:
        self.fanout = fanout
        self.server, self.peer = socketpair()
        self.parser = Parser()
        self.events: list = []
        self.stream: Stream = fanout.open(self.server, client, key, rate)
        start = admission.start(fanout.log, key, last_event_id, fanout.retry_frame, rate=rate)
        self.stream.begin(start, fanout.log.feed_up)
        self.server.sendall(start.body)  # what gunicorn writes first
        fanout.arm(self.stream, chunked=False)
        self.body = gevent.spawn(self._wait)
        gevent.sleep(0)

    def _wait(self) -> None:
        try:
            self.fanout.wait(self.stream)
        finally:
            self.fanout.close(self.stream)

    def read(self, most: int | None = None) -> list:
        """What has arrived so far (``most`` bytes of it at the most), parsed."""
        self.peer.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            while data := self.peer.recv(most or 1 << 20):
                self.events.extend(self.parser.feed(data))
                if most:
                    break
        return self.events

    def prices(self) -> list[int]:
        return [e.json()["seq"] for e in self.read() if e.type == "price"]

    def close(self) -> None:
        self.peer.close()


def tick(log: EventLog, count: int, symbols=("AAA", "BBB", "CCC"), pad: int = 0) -> None:
    for _ in range(count):
        seq = log.head + 1
        log.append(Tick.of(quote(symbols[seq % len(symbols)], seq, pad)))


def test_a_sweep_writes_each_stream_what_it_is_owed(fanout, log, clock):
    every, some = Client(fanout), Client(fanout, key=frozenset({"AAA"}))
    first = every.read()
    assert [e.type for e in first] == ["snapshot", "status"]
    assert json.loads(first[0].data)["reason"] == "new"
    tick(log, 9)
    fanout.sweep(clock.now)
    assert every.prices() == list(range(1, 10))
    assert some.prices() == [3, 6, 9]


def test_a_pass_writes_only_to_streams_with_something_to_receive(fanout, log, clock):
    watching_a = [Client(fanout, key=frozenset({"AAA"}), client=f"10.0.1.{n}") for n in range(2)]
    watching_b = Client(fanout, key=frozenset({"BBB"}), client="10.0.2.1")
    fanout.sweep(clock.now)  # each joins its group
    for client in (*watching_a, watching_b):
        client.read()
    assert not fanout._attention
    tick(log, 1, symbols=("AAA",))
    clock.now += 1
    fanout.sweep(clock.now)
    assert [c.prices() for c in watching_a] == [[1], [1]]
    assert watching_b.read()[2:] == []
    assert fanout._quiet.due(clock.now - 1) == [watching_b.stream], "B was not even written"


class Ticking(Clock):
    """A clock that moves 1.25 ms each time it is read: the sweeper's writes take time."""

    def __call__(self) -> float:
        self.now += 0.00125
        return self.now


def test_a_tick_that_comes_while_a_group_is_written_goes_to_its_streams_not_yet_reached(log):
    clock = Ticking()
    fanout = Fanout(log, max_streams=10, max_streams_per_client=2, heartbeat_s=HEARTBEAT_S,
                    retry_ms=2000, flush_ms=2, stall_s=STALL_S, catch_up_bytes=64 * 1024,
                    clock=clock)
    clients = [Client(fanout, client=f"10.0.3.{n}") for n in range(4)]  # every symbol
    fanout.sweep(clock.now)  # each joins the one group
    for client in clients:
        client.read()
    arrivals = [2]

    def feed_reader() -> None:  # its turn comes after every second write (2.5 ms)
        while arrivals:
            arrivals.pop()
            tick(log, 1)
            fanout.wake()

    tick(log, 1)
    fanout.sweep(clock.now, give_way=feed_reader)
    assert [c.prices() for c in clients] == [[1], [1], [1, 2], [1, 2]], \
        "tick 2 came after two streams were written: the other two get it in the same pass"
    fanout.sweep(clock.now, give_way=feed_reader)
    assert [c.prices() for c in clients] == [[1, 2]] * 4, "the first two get it next pass..."
    assert [len(c.read()) for c in clients] == [4, 4, 4, 4], "...and the others nothing twice"
    group = fanout.subscriptions.groups[(None, None)]
    assert set(group.in_step.values()) == {group.end} and group.frames == []
    clock.now += HEARTBEAT_S
    fanout.sweep(clock.now)
    assert {c.parser.last_event_id for c in clients} == {"ep1-2"}


@pytest.mark.parametrize("seed", range(8))
def test_every_stream_gets_exactly_its_ticks_whatever_comes_during_a_pass(seed, log):
    rng = random.Random(seed)
    clock = Ticking()
    fanout = Fanout(log, max_streams=20, max_streams_per_client=20, heartbeat_s=HEARTBEAT_S,
                    retry_ms=2000, flush_ms=2, stall_s=STALL_S, catch_up_bytes=64 * 1024,
                    clock=clock)
    keys = [None, frozenset({"AAA"}), frozenset({"AAA", "BBB"}), frozenset({"CCC"})]
    clients = [Client(fanout, key=rng.choice(keys), client=f"10.0.4.{n}") for n in range(12)]

    def feed_reader() -> None:  # ticks come while the sweeper writes, now and then
        tick(log, rng.choice([0, 0, 1, 3]))
        fanout.wake()

    for _ in range(40):
        tick(log, rng.randrange(4))
        fanout.wake()
        fanout.sweep(clock.now, give_way=feed_reader)
        for client in clients:  # readers that keep up
            client.read()
    for _ in range(2):  # the market stops: what is owed goes
        fanout.sweep(clock.now)
    assert not fanout._attention, "every stream in step with its group"
    symbols = ("AAA", "BBB", "CCC")
    for client in clients:
        key = client.stream.key
        owed = [seq for seq in range(1, log.head + 1)
                if key is None or symbols[seq % 3] in key]
        assert client.prices() == owed


def test_a_quiet_stream_gets_a_heartbeat_with_the_head_id(fanout, log, clock):
    client = Client(fanout, key=frozenset({"AAA"}))
    client.read()
    tick(log, 2, symbols=("BBB",))
    fanout.sweep(clock.now)
    assert client.read()[2:] == [], "nothing owed yet and the stream spoke just now"
    assert client.parser.last_event_id == "ep1-0"
    clock.now += HEARTBEAT_S
    fanout.sweep(clock.now)
    assert client.read()[2:] == [], "a heartbeat dispatches no event..."
    assert client.parser.last_event_id == "ep1-2", "...but moves the last event id on"


def test_a_reader_that_falls_behind_briefly_gets_every_tick(fanout, log, clock):
    client = Client(fanout)
    while client.stream.pending is None:  # the socket fills while the client reads nothing
        tick(log, 20, pad=10**12)
        fanout.sweep(clock.now)
    assert client.stream not in client.stream.group.in_step, "it drains on its own"
    assert not client.stream.paced, "one write half taken is not yet a slow reader"
    fanout.sweep(clock.now)
    assert client.stream.paced, "the rest still not taken at the next look: a paced reader"
    tick(log, 10)  # a little more, well under what a paced reader may be owed exactly
    caught = []
    for _ in range(50):
        caught = client.prices()
        fanout.sweep(clock.now)
        if caught and caught[-1] == log.head and client.stream.pending is None:
            break
    assert caught == list(range(1, log.head + 1)), "every tick, in order, once"
    clock.now += 5.0  # exact for as long as a paced reader must be to go free
    fanout.sweep(clock.now)
    assert client.stream in client.stream.group.in_step and not client.stream.paced


def test_a_reader_that_takes_all_it_is_given_is_not_paced_when_a_pass_owes_more_than_a_write(
    clock,
):
    log = EventLog(10_000)
    log.reset("ep1", 0, UNIVERSE, [quote(s, 0) for s in ("AAA", "BBB", "CCC")], rate=50.0)
    log.feed_up = True
    fanout = Fanout(log, max_streams=3, max_streams_per_client=2, heartbeat_s=HEARTBEAT_S,
                    retry_ms=2000, flush_ms=2, stall_s=STALL_S, catch_up_bytes=1 << 20,
                    clock=clock)
    client = Client(fanout)
    fanout.sweep(clock.now)
    client.read()
    buffer = client.server.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
    # Passes that owe ~130 KiB, four times what its socket takes at once, then calmer ones.
    for count in (700,) * 6 + (100,) * 4:
        tick(log, count, pad=10**12)
        fanout.sweep(clock.now)
        client.read()  # the reader takes all it was given before the next pass
        assert not client.stream.paced, "a reader that keeps up is not a slow one"
    assert client.server.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) > buffer, "widened"
    assert client.stream in client.stream.group.in_step, "one write a pass carries it again"
    assert not [e for e in client.read() if e.type == "snapshot"][1:], "never conflated"
    assert client.prices() == list(range(1, log.head + 1)), "every tick, in order, once"


def test_a_slow_reader_is_conflated_to_the_latest_state_and_told_so(fanout, log, clock):
    client = Client(fanout)
    for _ in range(60):  # the market runs far ahead of a reader that takes 4 KiB a pass
        tick(log, 40, pad=10**12)
        fanout.sweep(clock.now)
        client.read(4096)
    for _ in range(10):
        fanout.sweep(clock.now)
        client.read()
    events = [e for e in client.read() if e.type in ("price", "snapshot")]
    seqs = [int(e.id.rsplit("-", 1)[1]) for e in events]
    assert seqs == sorted(set(seqs)), "no event twice, none out of order"
    lagging = [e for e in events if e.type == "snapshot" and e.json()["reason"] == "lagging"]
    assert lagging, "the reader was told it did not get every tick"
    prices = [e for e in events if e.type == "price"]
    assert len(prices) + sum(s.json()["skipped"] for s in lagging) <= log.head
    state = {}
    for event in events:
        quotes = event.json()["quotes"] if event.type == "snapshot" else [event.json()]
        state.update({q["symbol"]: q["seq"] for q in quotes})
    latest = {q["symbol"]: q["seq"] for q in log.quote_list(None)}
    assert state == latest, "it ends on the latest state"


def test_a_reader_too_far_behind_gets_a_lagging_snapshot_that_counts_what_it_skipped(
    fanout, log, clock,
):
    client = Client(fanout)
    while client.stream.pending is None:
        tick(log, 50, pad=10**12)
        fanout.sweep(clock.now)
    sent_up_to = client.stream.cursor
    tick(log, 600, pad=10**12)  # ~150 KiB more, over the 64 KiB catch-up bound
    fanout.sweep(clock.now)
    for _ in range(3):  # the reader wakes up; the remainder drains, then the catch-up
        client.read()  # is too big: it gets the latest state instead
        fanout.sweep(clock.now)
    events = client.read()
    snapshot = json.loads([e for e in events if e.type == "snapshot"][-1].data)
    assert snapshot["reason"] == "lagging"
    assert snapshot["skipped"] == log.head - sent_up_to
    assert client.prices() == list(range(1, sent_up_to + 1)), "no tick twice, none out of order"


def test_a_reader_behind_is_not_sent_a_state_that_outweighs_what_it_missed(clock):
    market = [{"symbol": f"S{n}", "name": f"S{n} Inc", "sector": "Tech"} for n in range(600)]
    log = EventLog(10_000)
    log.reset("ep1", 0, market, [quote(c["symbol"], 0) for c in market], rate=50.0)
    log.feed_up = True
    fanout = Fanout(log, max_streams=3, max_streams_per_client=2, heartbeat_s=HEARTBEAT_S,
                    retry_ms=2000, flush_ms=2, stall_s=STALL_S, catch_up_bytes=64 * 1024,
                    clock=clock)
    client = Client(fanout)  # every symbol: its snapshot is some 130 KB
    client.read()
    while client.stream.pending is None:
        tick(log, 20, symbols=("S1", "S2"), pad=10**12)
        fanout.sweep(clock.now)
    fanout.sweep(clock.now)
    assert client.stream.paced
    tick(log, 200, symbols=("S1", "S2"), pad=10**12)  # ~45 KiB: over what a paced reader
    for _ in range(200):  # may be owed exactly, far under the state of 600 symbols
        client.read()
        fanout.sweep(clock.now)
        if client.prices()[-1:] == [log.head] and client.stream.pending is None:
            break
    assert [e.type for e in client.read()].count("snapshot") == 1, "only the first"
    assert client.prices() == list(range(1, log.head + 1)), "every tick, exactly"


def test_a_stream_with_a_rate_gets_no_symbol_twice_within_its_period_as_it_joins(
    fanout, log, clock,
):
    client = Client(fanout, key=frozenset({"AAA"}), rate=2.0)
    tick(log, 1, symbols=("AAA",))  # after its snapshot, before its first pass
    fanout.sweep(clock.now)
    assert client.prices() == [1], "caught up alone with the latest"
    tick(log, 1, symbols=("AAA",))
    clock.now += 0.1
    fanout.sweep(clock.now)
    assert client.prices() == [1], "the group's next price waits its period"
    clock.now += 0.4
    fanout.sweep(clock.now)
    assert client.prices() == [1, 2]


def test_a_reader_that_takes_nothing_is_dropped_after_stall_s(fanout, log, clock):
    client = Client(fanout)
    while client.stream.pending is None:
        tick(log, 50, pad=10**12)
        fanout.sweep(clock.now)
    clock.now += STALL_S - 1
    fanout.sweep(clock.now)
    assert not client.stream.ended
    clock.now += 1
    fanout.sweep(clock.now)
    assert client.stream.ended and not client.stream.clean
    client.body.join(timeout=5)
    assert client.body.dead and fanout.count == 0
    with pytest.raises(OSError):
        client.server.send(b"x")  # cut: gunicorn's closing write fails at once


def test_a_client_that_leaves_is_freed_at_once(fanout, log, clock):
    client = Client(fanout)
    assert fanout.count == 1
    client.close()
    client.body.join(timeout=5)
    assert client.body.dead and fanout.count == 0
    tick(log, 3)
    fanout.sweep(clock.now)  # nothing left to write to


def test_shutdown_ends_each_stream_cleanly_for_gunicorn_to_finish(fanout, log, clock):
    clients = [Client(fanout, client=f"10.0.0.{n}") for n in range(3)]
    tick(log, 5)
    fanout.sweep(clock.now)
    fanout.close_all()
    gevent.joinall([client.body for client in clients], timeout=5)
    assert fanout.count == 0
    for client in clients:
        assert client.body.successful(), "the body returns normally"
        assert client.stream.clean
        # The socket is whole and blocking again: gunicorn writes the response's end.
        assert client.server.gettimeout() is None
        assert client.prices() == [1, 2, 3, 4, 5]
        client.server.sendall(b"end")
        client.peer.setblocking(True)
        assert client.peer.recv(16) == b"end"


def test_a_stream_opened_while_the_worker_stops_is_ended_at_once(fanout):
    fanout.close_all()
    client = Client(fanout)
    client.body.join(timeout=5)
    assert client.stream.ended and fanout.count == 0


def test_limits_per_worker_and_per_client_and_places_given_back(fanout):
    a, b = Client(fanout, client="1.1.1.1"), Client(fanout, client="1.1.1.1")
    with pytest.raises(Refused, match="client address"):
        fanout.check("1.1.1.1")
    c = Client(fanout, client="2.2.2.2")
    with pytest.raises(Refused, match="server holds"):
        fanout.open(socketpair()[0], "3.3.3.3", None)
    a.close()
    a.body.join(timeout=5)
    fanout.check("1.1.1.1")
    assert fanout.count == 2
    for client in (b, c):
        client.close()
        client.body.join(timeout=5)
    assert fanout.count == 0


def test_a_stream_whose_feed_started_over_gets_a_restart_snapshot(fanout, log, clock):
    client = Client(fanout)
    tick(log, 3)
    fanout.sweep(clock.now)
    log.reset("ep2", 0, UNIVERSE, [quote(s, 0) for s in ("AAA", "BBB", "CCC")])
    fanout.sweep(clock.now)
    snapshots = [e for e in client.read() if e.type == "snapshot"]
    assert [json.loads(s.data)["reason"] for s in snapshots] == ["new", "restart"]
    assert snapshots[-1].id == "ep2-0"
