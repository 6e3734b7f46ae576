"""What a client should have seen, against what it saw: the checks behind "nothing lost".

The market's own record (every tick, in seq order, as read straight from its socket) is
the truth. A client is a list of connections, each the events one response carried. It
passes when its first connection opened with a snapshot and no later one did (a resume
is a replay, never a fresh start), and its ``price`` events, across every connection,
are exactly the market's ticks for its symbols after that snapshot: none missing, none
twice, ids ``EPOCH-SEQ`` strictly increasing, each carrying the market's own quote.

Pure: events and ticks in, a list of problems out (empty when all is well).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence

from tests.sse_client import Event

__all__ = ["problems", "seq_of", "statuses"]

_COMPARED = ("symbol", "price", "ts", "seq")  # fields of a quote that must match the market's
_SHOWN = 8  # seqs named in one problem, at most


def seq_of(event_id: str) -> int | None:
    """The seq in an ``EPOCH-SEQ`` id, or None if the id has another shape."""
    _, dash, seq = event_id.rpartition("-")
    return int(seq) if dash and seq.isascii() and seq.isdigit() else None


def statuses(connections: Sequence[Sequence[Event]]) -> list[str]:
    """The ``feed`` value of every ``status`` event, in the order they came."""
    return [json.loads(e.data)["feed"] for events in connections for e in events
            if e.type == "status"]


def _seqs(seqs: Iterable[int]) -> str:
    listed = sorted(seqs)
    more = f" and {len(listed) - _SHOWN} more" if len(listed) > _SHOWN else ""
    return ", ".join(map(str, listed[:_SHOWN])) + more


def problems(
    ticks: dict[int, dict], epoch: str, symbols: frozenset[str] | None,
    connections: Sequence[Sequence[Event]], upto: int,
) -> list[str]:
    """Everything wrong with one client's events, judged against the market up to ``upto``.

    Args:
        ticks: seq to quote, every tick the market produced from before the client's
            first snapshot on (the reference); a hole in it raises ``ValueError``.
        epoch: the market's epoch, the first half of every id.
        symbols: the client's subscription; None for every symbol.
        connections: the events of each connection the client made, in order.
        upto: the last seq judged; events after it may or may not have arrived yet.
    """
    found: list[str] = []
    if not connections or not connections[0]:
        return ["it never received anything"]
    first = next((e for e in connections[0] if e.type in ("snapshot", "price")), None)
    if first is None or first.type != "snapshot":
        return ["its first connection did not start with a snapshot"]
    start = seq_of(first.id)
    if start is None or not first.id.startswith(f"{epoch}-"):
        return [f"its first snapshot has id {first.id!r}, not {epoch}-SEQ"]
    for number, events in enumerate(connections):
        snaps = [e for e in events if e.type == "snapshot"]
        extra = snaps[1:] if number == 0 else snaps
        for snap in extra:
            reason = json.loads(snap.data).get("reason", "none given")
            found.append(f"a snapshot (reason: {reason}) on reconnect {number}, id {snap.id}")

    prices = [e for events in connections for e in events if e.type == "price"]
    got: list[int] = []
    previous = start
    for event in prices:
        quote = json.loads(event.data)
        seq = quote.get("seq")
        if event.id != f"{epoch}-{seq}":
            found.append(f"price id {event.id!r} does not name its quote's seq {seq}")
            continue
        if seq <= previous:
            found.append(f"id {event.id} does not follow {epoch}-{previous}")
        previous = max(previous, seq)
        got.append(seq)
        truth = ticks.get(seq)
        if truth is not None and any(quote.get(k) != truth[k] for k in _COMPARED):
            found.append(f"seq {seq} carries {quote}, the market sent {truth}")

    missing_in_reference = [s for s in range(start + 1, upto + 1) if s not in ticks]
    if missing_in_reference:
        raise ValueError(f"the market's own record has holes: {_seqs(missing_in_reference)}")
    wanted = {s for s in range(start + 1, upto + 1)
              if symbols is None or ticks[s]["symbol"] in symbols}
    judged = Counter(s for s in got if s <= upto)
    missed = wanted - judged.keys()
    if missed:
        found.append(f"missed {len(missed)} of {len(wanted)} price events: seqs {_seqs(missed)}")
    twice = [s for s, n in judged.items() if n > 1]
    if twice:
        found.append(f"{len(twice)} price events came more than once: seqs {_seqs(twice)}")
    foreign = judged.keys() - wanted
    if foreign:
        found.append(f"{len(foreign)} price events it did not subscribe to: seqs {_seqs(foreign)}")
    return found
