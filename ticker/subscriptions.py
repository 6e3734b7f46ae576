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

``Quiet`` orders streams by their last write, so the ones owed a heartbeat are found at
its front without looking at the others.

Pure: no I/O, no clock of its own, no gevent.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Iterable, Iterator

__all__ = ["Group", "Quiet", "Subscriptions"]

Key = frozenset[str] | None  # a subscription: its symbols, or None for every symbol


class Group:
    """The streams of one subscription, and the frames after ``cursor`` they are owed."""

    __slots__ = ("key", "cursor", "generation", "frames", "in_step", "size", "served")

    def __init__(self, key: Key, cursor: int, generation: int) -> None:
        self.key = key
        self.cursor = cursor  # in-step streams have every frame up to here
        self.generation = generation
        self.frames: list[bytes] = []  # owed after cursor, in seq order
        self.in_step: dict[Hashable, None] = {}  # streams that take the shared write
        self.size = 0  # streams of this subscription, in step or not
        self.served = -1  # the pass that last served it

    def take(self, head: int) -> bytes:
        """The frames owed, joined; the group is then at ``head``."""
        body = b"".join(self.frames)
        self.frames.clear()
        self.cursor = head
        return body

    def reset(self, head: int, generation: int) -> None:
        """Nothing owed: the group starts again at ``head`` (its streams catch up alone)."""
        self.frames.clear()
        self.cursor, self.generation = head, generation

    def settle(self, head: int) -> None:
        """With nothing owed, its streams have every frame of theirs up to ``head``."""
        if not self.frames:
            self.cursor = head


class Subscriptions:
    """Every group, the index from symbol to groups, and the queue of dirty groups."""

    def __init__(self) -> None:
        self.groups: dict[Key, Group] = {}
        self._by_symbol: dict[str, list[Group]] = {}
        self._every: Group | None = None
        self._dirty: OrderedDict[Group, None] = OrderedDict()
        self._next: OrderedDict[Group, None] = OrderedDict()
        self._pass = 0

    def join(self, key: Key, head: int, generation: int) -> Group:
        """The group for ``key``, made (at ``head``) if it is new; one more stream in it."""
        group = self.groups.get(key)
        if group is None:
            group = self.groups[key] = Group(key, head, generation)
            if key is None:
                self._every = group
            else:
                for symbol in key:
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
        if group.key is None:
            self._every = None
            return
        for symbol in group.key:
            wanting = self._by_symbol[symbol]
            wanting.remove(group)
            if not wanting:
                del self._by_symbol[symbol]

    def add(self, entries: Iterable[tuple[int, str, bytes]]) -> None:
        """New ticks ``(seq, symbol, frame)``, in order: each goes to the groups that want it."""
        by_symbol, every = self._by_symbol, self._every
        for _, symbol, frame in entries:
            for group in by_symbol.get(symbol, ()):
                group.frames.append(frame)
                self._mark(group)
            if every is not None:
                every.frames.append(frame)
                self._mark(every)

    def _mark(self, group: Group) -> None:
        if group.served == self._pass:
            self._next[group] = None
        else:
            self._dirty[group] = None

    def reset(self, head: int, generation: int) -> None:
        """The feed started over, or the sweeper lost track: nothing is owed by any group."""
        for group in self.groups.values():
            group.reset(head, generation)
        self._dirty.clear()
        self._next.clear()

    def begin_pass(self) -> None:
        """Groups that got more after being served in the last pass are due in this one."""
        self._pass += 1
        for group in self._next:
            self._dirty[group] = None
        self._next.clear()

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
    """Streams in the order of their last write, oldest first."""

    def __init__(self) -> None:
        self._order: OrderedDict[Hashable, float] = OrderedDict()

    def touch(self, stream: Hashable, now: float) -> None:
        self._order[stream] = now
        self._order.move_to_end(stream)

    def forget(self, stream: Hashable) -> None:
        self._order.pop(stream, None)

    def due(self, before: float) -> list[Hashable]:
        """The streams last written at or before ``before``."""
        found = []
        for stream, written in self._order.items():
            if written > before:
                break
            found.append(stream)
        return found

    def next_due(self, every: float) -> float | None:
        """When the quietest stream will be owed a heartbeat, if there is a stream."""
        for written in self._order.values():
            return written + every
        return None
