"""The listed companies: names, ticker symbols, sectors and how each stock moves.

A universe comes from a seed and nothing else, so ``--seed 7`` lists the same companies
at the same starting prices on every run. Names and sectors come from a seeded Faker
instance, the numbers from a ``random.Random`` of their own, so neither draw shifts the
other.
"""

from __future__ import annotations

import itertools
import math
import random
import string
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from faker import Faker

from simulator.wire import SYMBOL_RE

__all__ = [
    "MAX_SYMBOLS",
    "SECTORS",
    "Company",
    "UniverseError",
    "create",
    "parse_spec",
]

# The hello and snapshot messages list every symbol on one line, and a line must stay
# under the wire's 64 KiB limit: 250 quotes take about 45 KiB.
MAX_SYMBOLS = 250
SECTORS = (
    "Communication Services", "Consumer Discretionary", "Consumer Staples", "Energy",
    "Financials", "Health Care", "Industrials", "Information Technology", "Materials",
    "Real Estate", "Utilities",
)
# Words of a Faker company name that say nothing about the company.
_FILLER = frozenset({"AND", "GROUP", "INC", "LLC", "LTD", "PLC", "SONS"})
_PRICE_RANGE = (5.0, 500.0)
_VOLATILITY_RANGE = (0.15, 0.80)
_DRIFT_RANGE = (-0.05, 0.15)


class UniverseError(ValueError):
    """A ``--symbols`` value that cannot make a universe; the text is the reason."""


@dataclass(frozen=True, slots=True)
class Company:
    """One listed company and the parameters of its stock's random walk.

    ``volatility`` and ``drift`` are annual, as quoted for real stocks.
    """

    symbol: str
    name: str
    sector: str
    price: float
    volatility: float
    drift: float

    def listing(self) -> dict:
        """What the feed's hello tells subscribers about this company."""
        return {"symbol": self.symbol, "name": self.name, "sector": self.sector}


def parse_spec(text: str) -> int | tuple[str, ...]:
    """Read ``--symbols``: a count (``50``) or a list of symbols (``AAPL,MSFT``).

    Raises:
        UniverseError: not a count in range, a bad or repeated symbol, too many symbols.
    """
    text = text.strip()
    if text.isdigit():
        count = int(text)
        if not 1 <= count <= MAX_SYMBOLS:
            raise UniverseError(f"--symbols must be between 1 and {MAX_SYMBOLS}, not {count}")
        return count
    symbols = tuple(part.strip().upper() for part in text.split(","))
    for symbol in symbols:
        if not SYMBOL_RE.match(symbol):
            raise UniverseError(
                f"{symbol!r} is not a ticker symbol: a letter, then up to 9 letters, digits, dots"
            )
    repeated = sorted({s for s in symbols if symbols.count(s) > 1})
    if repeated:
        raise UniverseError(f"symbol {repeated[0]} is listed twice")
    if len(symbols) > MAX_SYMBOLS:
        raise UniverseError(f"--symbols lists {len(symbols)} symbols; at most {MAX_SYMBOLS}")
    return symbols


def create(spec: int | Sequence[str], seed: int) -> list[Company]:
    """A universe of ``spec`` companies, or of exactly the symbols in ``spec``.

    Example: ``create(3, seed=1)`` or ``create(["AAPL", "MSFT"], seed=1)``.
    """
    fake = Faker("en_US")
    fake.seed_instance(seed)
    rng = random.Random(seed)
    count = spec if isinstance(spec, int) else len(spec)
    names = _unique_names(fake, count)
    symbols = _derive_symbols(names) if isinstance(spec, int) else list(spec)
    return [
        Company(
            symbol=symbol,
            name=name,
            sector=fake.random_element(SECTORS),
            price=round(math.exp(rng.uniform(*map(math.log, _PRICE_RANGE))), 2),
            volatility=round(rng.uniform(*_VOLATILITY_RANGE), 3),
            drift=round(rng.uniform(*_DRIFT_RANGE), 3),
        )
        for symbol, name in zip(symbols, names, strict=True)
    ]


def _unique_names(fake: Faker, count: int) -> list[str]:
    names: list[str] = []
    seen: set[str] = set()
    while len(names) < count:
        name = fake.company()
        if name not in seen:
            seen.add(name)
            names.append(name)
    return names


def _derive_symbols(names: Sequence[str]) -> list[str]:
    """One symbol per name, from its words; a clash gets a share-class suffix (``ABC.B``)."""
    taken: set[str] = set()
    symbols = []
    for name in names:
        base = _symbol_base(name)
        symbol = base
        classes = (f".{letter}" for letter in string.ascii_uppercase[1:])
        suffixes = itertools.chain(classes, itertools.count(2))
        while symbol in taken:
            symbol = f"{base}{next(suffixes)}"
        taken.add(symbol)
        symbols.append(symbol)
    return symbols


def _symbol_base(name: str) -> str:
    """Carroll Inc -> CARR, Wilson-Hodges -> WIHO, Hall, Ng and Roe -> HNR."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().upper()
    words = [
        word for word in "".join(c if c.isalpha() else " " for c in ascii_name).split()
        if word not in _FILLER
    ] or ["X"]
    if len(words) == 1:
        return words[0][:4]
    if len(words) == 2:
        return words[0][:2] + words[1][:2]
    return "".join(word[0] for word in words[:4])
