"""Configuration from the environment: every number finite and in range, one clear error."""

from __future__ import annotations

import pytest

from ticker.config import Config, ConfigError

FEED = {"TICKER_FEED": "unix:/tmp/feed.sock"}


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("TICKER_HEARTBEAT_S", "nan"), ("TICKER_HEARTBEAT_S", "-inf"), ("TICKER_STALL_S", "nan"),
        ("TICKER_STALL_S", "inf"), ("TICKER_FLUSH_MS", "inf"), ("TICKER_FLUSH_MS", "0"),
        ("TICKER_LOG_SIZE", "0"), ("TICKER_MAX_STREAMS", "-3"), ("TICKER_RETRY_MS", "1e3"),
        ("TICKER_HEARTBEAT_S", "16"),
    ],
)
def test_a_number_that_is_not_finite_and_in_range_is_refused_by_name(name, text):
    with pytest.raises(ConfigError, match=name):
        Config.load(environ={**FEED, name: text})


@pytest.mark.parametrize(
    ("name", "text", "field", "value"),
    [
        ("TICKER_HEARTBEAT_S", "2.5", "heartbeat_s", 2.5), ("TICKER_STALL_S", "1", "stall_s", 1.0),
        ("TICKER_LOG_SIZE", "500", "log_size", 500),
    ],
)
def test_good_numbers_are_taken(name, text, field, value):
    assert getattr(Config.load(environ={**FEED, name: text}), field) == value
