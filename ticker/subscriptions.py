"""Who wants what, indexed so that a sweep's work follows the ticks, not the streams.

Strategy: streams with the same subscription (the same set of symbols, or every symbol)
form one ``Group``. Each group keeps the frames its subscribers are owed, appended as
ticks arrive, found through an index from symbol to groups: a tick costs one append per
group that wants it, and nothing for the others. A group with frames waiting is *dirty*;
the sweeper takes dirty groups in the order they became so, and writes each stream in
step the group's frames from the stream's mark to the end as they are when the sweeper
reaches that stream: the streams that follow the same frames share one joined body, and a
tick that arrives while the sweeper is half way through a group of thousands goes to the
rest of them in the same pass. A group is served at most once a pass
(``Subscriptions.begin_pass``): one that has more by the time it was served (or whose
first streams were written before a tick came) waits for the next pass, so every stream
gets at most one write a pass, and what it gets is what arrived up to the moment the
sweeper reached it.

A subscription may also ask for at most ``rate`` updates a second per symbol: its group
keeps only the latest frame of each symbol and lets one out per symbol per period, the
latest at the moment it goes, so a price that changed is never held back longer than a
period. Held frames wait on a timer (``Subscriptions.begin_pass(now)`` wakes them).

``Quiet`` orders streams by the second of their last write, so the ones owed a heartbeat
are found at its front without looking at the others.

Pure: no I/O, no clock of its own, no gevent.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable, Hashable, Iterable, Iterator

__all__ = ["Group", "Quiet", "Subscriptions"]

Symbols = frozenset[str] | None  # a subscription's symbols, or None for every symbol
Key = tuple[Symbols, float | None]  # ...and its rate: updates a second per symbol, or every tick


class Group:
    """The streams of one subscription, and the frames some of them are still owed.

    The group's frames form a short log of its own: ``frames[i]`` is frame number
    ``base + i``. Each stream in step holds a *mark*, the number of the
    first frame it has not been sent, so streams reached at different moments of a pass
    may hold different marks: the sweeper writes each the frames from its mark to the
    end as they are when it gets there. Frames every stream has are trimmed.
    """

    __slots__ = ("key", "symbols", "period", "generation", "frames", "base", "held",
                 "sent_at", "sent_all_at", "in_step", "size", "served", "wake_at")

    def __init__(self, key: Key, generation: int) -> None:
        self.key = key
        self.symbols, rate = key
        self.period = 1.0 / rate if rate else 0.0  # 0: every tick
        self.generation = generation
        self.frames: list[bytes] = []  # frame number base + i, in seq order
        self.base = 0
        # rate: the latest frame of each symbol (its seq), and the seq of the first frame
        # of that symbol held since the last one went out
        self.held: dict[str, tuple[int, bytes, int]] = {}
        self.sent_at: dict[str, float] = {}  # rate: when each symbol last went out
        self.sent_all_at = -math.inf  # rate: ...or every symbol, when none since
        self.in_step: dict[Hashable, int] = {}  # streams that take the shared frames: marks
        self.size = 0  # streams of this subscription, in step or not
        self.served = -1  # the pass that last served it
        self.wake_at = math.inf  # rate: when a timer will wake it

    @property
    def end(self) -> int:
        """The number of the next frame: a stream marked here has every one."""
        return self.base + len(self.frames)

    def position(self, mark: int, head: int, seq_of: Callable[[bytes], int]) -> int:
        """The seq up to which a stream marked at ``mark`` has every frame of its own,
        where a resume would start. ``head``: the last tick the groups were given;
        ``seq_of``: a frame's seq (read from the frame, rarely: the frames owed are
        kept as bytes alone, since a seq beside each would cost every tick an append)."""
        if mark < self.end:
            return seq_of(self.frames[mark - self.base]) - 1
        if self.held:
            # Up to just before the first frame held and not yet let out (a rate
            # group's streams have the latest of every symbol up to there).
            return min(first for _, _, first in self.held.values()) - 1
        return head

    def trim(self, mark: int) -> None:
        """Every stream in step is marked at ``mark`` or later: forget the frames before."""
        if mark >= self.end:
            self.frames.clear()
            self.base = mark
        elif mark > self.base:
            del self.frames[:mark - self.base]
            self.base = mark

    def release(self, now: float) -> None:
        """Rate groups: the held frames that may go now join the frames, in seq order;
        the rest wait their period."""
        ready = sorted(
            (seq, symbol, frame) for symbol, (seq, frame, _) in self.held.items()
            if self.due_at(symbol) <= now
        )
        for _, symbol, frame in ready:
            del self.held[symbol]
            self.sent_at[symbol] = now
            self.frames.append(frame)

    def due_at(self, symbol: str) -> float:
        """When the next frame of ``symbol`` may go (rate groups)."""
        return self.sent_at.get(symbol, self.sent_all_at) + self.period

    def next_at(self) -> float | None:
        """When the first held frame may go (rate groups)."""
        if not self.held:
            return None
        return min(self.due_at(s) for s in self.held)

    def sent_all(self, now: float) -> None:
        """Every symbol's latest went out ``now`` (a stream of its own caught up): the next
        of each waits a period (rate groups)."""
        self.sent_at.clear()
        self.sent_all_at = now

    def reset(self, generation: int) -> None:
        """Nothing owed: the group starts again (its streams catch up alone)."""
        self.trim(self.end)
        self.held.clear()
        self.generation = generation


class _Index:
    """Groups by the symbols they want: a tick finds its groups without looking at others."""

    __slots__ = ("by_symbol", "every")

    def __init__(self) -> None:
        self.by_symbol: dict[str, list[Group]] = {}
        self.every: list[Group] = []  # the groups of every symbol

    def __bool__(self) -> bool:
        return bool(self.by_symbol or self.every)

    def put(self, group: Group) -> None:
        if group.symbols is None:
            self.every.append(group)
            return
        for symbol in group.symbols:
            self.by_symbol.setdefault(symbol, []).append(group)

    def drop(self, group: Group) -> None:
        if group.symbols is None:
            self.every.remove(group)
            return
        for symbol in group.symbols:
            wanting = self.by_symbol[symbol]
            wanting.remove(group)
            if not wanting:
                del self.by_symbol[symbol]


class Subscriptions:
    """Every group, the index from symbol to groups, and the queue of dirty groups."""

    def __init__(self) -> None:
        self.groups: dict[Key, Group] = {}
        # Apart, so that a tick's way to the groups of every tick asks nothing of each.
        self._every_tick = _Index()
        self._rated = _Index()
        # Plain dicts, in the order groups became dirty; taken whole, a batch at a time
        # (taking a dict's first key one by one is quadratic, and an ordered dict's
        # popitem costs more than the whole batch's swap).
        self._dirty: dict[Group, None] = {}
        self._next: dict[Group, None] = {}
        self._timers: list[tuple[float, int, Group]] = []  # rate groups holding frames
        self._order = itertools.count()
        self._pass = 0

    def join(self, key: Key, generation: int) -> Group:
        """The group for ``key``, made if it is new; one more stream in it."""
        group = self.groups.get(key)
        if group is None:
            group = self.groups[key] = Group(key, generation)
            (self._rated if group.period else self._every_tick).put(group)
        group.size += 1
        return group

    def leave(self, group: Group) -> None:
        """One stream fewer; a group with none left is forgotten."""
        group.size -= 1
        if group.size:
            return
        del self.groups[group.key]
        self._dirty.pop(group, None)
        self._next.pop(group, None)
        (self._rated if group.period else self._every_tick).drop(group)

    def add(self, entries: Iterable[tuple[int, str, bytes]], now: float = 0.0) -> None:
        """New ticks ``(seq, symbol, frame)``, in order: each goes to the groups that want
        it (at ``now``, for the groups with a rate)."""
        by_symbol, every, mark = self._every_tick.by_symbol, self._every_tick.every, self._mark
        rated = self._rated
        for seq, symbol, frame in entries:
            for groups in (by_symbol.get(symbol, ()), every):
                for group in groups:
                    frames = group.frames
                    if not frames:
                        mark(group)  # queued with its first frame
                    frames.append(frame)
            if rated:
                for groups in (rated.by_symbol.get(symbol, ()), rated.every):
                    for group in groups:
                        self._hold(group, seq, symbol, frame, now)

    def _hold(self, group: Group, seq: int, symbol: str, frame: bytes, now: float) -> None:
        """A rate group keeps the latest frame of each symbol, due once its period is up."""
        held = group.held.get(symbol)
        group.held[symbol] = (seq, frame, seq if held is None else held[2])
        due = group.due_at(symbol)
        if due <= now:
            self._mark(group)
        else:
            self._wake_at(group, due)

    def _wake_at(self, group: Group, when: float) -> None:
        if when < group.wake_at:
            group.wake_at = when
            heapq.heappush(self._timers, (when, next(self._order), group))

    def after_release(self, group: Group) -> None:
        """A rate group that still holds frames is woken when the first may go."""
        when = group.next_at()
        if when is not None:
            self._wake_at(group, when)

    def again(self, group: Group) -> None:
        """A group just served still owes its first streams what came while the others
        were written: it is due in the next pass."""
        self._mark(group)

    def _mark(self, group: Group) -> None:
        if group.served == self._pass:
            self._next[group] = None
        else:
            self._dirty[group] = None

    def reset(self, generation: int) -> None:
        """The feed started over, or the sweeper lost track: nothing is owed by any group."""
        for group in self.groups.values():
            group.reset(generation)
            group.wake_at = math.inf
        self._dirty.clear()
        self._next.clear()
        self._timers.clear()

    def begin_pass(self, now: float = 0.0) -> None:
        """Groups that got more after being served in the last pass are due in this one,
        and so are the rate groups whose held frames may go by ``now``."""
        self._pass += 1
        for group in self._next:
            self._dirty[group] = None
        self._next.clear()
        timers = self._timers
        while timers and timers[0][0] <= now:
            when, _, group = heapq.heappop(timers)
            if when == group.wake_at:
                group.wake_at = math.inf
            if group.size and group.held:
                self._dirty[group] = None

    def next_timer(self) -> float | None:
        """When the first held frame of any rate group may go."""
        return self._timers[0][0] if self._timers else None

    def due(self) -> Iterator[Group]:
        """The dirty groups of this pass, in the order they became so, each marked served.

        Groups that become dirty while this runs are yielded too, in turn, unless they were
        served already in this pass: what came after a group was served is queued for
        the next pass (``_mark``), so a group served after it was queued again here has
        had it.
        """
        while self._dirty:
            batch, self._dirty = self._dirty, {}
            for group in batch:
                if group.served == self._pass or not group.size:
                    continue  # served since it was queued, or forgotten (``leave``)
                group.served = self._pass
                yield group

    @property
    def pending(self) -> bool:
        """Whether any group has frames waiting."""
        return bool(self._dirty or self._next)


class Quiet:
    """Streams by the second of their last write, oldest first.

    A write costs a comparison: a stream moves only with its first write in a new
    second, not with each of the dozens a busy stream takes. The price is that the
    streams are known to a second: ``due`` may name a stream up to a second early, never
    late, so a heartbeat comes after at least ``every - 1`` seconds of silence and never
    after more than ``every``.
    """

    def __init__(self) -> None:
        self._seconds: dict[int, dict[Hashable, None]] = {}  # in order: time only grows
        self._second: dict[Hashable, int] = {}  # each stream's second

    def touch(self, stream: Hashable, now: float) -> None:
        second = int(now)
        old = self._second.get(stream)
        if old == second:
            return
        if old is not None:
            self._leave(stream, old)
        self._second[stream] = second
        self._seconds.setdefault(second, {})[stream] = None

    def forget(self, stream: Hashable) -> None:
        second = self._second.pop(stream, None)
        if second is not None:
            self._leave(stream, second)

    def _leave(self, stream: Hashable, second: int) -> None:
        streams = self._seconds[second]
        del streams[stream]
        if not streams:
            del self._seconds[second]

    def due(self, before: float) -> list[Hashable]:
        """The streams last written in a second that began at or before ``before``."""
        found: list[Hashable] = []
        for second, streams in self._seconds.items():
            if second > before:
                break
            found.extend(streams)
        return found

    def next_due(self, every: float) -> float | None:
        """When the quietest streams will be owed a heartbeat, if there is a stream."""
        for second in self._seconds:
            return second + every
        return None
