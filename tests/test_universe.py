"""The listed companies: seeded, unique and plausible up to 10,000, with skewed activity."""

from __future__ import annotations

import re

import pytest

from simulator import universe, wire
from simulator.universe import MAX_SYMBOLS, SECTORS, UniverseError

FORMS = re.compile(r" (Inc|Corp|Co|Group|Ltd|PLC)$")


def spelled_from(symbol: str, name: str) -> bool:
    """Whether the symbol's letters come from the name's, in order, first letter first."""
    letters = iter(re.sub(r"[^A-Z]", "", name.upper()))
    return symbol[0] == name[0].upper() and all(c in letters for c in symbol)


def test_same_seed_same_universe():
    assert universe.create(30, seed=5) == universe.create(30, seed=5)


def test_another_seed_another_universe():
    assert universe.create(30, seed=5) != universe.create(30, seed=6)


@pytest.mark.parametrize("count", [1, 50, MAX_SYMBOLS])
def test_companies_are_unique_and_plausible(count):
    companies = universe.create(count, seed=1)
    assert len(companies) == count
    assert len({c.symbol for c in companies}) == count
    assert len({FORMS.sub("", c.name) for c in companies}) == count  # not just "Inc" apart
    for company in companies:
        assert wire.SYMBOL_RE.match(company.symbol), company
        assert spelled_from(company.symbol, company.name), company
        assert company.sector in SECTORS
        assert 5 <= company.price <= 500
        assert 0.15 <= company.volatility <= 0.80
        assert -0.05 <= company.drift <= 0.15
        assert company.activity > 0


@pytest.mark.parametrize("seed", [2, 3])
def test_a_full_size_market_finds_letters_for_every_symbol(seed):
    symbols = [c.symbol for c in universe.create(MAX_SYMBOLS, seed=seed)]
    assert all(symbol.isalpha() and 2 <= len(symbol) <= 4 for symbol in symbols)
    assert sum(len(symbol) == 4 for symbol in symbols) > len(symbols) / 2


def test_a_clash_takes_other_letters_of_the_name():
    companies = universe.create(MAX_SYMBOLS, seed=2)
    by_first_word = {}
    for company in companies:
        by_first_word.setdefault(company.name.split()[0].strip(","), []).append(company)
    shared = max(by_first_word.values(), key=len)
    assert len(shared) > 5  # a common name leads several companies
    assert len({c.symbol for c in shared}) == len(shared)
    assert all(spelled_from(c.symbol, c.name) for c in shared)


def test_prices_spread_over_orders_of_magnitude():
    prices = [c.price for c in universe.create(MAX_SYMBOLS, seed=3)]
    assert min(prices) < 20 and max(prices) > 150


def test_explicit_symbols_are_kept_in_order_with_seeded_names():
    companies = universe.create(("AAPL", "MSFT", "BRK.B"), seed=1)
    assert [c.symbol for c in companies] == ["AAPL", "MSFT", "BRK.B"]
    assert companies == universe.create(("AAPL", "MSFT", "BRK.B"), seed=1)
    assert all(c.name and c.sector in SECTORS and c.activity > 0 for c in companies)


def test_listing_is_what_the_hello_carries():
    company = universe.create(1, seed=1)[0]
    assert company.listing() == {"symbol": company.symbol, "name": company.name,
                                 "sector": company.sector}


def test_activity_is_seeded_and_averages_one():
    assert universe.activity(500, seed=1) == universe.activity(500, seed=1)
    assert universe.activity(500, seed=1) != universe.activity(500, seed=2)
    assert sum(universe.activity(500, seed=1)) == pytest.approx(500, rel=1e-3)
    assert [c.activity for c in universe.create(40, seed=3)] == universe.activity(40, seed=3)


@pytest.mark.parametrize("count, top_share", [(1000, 0.14), (MAX_SYMBOLS, 0.33)])
def test_a_few_names_trade_far_more_than_the_tail(count, top_share):
    shares = sorted(universe.activity(count, seed=4), reverse=True)
    assert sum(shares[:count // 100]) / count > top_share  # the busiest 1 % of the names
    assert shares[0] > 20 * shares[-1]


def test_a_small_market_is_skewed_less():
    shares = sorted(universe.activity(50, seed=4), reverse=True)
    assert 5 < shares[0] / shares[-1] < 6


def test_the_busiest_names_are_anywhere_in_the_listing():
    shares = universe.activity(1000, seed=5)
    busiest = sorted(range(1000), key=shares.__getitem__, reverse=True)[:10]
    assert max(busiest) > 100 and min(busiest) < 900


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


def test_a_smaller_universe_lists_the_first_companies_of_a_larger_one():
    small, large = universe.create(30, seed=9), universe.create(300, seed=9)
    assert [(c.symbol, c.name, c.sector, c.price) for c in small] == \
           [(c.symbol, c.name, c.sector, c.price) for c in large[:30]]
