"""The listed companies: names, ticker symbols, sectors, how each stock moves and trades.

A universe comes from a seed and nothing else, so ``--seed 7`` lists the same companies
at the same starting prices on every run. Three ``random.Random`` streams of their own
draw the names and sectors, the numbers of each walk, and the order of activity, so no
draw shifts another.

Strategy for names at full size (10,000): Faker's ``company()`` repeats itself long before
that and costs 100 us a call, so names are composed from Faker's data instead (its 1,000
US last names and 50 states, plus a few place words), with a word that fits the sector
("Boone Therapeutics", "Ohio Bancorp", "Wilson-Hodges Semiconductor Inc") and drawn again
on a clash. A symbol is made from the letters of its name, first letter first, taking the
first free one of a list of ever less obvious picks (``BOON``, ``BOTH``, ``BOT``, ...).

Activity: a few names trade far more than the tail, as in a real market. Each company's
``activity`` is its share of the market's ticks relative to the average (1.0), Zipf-like
by rank over a seeded random order of the companies.
"""

from __future__ import annotations

import itertools
import math
import random
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from faker.providers.address.en_US import Provider as _Places
from faker.providers.person.en_US import Provider as _People

from simulator.wire import SYMBOL_RE

__all__ = [
    "MAX_SYMBOLS",
    "SECTORS",
    "Company",
    "UniverseError",
    "activity",
    "create",
    "parse_spec",
]

# The US equity market lists about 8,000; the feed sends longer listings in pieces.
MAX_SYMBOLS = 10_000
# The words of a name that say what the company does, by sector.
_TRADES = {
    "Communication Services": ("Media", "Communications", "Networks", "Broadcasting", "Telecom",
                               "Interactive", "Entertainment", "Publishing"),
    "Consumer Discretionary": ("Brands", "Motors", "Apparel", "Home Furnishings", "Retail",
                               "Leisure", "Restaurants", "Outfitters"),
    "Consumer Staples": ("Foods", "Beverages", "Farms", "Household Products", "Grocers",
                         "Brewing", "Dairy", "Provisions"),
    "Energy": ("Energy", "Petroleum", "Oil & Gas", "Resources", "Drilling", "Midstream",
               "Exploration", "Offshore"),
    "Financials": ("Financial", "Bancorp", "Capital", "Holdings", "Insurance", "Trust",
                   "Asset Management", "Bankshares"),
    "Health Care": ("Therapeutics", "Pharmaceuticals", "Biosciences", "Medical", "Health",
                    "Diagnostics", "Genomics", "Surgical"),
    "Industrials": ("Industries", "Aerospace", "Logistics", "Machinery", "Engineering",
                    "Freight", "Defense", "Controls"),
    "Information Technology": ("Semiconductor", "Systems", "Software", "Technologies",
                               "Micro Devices", "Data", "Computing", "Photonics"),
    "Materials": ("Materials", "Chemicals", "Mining", "Steel", "Metals", "Packaging", "Paper",
                  "Minerals"),
    "Real Estate": ("Realty", "Properties", "Land", "Residential", "Estates", "Property Trust",
                    "Office Properties", "Storage"),
    "Utilities": ("Utilities", "Power", "Electric", "Water", "Gas", "Light & Power",
                  "Energy Services", "Renewables"),
}
SECTORS = tuple(_TRADES)
_LAST_NAMES = tuple(_People.last_names)
_PLACES = tuple(_Places.states) + (
    "Pacific", "Atlantic", "Summit", "Pioneer", "Liberty", "Frontier", "Granite", "Keystone",
    "Evergreen", "Harbor", "Sierra", "Cascade", "Midwest", "Northern", "Southern", "Western",
    "Eastern", "Continental", "American", "National", "United", "First", "Allied", "Heritage",
    "Meridian", "Apex", "Vertex", "Pinnacle", "Redwood", "Crescent", "Beacon", "Lakeshore",
    "Prairie", "Coastal", "Gulf", "Great Lakes", "Rocky Mountain", "Hudson", "Potomac",
)
# How a name is put together, and how often: L a last name, P a place, T the trade.
_PATTERNS = (("L T", 50), ("P T", 25), ("L-L T", 12), ("L & L", 10), ("L, L and L", 3))
_FORMS = (("", 40), (" Inc", 30), (" Corp", 15), (" Co", 5), (" Group", 5), (" Ltd", 3),
          (" PLC", 2))
# Words of a name that say nothing about the company, left out of its symbol.
_FILLER = frozenset({"AND", "CO", "CORP", "GROUP", "INC", "LTD", "PLC"})
# Activity by rank r (1 for the busiest) is 1 / (r + _ACTIVITY_OFFSET): Zipf's law, its
# head flattened a little so that in a small market no one name takes most of the ticks.
# At 10,000 names the busiest 1 % take a third of the ticks, at 50 the busiest takes 5 %.
_ACTIVITY_OFFSET = 10
_PRICE_RANGE = (5.0, 500.0)
_VOLATILITY_RANGE = (0.15, 0.80)
_DRIFT_RANGE = (-0.05, 0.15)


