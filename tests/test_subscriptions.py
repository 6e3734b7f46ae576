"""Subscription indexing and the sweep's choice of groups and streams, pure."""

from __future__ import annotations

import pytest

from ticker.subscriptions import Quiet, Subscriptions


def entries(*symbols: str, start: int = 1) -> list[tuple[int, str, bytes]]:
    return [(start + n, s, f"{s}{start + n};".encode()) for n, s in enumerate(symbols)]


def body(group, start: int, end: int) -> tuple[bytes, int]:
    """Frames ``start`` to ``end`` of a group, joined (as the sweeper writes them)."""
    return b"".join(group.frames[start - group.base:end - group.base]), end - start


def seq_of(frame: bytes) -> int:
    return int(frame[1:-1])  # b"A12;": seq 12


def serve(subs: Subscriptions) -> list:
    """The groups due, each served as the sweeper does: every frame goes."""
    served = []
    for group in subs.due():
        served.append(group.key)
        group.trim(group.end)
    return served


def due(subs: Subscriptions) -> list:
    return [group.key for group in subs.due()]


@pytest.mark.parametrize(
    ("keys", "ticks", "dirty"),
    [
        ([frozenset({"A"}), frozenset({"B"})], ["A"], [frozenset({"A"})]),
        ([frozenset({"A", "B"}), frozenset({"B"})], ["B", "A"],
         [frozenset({"A", "B"}), frozenset({"B"})]),
        ([frozenset({"A"}), None], ["C"], [None]),
        ([frozenset({"A"}), frozenset({"B"})], ["C", "D"], []),
        ([frozenset({"B"}), frozenset({"A"})], ["A", "B", "A"],
         [frozenset({"A"}), frozenset({"B"})]),
    ],
    ids=["one-of-two", "shared-symbol", "every-symbol", "nobody-wants-it", "order-of-first-tick"],
)
def test_a_tick_dirties_exactly_the_groups_that_want_it(keys, ticks, dirty):
    subs = Subscriptions()
    for symbols in keys:
        subs.join((symbols, None), 1)
    subs.add(entries(*ticks))
    subs.begin_pass()
    assert due(subs) == [(symbols, None) for symbols in dirty]


def release(group, now: float) -> tuple[bytes, int]:
    """What a rate group lets out at ``now`` (as the sweeper serves it)."""
    start = group.end
    group.release(now)
    let_out = body(group, start, group.end)
    group.trim(group.end)
    return let_out


def test_a_group_keeps_its_frames_in_seq_order_and_each_body_from_a_mark():
    subs = Subscriptions()
    group = subs.join((frozenset({"A", "C"}), None), 1)
    subs.add(entries("A", "B", "C", "A"))
    assert (group.base, group.end) == (0, 3)
    assert body(group, 0, 3) == (b"A1;C3;A4;", 3)
    assert body(group, 1, 3) == (b"C3;A4;", 2), "a stream reached after C3 came"
    group.trim(1)
    assert (group.frames, group.base) == ([b"C3;", b"A4;"], 1)
    assert body(group, 2, 3) == (b"A4;", 1)
    group.trim(3)
    assert (group.frames, group.base, group.end) == ([], 3, 3)


@pytest.mark.parametrize(
    ("mark", "head", "position"),
    [(0, 9, 0), (1, 9, 2), (2, 9, 3), (3, 9, 9), (3, 4, 4)],
    ids=["before-A1", "before-C3", "before-A4", "at-the-end", "at-the-end-sooner"],
)
def test_a_marks_position_is_just_before_its_next_frame_or_the_head(mark, head, position):
    subs = Subscriptions()
    group = subs.join((frozenset({"A", "C"}), None), 1)
    subs.add(entries("A", "B", "C", "A"))
    assert group.position(mark, head, seq_of) == position


def test_a_group_is_served_once_a_pass_and_what_came_after_waits_for_the_next():
    subs = Subscriptions()
    a = subs.join((frozenset({"A"}), None), 1)
    subs.join((frozenset({"B"}), None), 1)
    subs.add(entries("A"))
    subs.begin_pass()
    served = []
    for group in subs.due():  # as the sweeper serves them
        low = group.end
        served.append((group.symbols, low))
        if group is a:  # while the sweeper writes, ticks arrive for A (served) and B (not yet)
            subs.add(entries("A", "B", start=2))
        group.trim(low)
        if group.frames:
            subs.again(group)
    assert served == [(frozenset({"A"}), 1), (frozenset({"B"}), 1)], \
        "B is reached in this pass, with the tick that came while A was served"
    assert subs.pending
    subs.begin_pass()
    assert serve(subs) == [(frozenset({"A"}), None)]
    subs.add(entries("A", start=4))
    subs.add(entries("A", start=5))
    subs.begin_pass()
    assert serve(subs) == [(frozenset({"A"}), None)], "queued once, however many frames"
    assert not subs.pending


@pytest.mark.parametrize("rate", [None, 1.0], ids=["every-tick", "rate"])
@pytest.mark.parametrize(
    ("during", "this_pass", "next_pass"),
    [
        ("B", ["A", "B"], []),  # B had the tick when it was served: nothing waits
        ("A", ["A", "B"], ["A"]),  # A was served before it: the next pass
        ("leave B", ["A"], []),  # its last stream left: B is not served at all
    ],
    ids=["queued-group-gets-more", "served-group-gets-more", "queued-group-forgotten"],
)
def test_what_happens_while_a_pass_serves_a_group_decides_what_is_served_when(
        during, this_pass, next_pass, rate):
    subs = Subscriptions()
    a = subs.join((frozenset({"A"}), rate), 1)
    b = subs.join((frozenset({"B"}), rate), 1)
    subs.add(entries("A", "B"), now=0.0)
    subs.begin_pass(0.0)
    served = []
    for group in subs.due():  # as the sweeper serves them
        if group.period:
            group.release(0.0)
            subs.after_release(group)
        low = group.end
        served.append(sorted(group.symbols)[0])
        if group is a:  # while A is written
            if during == "leave B":
                subs.leave(b)
            else:
                subs.add(entries(during, start=3), now=0.0)
        group.trim(low)
        if group.frames:
            subs.again(group)
    assert served == this_pass
    subs.begin_pass(5.0)  # a rate group's period is over too
    assert [sorted(key[0])[0] for key in serve(subs)] == next_pass
    assert not subs.pending


