"""Admission: the bytes a new stream starts with, resuming exactly wherever that is possible.

A stream's response starts with ``retry``, then either the exact replay of the ``price``
events it missed after its ``Last-Event-ID`` (from this worker's log, reaching back into
the feed source's own history where the log does not go back far enough), or a snapshot
that says why it is one (``new``, ``restart``, ``too-old``), then the feed's status. What
comes after is the sweeper's: the stream's cursor says where it takes over.

Pure apart from ``history``, which may wait on the feed source; the caller runs it in the
stream's own greenlet, so no other stream waits for it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from ticker import metrics, sse
from ticker.eventlog import EventLog

__all__ = ["History", "Start", "start", "status_frame"]

# Ticks after one seq up to another, from the feed source: (after, until) -> quotes or None.
History = Callable[[int, int], "list[dict] | None"]

_ID = re.compile(r"([A-Za-z0-9]{1,32})-([0-9]{1,19})\Z")


@dataclass(frozen=True)
class Start:
    """A stream's first bytes and the log position they bring it to."""

    body: bytes
    generation: int
    cursor: int


def status_frame(feed_up: bool) -> bytes:
    return sse.encode('{"feed":"up"}' if feed_up else '{"feed":"down"}', event="status")


def start(
    log: EventLog, key: frozenset[str] | None, last_event_id: str | None,
    retry_frame: bytes, history: History | None = None, rate: float | None = None,
) -> Start:
    """What a stream for ``key`` (None: every symbol) that last saw ``last_event_id`` gets.

    A stream with a ``rate`` resumes conflated: the latest quote of each symbol that
    changed since, from the log only. A log that has never seen the feed gives no snapshot
    yet (the sweeper sends one when the feed is up); the stream's generation -1 says so.
    """
    parts = [retry_frame]
    resumed = _resume(log, key, last_event_id, None if rate else history, bool(rate))
    if resumed is not None:
        body, count, generation, cursor = resumed
        parts.append(body)
        metrics.RESUMES.inc()
        metrics.EVENTS_SENT.inc(count)
    elif log.epoch is not None:
        parts.append(log.snapshot(key, _reason(log, last_event_id)))
        metrics.SNAPSHOTS_SENT.inc()
        generation, cursor = log.generation, log.head
    else:
        generation, cursor = -1, 0
    parts.append(status_frame(log.feed_up))
    return Start(b"".join(parts), generation, cursor)


def _reason(log: EventLog, last_event_id: str | None) -> str:
    """Why a stream gets a snapshot instead of a replay."""
    match = _ID.match(last_event_id.strip()) if last_event_id else None
    if match is None:
        return "new"  # no id, or one that is not ours: as if there were none
    if match[1] != log.epoch:
        return "restart"  # an id of another run of the market
    return "too-old" if int(match[2]) <= log.head else "new"


def _resume(
    log: EventLog, key: frozenset[str] | None, last_event_id: str | None,
    history: History | None, conflate: bool = False,
) -> tuple[bytes, int, int, int] | None:
    """The replay after ``last_event_id`` (exact, or conflated): frames, how many,
    generation and cursor."""
    cursor = log.parse_id(last_event_id)
    if cursor is None:
        return None
    if log.covers(log.generation, cursor):
        body, count = log.latest(cursor, key)[:2] if conflate else log.replay(cursor, key)
        return body, count, log.generation, max(cursor, log.head)
    if history is None:
        return None
    generation, head = log.generation, log.head
    older = history(cursor, head)
    # The log may have moved on (or been reset) while the source answered.
    if older is None or not log.covers(generation, head):
        return None
    body, count = log.frames(older, key)
    rest, more = log.replay(head, key)
    return body + rest, count + more, generation, log.head