class UniverseError(ValueError):
    """A ``--symbols`` value that cannot make a universe; the text is the reason."""


@dataclass(frozen=True, slots=True)
class Company:
    """One listed company and the parameters of its stock's random walk.

    ``volatility`` and ``drift`` are annual, as quoted for real stocks. ``activity`` is how
    often it trades against the market's average company (1.0): 3.0 is three times as often.
    """

    symbol: str
    name: str
    sector: str
    price: float
    volatility: float
    drift: float
    activity: float = 1.0

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
    if len(symbols) > MAX_SYMBOLS:
        raise UniverseError(f"--symbols lists {len(symbols)} symbols; at most {MAX_SYMBOLS}")
    for symbol in symbols:
        if not SYMBOL_RE.match(symbol):
            raise UniverseError(
                f"{symbol[:20]!r} is not a ticker symbol: a letter, then up to 9 letters, "
                "digits, dots"
            )
    if len(set(symbols)) < len(symbols):
        seen: set[str] = set()
        repeated = next(s for s in symbols if s in seen or seen.add(s))
        raise UniverseError(f"symbol {repeated} is listed twice")
    return symbols


def create(spec: int | Sequence[str], seed: int) -> list[Company]:
    """A universe of ``spec`` companies, or of exactly the symbols in ``spec``.

    Example: ``create(3, seed=1)`` or ``create(["AAPL", "MSFT"], seed=1)``.
    """
    words = random.Random(f"names:{seed}")
    numbers = random.Random(seed)
    count = spec if isinstance(spec, int) else len(spec)
    names, sectors = _names_and_sectors(words, count)
    symbols = _derive_symbols(names) if isinstance(spec, int) else list(spec)
    return [
        Company(
            symbol=symbol,
            name=name,
            sector=sector,
            price=round(math.exp(numbers.uniform(*map(math.log, _PRICE_RANGE))), 2),
            volatility=round(numbers.uniform(*_VOLATILITY_RANGE), 3),
            drift=round(numbers.uniform(*_DRIFT_RANGE), 3),
            activity=share,
        )
        for symbol, name, sector, share in zip(
            symbols, names, sectors, activity(count, seed), strict=True)
    ]


def activity(count: int, seed: int) -> list[float]:
    """Each of ``count`` companies' activity (mean 1.0, 4 significant digits), Zipf-like by
    rank over a random order that ``seed`` fixes."""
    ranks = list(range(1, count + 1))
    random.Random(f"activity:{seed}").shuffle(ranks)
    weights = [1.0 / (rank + _ACTIVITY_OFFSET) for rank in ranks]
    mean = sum(weights) / count
    return [float(f"{weight / mean:.4g}") for weight in weights]


def _names_and_sectors(rng: random.Random, count: int) -> tuple[list[str], list[str]]:
    """``count`` companies' names and sectors, drawn one company after the other (so a
    smaller universe of the same seed lists the first of them); no two names alike once
    ``Inc`` and such are left out."""
    patterns, pattern_weights = zip(*_PATTERNS, strict=True)
    forms, form_weights = zip(*_FORMS, strict=True)
    names: list[str] = []
    sectors: list[str] = []
    seen: set[str] = set()
    for _ in range(count):
        sector = rng.choice(SECTORS)
        while True:
            pattern = rng.choices(patterns, pattern_weights)[0]
            name = _compose(rng, pattern, _TRADES[sector])
            if name not in seen:
                break
        seen.add(name)
        names.append(name + rng.choices(forms, form_weights)[0])
        sectors.append(sector)
    return names, sectors


def _compose(rng: random.Random, pattern: str, trades: Sequence[str]) -> str:
    lasts = rng.sample(_LAST_NAMES, pattern.count("L"))
    parts = {"P": lambda: rng.choice(_PLACES), "L": lasts.pop, "T": lambda: rng.choice(trades)}
    return "".join(parts[c]() if c in parts else c for c in pattern)


def _derive_symbols(names: Sequence[str]) -> list[str]:
    """One symbol per name, each the first of the name's candidates not taken already."""
    taken: set[str] = set()
    symbols = []
    for name in names:
        symbol = next(s for s in _candidates(name) if s not in taken)
        taken.add(symbol)
        symbols.append(symbol)
    return symbols


def _candidates(name: str) -> Iterator[str]:
    """Boone Therapeutics -> BOON, BOTH, BOOT, BTHE, BOO, then the name's first letter and
    any 2 or 3 of its later letters, in order; last, BOON2, BOON3, ..."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().upper()
    words = [
        word for word in "".join(c if c.isalpha() else " " for c in ascii_name).split()
        if word not in _FILLER
    ] or ["X"]
    first = words[0]
    if len(words) >= 3:
        yield "".join(word[0] for word in words[:4])
    yield first[:4]
    if len(words) >= 2:
        second = words[1]
        yield first[:2] + second[:2]
        yield first[:3] + second[0]
        yield first[0] + second[:3]
    yield first[:3]
    letters = "".join(words)
    for size in (2, 3):
        for picks in itertools.combinations(letters[1:], size):
            yield letters[0] + "".join(picks)
    for number in itertools.count(2):
        yield f"{first[:4]}{number}"