@pytest.mark.parametrize("streams", [1, 3])
def test_a_group_lives_while_it_has_streams_and_its_index_goes_with_it(streams):
    subs = Subscriptions()
    key = (frozenset({"A", "B"}), None)
    groups = [subs.join(key, 1) for _ in range(streams)]
    assert all(g is groups[0] for g in groups) and groups[0].size == streams
    subs.add(entries("A"))
    for group in groups:
        subs.leave(group)
    assert subs.groups == {} and not subs.pending
    subs.add(entries("A", "B", start=2))  # no one left to want them
    subs.begin_pass()
    assert due(subs) == []


def test_reset_drops_what_every_group_owed():
    subs = Subscriptions()
    group = subs.join((None, None), 1)
    subs.add(entries("A", "B"))
    subs.reset(2)
    assert (group.frames, group.base, group.generation) == ([], 2, 2)
    assert group.position(group.end, 10, seq_of) == 10 and not subs.pending
    subs.add(entries("C", start=11))
    subs.begin_pass()
    assert due(subs) == [(None, None)], "queued again with its next frame"


def test_a_rate_group_lets_the_latest_of_each_symbol_out_once_a_period():
    subs = Subscriptions()
    group = subs.join((None, 2.0), 1)  # two updates a second per symbol
    subs.add(entries("A", "B", "A"), now=10.0)
    subs.begin_pass(10.0)
    assert due(subs) == [(None, 2.0)]
    assert release(group, 10.0) == (b"B2;A3;", 2), "the latest of each, in seq order"
    subs.add(entries("A", "A", "B", start=4), now=10.1)  # within the period: held
    subs.begin_pass(10.1)
    assert due(subs) == [] and group.position(group.end, 6, seq_of) == 3
    subs.begin_pass(10.49)
    assert due(subs) == []
    subs.begin_pass(10.5)  # one period after A and B went out
    assert due(subs) == [(None, 2.0)]
    assert release(group, 10.5) == (b"A5;B6;", 2)
    assert group.position(group.end, 6, seq_of) == 6 and not group.held


def test_a_held_frame_is_never_held_longer_than_a_period():
    subs = Subscriptions()
    group = subs.join((frozenset({"A", "B"}), 1.0), 1)
    subs.add(entries("A"), now=0.0)
    subs.begin_pass(0.0)
    list(subs.due())
    release(group, 0.0)  # A out at 0.0
    subs.add(entries("B", start=2), now=0.2)  # B has never gone out: due at once
    subs.add(entries("A", start=3), now=0.3)  # A waits until 1.0
    subs.begin_pass(0.3)
    assert due(subs) == [(frozenset({"A", "B"}), 1.0)]
    assert release(group, 0.3) == (b"B2;", 1)
    assert group.position(group.end, 3, seq_of) == 2, "a resume from here replays the held A"
    subs.after_release(group)
    assert subs.next_timer() == 1.0


@pytest.mark.parametrize(
    ("writes", "before", "expected"),
    [
        ([("s1", 1.0), ("s2", 2.0), ("s3", 3.0)], 2.0, ["s1", "s2"]),
        ([("s1", 1.0), ("s2", 2.0), ("s1", 5.0)], 3.0, ["s2"]),
        ([("s1", 4.0)], 3.0, []),
    ],
    ids=["oldest-first", "a-write-moves-it-back", "none-due"],
)
def test_quiet_finds_the_streams_owed_a_heartbeat_at_its_front(writes, before, expected):
    quiet = Quiet()
    for stream, when in writes:
        quiet.touch(stream, when)
    assert quiet.due(before) == expected


def test_quiet_knows_a_write_to_the_second_early_never_late():
    quiet = Quiet()
    quiet.touch("s1", 1.2)
    quiet.touch("s2", 1.9)
    quiet.touch("s1", 1.95)  # the same second: it stays where it was
    assert quiet.due(0.99) == []
    assert quiet.due(1.0) == ["s1", "s2"], "a second early at most"
    quiet.touch("s1", 2.0)
    assert quiet.due(1.5) == ["s2"] and quiet.due(2.0) == ["s2", "s1"]
    assert quiet.next_due(10) == 11.0


def test_quiet_forgets_and_says_when_the_next_heartbeat_is_due():
    quiet = Quiet()
    assert quiet.next_due(10) is None
    quiet.touch("s1", 1.0)
    quiet.touch("s2", 2.0)
    assert quiet.next_due(10) == 11.0
    quiet.forget("s1")
    assert quiet.next_due(10) == 12.0 and quiet.due(100) == ["s2"]


def test_a_rate_group_that_sent_all_holds_every_symbol_a_period():
    subs = Subscriptions()
    group = subs.join((frozenset({"A", "B"}), 2.0), 0)
    group.sent_all(10.0)
    subs.add(entries("A", "B"), now=10.2)
    subs.begin_pass(10.2)
    assert due(subs) == [], "nothing goes within the period of the catch-up"
    assert subs.next_timer() == 10.5
    subs.begin_pass(10.5)
    assert [release(g, 10.5) for g in subs.due()] == [(b"A1;B2;", 2)]
