"""Who wants what, indexed so that a sweep's work follows the ticks, not the streams.

Strategy: streams with the same subscription (the same set of symbols, or every symbol)
form one ``Group``. Each group keeps the frames its subscribers are owed, appended as
ticks arrive, found through an index from symbol to groups: a tick costs one append per
group that wants it, and nothing for the others. A group with frames waiting is *dirty*;
the sweeper takes dirty groups in the order they became so, joins a group's frames once
and writes them to every stream in step with it. A group is served at most once a pass
(``Subscriptions.begin_pass``): one that has more by the time it was served waits for the
next pass, so every stream gets at most one write a pass, while the frames it gets are
those that arrived up to the moment the sweeper reached it.

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
from collections import OrderedDict
from collections.abc import Hashable, Iterable, Iterator

__all__ = ["Group", "Quiet", "Subscriptions"]

Symbols = frozenset[str] | None  # a subscription's symbols, or None for every symbol
Key = tuple[Symbols, float | None]  # ...and its rate: updates a second per symbol, or every tick


class Group:
    """The streams of one subscription, and the frames after ``cursor`` they are owed."""

    __slots__ = ("key", "symbols", "period", "cursor", "generation", "frames", "held",
                 "sent_at", "sent_all_at", "in_step", "size", "served", "wake_at")

    def __init__(self, key: Key, cursor: int, generation: int) -> None:
        self.key = key
        self.symbols, rate = key
        self.period = 1.0 / rate if rate else 0.0  # 0: every tick
        self.cursor = cursor  # in-step streams have every frame up to here
        self.generation = generation
        self.frames: list[bytes] = []  # owed after cursor, in seq order (every tick)
        self.held: dict[str, tuple[int, bytes]] = {}  # rate: the latest of each symbol
        self.sent_at: dict[str, float] = {}  # rate: when each symbol last went out
        self.sent_all_at = -math.inf  # rate: ...or every symbol, when none since
        self.in_step: dict[Hashable, None] = {}  # streams that take the shared write
        self.size = 0  # streams of this subscription, in step or not
        self.served = -1  # the pass that last served it
        self.wake_at = math.inf  # rate: when a timer will wake it

    @property
    def owes(self) -> bool:
        return bool(self.frames or self.held)

    def take(self, head: int, now: float) -> tuple[bytes, int]:
        """The frames that may go now, joined, and how many; the rest wait their period."""
        if not self.period:
            body, count = b"".join(self.frames), len(self.frames)
            self.frames.clear()
            self.cursor = head
            return body, count
        ready = sorted(
            (seq, symbol, frame) for symbol, (seq, frame) in self.held.items()
            if self.due_at(symbol) <= now
        )
        for _, symbol, _ in ready:
            del self.held[symbol]
            self.sent_at[symbol] = now
        # Streams in step have the latest of every symbol up to just before the oldest
        # frame still held, so that is where a resume must start.
        self.cursor = min(seq for seq, _ in self.held.values()) - 1 if self.held else head
        return b"".join(frame for _, _, frame in ready), len(ready)

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

    def reset(self, head: int, generation: int) -> None:
        """Nothing owed: the group starts again at ``head`` (its streams catch up alone)."""
        self.frames.clear()
        self.held.clear()
        self.cursor, self.generation = head, generation

    def settle(self, head: int) -> None:
        """With nothing owed, its streams have every frame of theirs up to ``head``."""
        if not self.owes:
            self.cursor = head


class Subscriptions:
    """Every group, the index from symbol to groups, and the queue of dirty groups."""

    def __init__(self) -> None:
        self.groups: dict[Key, Group] = {}
        self._by_symbol: dict[str, list[Group]] = {}
        self._every: list[Group] = []  # the groups of every symbol (one per rate)
        self._dirty: OrderedDict[Group, None] = OrderedDict()
        self._next: OrderedDict[Group, None] = OrderedDict()
        self._timers: list[tuple[float, int, Group]] = []  # rate groups holding frames
        self._order = itertools.count()
        self._pass = 0

    def join(self, key: Key, head: int, generation: int) -> Group:
        """The group for ``key``, made (at ``head``) if it is new; one more stream in it."""
        group = self.groups.get(key)
        if group is None:
            group = self.groups[key] = Group(key, head, generation)
            if group.symbols is None:
                self._every.append(group)
            else:
                for symbol in group.symbols:
                    self._by_symbol.setdefault(symbol, []).append(group)
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
        if group.symbols is None:
            self._every.remove(group)
            return
        for symbol in group.symbols:
            wanting = self._by_symbol[symbol]
            wanting.remove(group)
            if not wanting:
                del self._by_symbol[symbol]

    def add(self, entries: Iterable[tuple[int, str, bytes]], now: float = 0.0) -> None:
        """New ticks ``(seq, symbol, frame)``, in order: each goes to the groups that want
        it (at ``now``, for the groups with a rate)."""
        by_symbol, every, mark = self._by_symbol, self._every, self._mark
        for seq, symbol, frame in entries:
            for groups in (by_symbol.get(symbol, ()), every):
                for group in groups:
                    if group.period:
                        self._hold(group, seq, symbol, frame, now)
                    elif group.frames:
                        group.frames.append(frame)  # marked with its first frame
                    else:
                        group.frames.append(frame)
                        mark(group)

    def _hold(self, group: Group, seq: int, symbol: str, frame: bytes, now: float) -> None:
        """A rate group keeps the latest frame of each symbol, due once its period is up."""
        group.held[symbol] = (seq, frame)
        due = group.due_at(symbol)
        if due <= now:
            self._mark(group)
        else:
            self._wake_at(group, due)

    def _wake_at(self, group: Group, when: float) -> None:
        if when < group.wake_at:
            group.wake_at = when
            heapq.heappush(self._timers, (when, next(self._order), group))

    def after_take(self, group: Group) -> None:
        """A rate group that still holds frames is woken when the first may go."""
        when = group.next_at()
        if when is not None:
            self._wake_at(group, when)

    def _mark(self, group: Group) -> None:
        if group.served == self._pass:
            self._next[group] = None
        else:
            self._dirty[group] = None

    def reset(self, head: int, generation: int) -> None:
        """The feed started over, or the sweeper lost track: nothing is owed by any group."""
        for group in self.groups.values():
            group.reset(head, generation)
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
        served already in this pass.
        """
        while self._dirty:
            group, _ = self._dirty.popitem(last=False)
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
