"""Prometheus metrics, summed over every gunicorn worker.

gunicorn.conf.py points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh directory before any
worker starts, so each worker's values live in shared files and ``/metrics`` on any
worker reports the whole server. Without it (a single process) the default registry is
used. Hot paths update these once per sweep or per feed read, never per event.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

__all__ = [
    "BYTES_SENT",
    "EVENTS_SENT",
    "FEED_LAG",
    "FEED_UP",
    "PASS_SECONDS",
    "RESUMES",
    "SNAPSHOTS_SENT",
    "STREAMS_DROPPED",
    "STREAMS_OPEN",
    "STREAMS_REFUSED",
    "WRITES",
    "exposition",
]

STREAMS_OPEN = Gauge(
    "ticker_streams_open", "SSE streams open now.", multiprocess_mode="livesum"
)
EVENTS_SENT = Counter("ticker_events_sent", "price events written to streams.")
SNAPSHOTS_SENT = Counter(
    "ticker_snapshots_sent", "snapshot events written (fresh connects and conflations)."
)
RESUMES = Counter("ticker_resumes", "streams resumed exactly from a Last-Event-ID.")
BYTES_SENT = Counter("ticker_bytes_sent", "bytes the sweeper wrote to stream sockets.")
WRITES = Counter(
    "ticker_writes", "socket writes to streams (events over writes: what a write carries)."
)
STREAMS_REFUSED = Counter(
    "ticker_streams_refused", "streams refused with 503 (worker or client address at its limit)."
)
STREAMS_DROPPED = Counter(
    "ticker_streams_dropped", "streams ended by the server, by reason.", ["reason"]
)
PASS_SECONDS = Histogram(
    "ticker_pass_seconds",
    "how long a sweep pass took, the feed's turns in it included: a tick waits in a worker "
    "for at most about one pass (from just after the sweeper wrote its stream to the next time).",
    buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.08, 0.1, 0.125, 0.15,
             0.2, 0.25, 0.3, 0.4, 0.5, 1.0, 2.0, 5.0),
)
FEED_UP = Gauge(
    "ticker_feed_up", "1 when every live worker is connected to the feed.",
    multiprocess_mode="livemin",
)
FEED_LAG = Gauge(
    "ticker_feed_lag_seconds", "age of the newest tick when a worker read it (worst worker).",
    multiprocess_mode="livemax",
)


def exposition() -> tuple[bytes, str]:
    """The text exposition of every worker's metrics, and its content type."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    return generate_latest(registry), CONTENT_TYPE_LATEST
