"""The market model: replayable, statistically a GBM under a Poisson clock, never absurd,
each symbol ticking as often as its activity says."""

from __future__ import annotations

import math
import random
import statistics
from collections import Counter

import pytest

from simulator import universe
from simulator.model import (
    MAX_PRICE,
    MIN_PRICE,
    TRADING_YEAR,
    BadPrice,
    Market,
    MarketError,
    UnknownSymbol,
    alias_table,
)
from simulator.universe import Company
from simulator.wire import QUOTE_FIELDS

TS = 1_800_000_000_000


def companies(count: int, *, price: float = 1000.0, volatility: float = 0.2,
              drift: float = 0.1) -> list[Company]:
    return [Company(f"S{i}", f"Company {i}", "Utilities", price, volatility, drift)
            for i in range(count)]


def run(market: Market, ticks: int) -> list[tuple[float, dict]]:
    """(market time, quote) of the next ``ticks`` ticks."""
    return [(market.due, market.next_tick(TS)) for _ in range(ticks)]


def test_same_seed_same_ticks():
    listed = universe.create(20, seed=1)
    first = run(Market(listed, random.Random(9), rate=50), 2000)
    second = run(Market(listed, random.Random(9), rate=50), 2000)
    assert [(t, q["symbol"], q["price"]) for t, q in first] == \
           [(t, q["symbol"], q["price"]) for t, q in second]


def test_another_seed_other_ticks():
    listed = universe.create(20, seed=1)
    first = run(Market(listed, random.Random(9)), 200)
    second = run(Market(listed, random.Random(10)), 200)
    assert [q["price"] for _, q in first] != [q["price"] for _, q in second]


def test_opening_quotes_have_seq_zero_and_the_opening_price():
    listed = universe.create(5, seed=1)
    market = Market(listed, random.Random(1), ts=TS)
    assert [q["symbol"] for q in market.quotes] == [c.symbol for c in listed]
    for quote, company in zip(market.quotes, listed, strict=True):
        assert quote["price"] == quote["open"] == quote["high"] == quote["low"] == company.price
        assert (quote["seq"], quote["size"], quote["volume"], quote["ts"]) == (0, 0, 0, TS)


def test_quotes_have_the_wire_fields_in_order_and_types():
    market = Market(universe.create(5, seed=1), random.Random(1))
    for _, quote in run(market, 100):
        assert tuple(quote) == QUOTE_FIELDS
        assert isinstance(quote["symbol"], str)
        assert all(type(quote[k]) is float for k in QUOTE_FIELDS[1:7])
        assert all(type(quote[k]) is int for k in QUOTE_FIELDS[7:])


def test_seq_goes_up_by_one_and_time_goes_forward():
    market = Market(universe.create(10, seed=1), random.Random(1), rate=100)
    ticks = run(market, 1000)
    assert [q["seq"] for _, q in ticks] == list(range(1, 1001))
    times = [t for t, _ in ticks]
    assert all(a < b for a, b in zip(times, times[1:], strict=False))
    assert market.seq == 1000 and market.time == times[-1]


def test_day_figures_stay_consistent():
    market = Market(universe.create(10, seed=2), random.Random(2), rate=100, speed=20_000)
    volume = Counter()
    for _, quote in run(market, 5000):
        volume[quote["symbol"]] += quote["size"]
        assert quote["low"] <= quote["price"] <= quote["high"]
        assert quote["low"] <= quote["open"] <= quote["high"]
        assert quote["change"] == round(quote["price"] - quote["open"], 2)
        assert quote["change_pct"] == round(
            (quote["price"] - quote["open"]) / quote["open"] * 100, 2)
        assert quote["volume"] == volume[quote["symbol"]]
        assert quote["size"] % 100 == 0 and 100 <= quote["size"] <= 10_000
        assert quote["price"] == round(quote["price"], 2)


def test_trade_sizes_are_mostly_small_round_lots():
    market = Market(universe.create(10, seed=2), random.Random(2))
    sizes = [q["size"] for _, q in run(market, 5000)]
    assert statistics.median(sizes) <= 300
    assert max(sizes) >= 2000


def test_ticks_arrive_as_a_poisson_process():
    rate = 50.0
    market = Market(companies(25), random.Random(4), rate=rate)
    ticks = run(market, 20_000)
    gaps = [b - a for (a, _), (b, _) in zip(ticks, ticks[1:], strict=False)]
    # Exponential gaps: mean 1/rate, and a standard deviation equal to the mean.
    assert statistics.mean(gaps) == pytest.approx(1 / rate, rel=0.03)
    assert statistics.stdev(gaps) == pytest.approx(1 / rate, rel=0.05)
    per_symbol = Counter(q["symbol"] for _, q in ticks)
    assert len(per_symbol) == 25
    assert all(abs(count - 800) < 130 for count in per_symbol.values())  # 800 +- 4.5 sd


@pytest.mark.parametrize("weights", [
    [1.0], [1.0, 1.0, 1.0], [1.0, 3.0], [5.0, 1.0, 1.0, 1.0], [0.2, 0.3, 7.5, 0.01, 2.0],
    universe.activity(1000, seed=3),
])
def test_the_alias_table_gives_each_symbol_its_weight(weights):
    keep, alias = alias_table(weights)
    count = len(weights)
    chance = [k / count for k in keep]
    for column, target in enumerate(alias):
        chance[target] += (1 - keep[column]) / count
    total = sum(weights)
    assert chance == pytest.approx([w / total for w in weights], abs=1e-12)


