"""The market publishing into Redis: a stalled Redis never holds up the making of a tick,
and a full-size market is there whole."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest
import redis

from simulator import universe
from tests.procs import run_simulator
from tests.redis_proc import run_redis
from tests.test_simulator import cli

pytestmark = pytest.mark.redis


@pytest.fixture
def redis_market(tmp_path):
    """redis-server and the simulator publishing 50 ticks/s into it."""
    with run_redis(tmp_path) as store, run_simulator(
        tmp_path, "--seed", "21", "--symbols", "10", "--rate", "50", "--feed", store.url
    ) as market:
        client = redis.Redis.from_url(store.url)
        try:
            yield store, market, client
        finally:
            client.close()


def test_a_stalled_redis_holds_up_no_tick(redis_market):
    store, market, client = redis_market
    time.sleep(1)
    os.kill(store.proc.pid, signal.SIGSTOP)  # Redis stops answering, connections stay open
    try:
        stalled_from = time.time() * 1000
        time.sleep(2)
    finally:
        os.kill(store.proc.pid, signal.SIGCONT)
    time.sleep(1)
    ticks = [json.loads(entry[b"m"]) for _, entry in client.xrange("ticker:ticks")]
    seqs = [tick["seq"] for tick in ticks]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    during = [t for t in ticks if stalled_from + 200 < t["ts"] < stalled_from + 1800]
    assert len(during) >= 40  # made on time while Redis was stopped, published after
    gaps = [b["ts"] - a["ts"] for a, b in zip(ticks, ticks[1:], strict=False)]
    assert max(gaps) < 1000
    assert "stalled" not in market.output()


def test_a_market_restarted_from_its_state_goes_on_with_its_stream(tmp_path):
    saved = tmp_path / "market.state"
    market_args = ("--seed", "21", "--symbols", "10", "--rate", "50", "--state", str(saved))
    with run_redis(tmp_path) as store:
        client = redis.Redis.from_url(store.url)
        try:
            with run_simulator(tmp_path, *market_args, "--feed", store.url) as first:
                time.sleep(1)
                assert first.stop() == 0
            epoch = json.loads(client.get("ticker:hello"))["epoch"]
            last = int(client.xrevrange("ticker:ticks", count=1)[0][0].split(b"-")[0])
            with run_simulator(tmp_path, *market_args, "--feed", store.url):
                time.sleep(1)
                hello = json.loads(client.get("ticker:hello"))
                ticks = [json.loads(entry[b"m"]) for _, entry in client.xrange("ticker:ticks")]
        finally:
            client.close()
    assert (hello["epoch"], hello["seq"]) == (epoch, last)
    seqs = [tick["seq"] for tick in ticks]
    assert seqs == list(range(1, seqs[-1] + 1)) and seqs[-1] > last + 10


def test_a_full_size_market_in_redis(tmp_path):
    count = universe.MAX_SYMBOLS
    with run_redis(tmp_path) as store, run_simulator(
        tmp_path, "--seed", "5", "--symbols", str(count), "--rate", "2000", "--feed", store.url
    ):
        client = redis.Redis.from_url(store.url)
        try:
            hello = json.loads(client.get("ticker:hello"))  # one value, no line limit
            quotes = client.hgetall("ticker:quotes")
        finally:
            client.close()
        result = cli("symbols", "--feed", store.url)  # its reply comes in pieces
    listed = [company.listing() for company in universe.create(count, seed=5)]
    assert (hello["type"], hello["count"], hello["universe"]) == ("hello", count, listed)
    assert len(quotes) == count
    assert result.returncode == 0, result.stderr
    assert [line.split()[0] for line in result.stdout.splitlines()] == [
        c["symbol"] for c in listed]
