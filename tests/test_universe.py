"""The listed companies: seeded, unique, plausible, and small enough for one wire line."""

from __future__ import annotations

import random

import pytest

from simulator import universe, wire
from simulator.model import Market
from simulator.universe import MAX_SYMBOLS, SECTORS, UniverseError


def test_same_seed_same_universe():
    assert universe.create(30, seed=5) == universe.create(30, seed=5)


def test_another_seed_another_universe():
    assert universe.create(30, seed=5) != universe.create(30, seed=6)


@pytest.mark.parametrize("count", [1, 50, MAX_SYMBOLS])
def test_companies_are_unique_and_plausible(count):
    companies = universe.create(count, seed=1)
    assert len(companies) == count
    assert len({c.symbol for c in companies}) == count
    assert len({c.name for c in companies}) == count
    for company in companies:
        assert wire.SYMBOL_RE.match(company.symbol), company
        assert company.symbol[0] == company.name[0].upper(), company  # derived from the name
        assert company.sector in SECTORS
        assert 5 <= company.price <= 500
        assert 0.15 <= company.volatility <= 0.80
        assert -0.05 <= company.drift <= 0.15


def test_clashing_symbols_get_a_share_class_suffix():
    symbols = [c.symbol for c in universe.create(MAX_SYMBOLS, seed=2)]
    suffixed = [s for s in symbols if "." in s]
    assert suffixed, "250 companies always have some clashing names"
    assert all(s.split(".")[0] in symbols for s in suffixed)


def test_prices_spread_over_orders_of_magnitude():
    prices = [c.price for c in universe.create(MAX_SYMBOLS, seed=3)]
    assert min(prices) < 20 and max(prices) > 150


def test_explicit_symbols_are_kept_in_order_with_seeded_names():
    companies = universe.create(("AAPL", "MSFT", "BRK.B"), seed=1)
    assert [c.symbol for c in companies] == ["AAPL", "MSFT", "BRK.B"]
    assert companies == universe.create(("AAPL", "MSFT", "BRK.B"), seed=1)
    assert all(c.name and c.sector in SECTORS for c in companies)


def test_listing_is_what_the_hello_carries():
    company = universe.create(1, seed=1)[0]
    assert company.listing() == {"symbol": company.symbol, "name": company.name,
                                 "sector": company.sector}


def test_largest_universe_fits_the_wire_line_limit():
    companies = universe.create(MAX_SYMBOLS, seed=4)
    market = Market(companies, random.Random(4), ts=1_800_000_000_000)
    for _ in range(100_000):
        market.next_tick(1_800_000_000_000)
    hello = wire.hello("a" * 12, market.seq, [c.listing() for c in companies], 1e6)
    snapshot = wire.snapshot(market.seq, market.quotes)
    assert len(wire.encode(hello)) < wire.MAX_LINE
    assert len(wire.encode(snapshot)) < wire.MAX_LINE


@pytest.mark.parametrize("text, spec", [
    ("50", 50),
    (" 7 ", 7),
    (str(MAX_SYMBOLS), MAX_SYMBOLS),
    ("AAPL", ("AAPL",)),
    ("aapl, msft,BRK.B", ("AAPL", "MSFT", "BRK.B")),
])
def test_spec_is_a_count_or_symbols(text, spec):
    assert universe.parse_spec(text) == spec


@pytest.mark.parametrize("text, reason", [
    ("0", "between 1 and"),
    (str(MAX_SYMBOLS + 1), "between 1 and"),
    ("", "is not a ticker symbol"),
    ("AAPL,,MSFT", "is not a ticker symbol"),
    ("1ABC", "is not a ticker symbol"),
    ("TOOLONGSYMBOL", "is not a ticker symbol"),
    ("A-B", "is not a ticker symbol"),
    ("-5", "is not a ticker symbol"),
    ("AAPL,MSFT,aapl", "AAPL is listed twice"),
    (",".join(f"S{i}" for i in range(MAX_SYMBOLS + 1)), f"at most {MAX_SYMBOLS}"),
])
def test_bad_spec_says_why(text, reason):
    with pytest.raises(UniverseError, match=reason):
        universe.parse_spec(text)