def test_equal_activity_is_the_plain_uniform_draw():
    assert alias_table([1.0] * 7) == ([1.0] * 7, list(range(7)))


@pytest.mark.parametrize("weights", [[1.0, 0.0], [1.0, -1.0], [1.0, math.nan], [math.inf]])
def test_an_activity_must_be_finite_and_positive(weights):
    with pytest.raises(ValueError, match="activity"):
        alias_table(weights)


def test_each_symbol_ticks_as_often_as_its_activity_says():
    listed = universe.create(400, seed=8)
    ticks = 200_000
    market = Market(listed, random.Random(8), rate=1000)
    per_symbol = Counter(market.next_tick(TS)["symbol"] for _ in range(ticks))
    total = sum(c.activity for c in listed)
    for company in listed:
        share = company.activity / total
        expected = ticks * share
        assert abs(per_symbol[company.symbol] - expected) < 5 * math.sqrt(expected * (1 - share))
    busiest = sorted(per_symbol.values(), reverse=True)[:4]  # the top 1 % of 400 symbols
    assert sum(busiest) > 0.05 * ticks  # take over 5 times their even share


def test_log_returns_follow_geometric_brownian_motion():
    # 200 symbols for 4 market years each: 800 symbol-years pin the drift to +-0.02 (one
    # standard error), well under the Ito term sigma^2/2 = 0.18 that a naive walk gets wrong.
    drift, volatility, speed = 0.1, 0.6, TRADING_YEAR / 10  # a tenth of a year per second
    market = Market(companies(200, drift=drift, volatility=volatility), random.Random(5),
                    rate=1000, speed=speed)
    last = {f"S{i}": (1000.0, 0.0) for i in range(200)}
    standardized, log_return, years_total = [], 0.0, 0.0
    for t, quote in run(market, 40_000):
        price0, t0 = last[quote["symbol"]]
        last[quote["symbol"]] = (quote["price"], t)
        years = (t - t0) * speed / TRADING_YEAR
        r = math.log(quote["price"] / price0)
        standardized.append((r - (drift - volatility ** 2 / 2) * years)
                            / (volatility * math.sqrt(years)))
        log_return += r
        years_total += years
    # Each standardized return is N(0, 1): 40,000 of them pin mean and variance.
    assert abs(statistics.mean(standardized)) < 4 / math.sqrt(len(standardized))
    assert statistics.variance(standardized) == pytest.approx(1, abs=0.03)
    estimated = log_return / years_total + volatility ** 2 / 2
    assert estimated == pytest.approx(drift, abs=4 * volatility / math.sqrt(years_total))


def test_price_never_falls_to_zero():
    market = Market(companies(3, price=0.05, volatility=0.8, drift=-2.0), random.Random(6),
                    speed=TRADING_YEAR / 10)
    prices = [q["price"] for _, q in run(market, 3000)]
    assert min(prices) == MIN_PRICE  # the walk reached the floor, and stopped there
    assert all(p > 0 for p in prices)


def test_price_never_runs_away():
    market = Market(companies(3, price=MAX_PRICE / 2, volatility=0.8, drift=3.0),
                    random.Random(6), speed=TRADING_YEAR / 10)
    prices = [q["price"] for _, q in run(market, 3000)]
    assert max(prices) == MAX_PRICE


def test_injected_price_is_published_and_the_walk_continues_from_it():
    market = Market(companies(1, volatility=0.2), random.Random(7), rate=10)
    run(market, 10)
    before = market.quotes[0]
    quote = market.inject("S0", 123.456, TS + 1)
    assert quote["price"] == 123.46
    assert (quote["size"], quote["seq"], quote["ts"]) == (0, 11, TS + 1)
    assert quote["volume"] == before["volume"]
    assert quote["low"] == 123.46 and quote["open"] == before["open"]
    assert market.quotes[0] is quote
    _, following = run(market, 1)[0]
    assert following["seq"] == 12
    assert following["price"] == pytest.approx(123.46, rel=0.05)


@pytest.mark.parametrize("price", [0.004, MAX_PRICE * 2])
def test_absurd_injected_price_is_refused(price):
    market = Market(companies(1), random.Random(7))
    with pytest.raises(BadPrice, match="price must be between"):
        market.inject("S0", price, TS)
    assert market.seq == 0


def test_unknown_symbol_is_a_clear_error():
    market = Market(companies(1), random.Random(7))
    with pytest.raises(UnknownSymbol, match="unknown symbol 'NOPE'") as caught:
        market.inject("NOPE", 10.0, TS)
    assert isinstance(caught.value, MarketError) and isinstance(caught.value, LookupError)


@pytest.mark.parametrize("kwargs", [{"rate": 0}, {"rate": -1}, {"rate": math.inf}])
def test_market_needs_a_finite_positive_rate(kwargs):
    with pytest.raises(ValueError, match="rate"):
        Market(companies(1), random.Random(1), **kwargs)


def test_market_needs_a_company():
    with pytest.raises(ValueError, match="at least one company"):
        Market([], random.Random(1))
