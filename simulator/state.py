"""A market's state on disk, so that a restarted market goes on exactly where it stopped.

The file is newline-delimited JSON, like the feed. Its first line is a header:
``{"type":"market-state","version":1,"epoch":...,"seed":...,"rate":...,"universe":[...],
"model":{...},"ticks":K}``, where ``universe`` lists each company with the parameters of
its walk and ``model`` is ``Market.state()`` (seq, clock, random generator, every stock's
exact price and quote). Then come the K ticks of the replay, oldest first, exactly the
lines the market published, then one line ``{"type":"candles","symbol":...,"candles":[...]}``
per symbol with candles (``"candles":C`` in the header counts them; absent, none). A file
is written whole or not at all: into a temporary file beside it, flushed to disk, then
renamed over it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import time
from pathlib import Path

from simulator import wire
from simulator.exchange import Exchange
from simulator.model import Market
from simulator.replay import Replay
from simulator.universe import MAX_SYMBOLS, Company

__all__ = ["VERSION", "StateError", "load", "save"]

VERSION = 1

log = logging.getLogger("simulator")


class StateError(Exception):
    """A state file that cannot be read or written; the text is a one-line reason."""


def save(path: str | os.PathLike, exchange: Exchange, seed: int) -> None:
    """Write ``exchange``'s state to ``path`` atomically.

    Raises:
        StateError: the file cannot be written.
    """
    market, replay = exchange.market, exchange.replay
    candles = [wire.encode({"type": "candles", "symbol": symbol, "candles": rows})
               for symbol, rows in exchange.candles.saved()]
    header = {
        "type": "market-state", "version": VERSION, "epoch": exchange.epoch, "seed": seed,
        "rate": market.rate, "universe": [dataclasses.asdict(c) for c in exchange.universe],
        "model": market.state(), "ticks": len(replay),
        "candles": len(candles),
    }
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as file:
            file.write(json.dumps(header, separators=(",", ":"), allow_nan=False).encode())
            file.write(b"\n")
            file.writelines(line for _, line in replay.entries())
            file.writelines(candles)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    except OSError as exc:
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)
        raise StateError(f"cannot save the market to {path}: {exc.strerror or exc}") from None
    log.info("saved epoch %s at seq %d to %s, %d ticks of replay", exchange.epoch, market.seq,
             path, len(replay))


def load(path: str | os.PathLike, *, rate: float | None, max_ticks: int,
         max_age_ms: int) -> tuple[Exchange, int] | None:
    """The market saved at ``path`` and its seed, or None if there is no such file.

    Args:
        rate: the rate to go on at; None keeps the saved one.
        max_ticks, max_age_ms: the replay's bounds, applied to the saved ticks as well.

    Raises:
        StateError: the file cannot be read, or is not a market state.
    """
    try:
        with open(path, "rb") as file:
            header_line = file.readline()
            lines = file.readlines()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateError(f"cannot read the market state {path}: {exc.strerror or exc}") from None
    try:
        exchange, seed = _restore(header_line, lines, rate, max_ticks, max_age_ms)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, RecursionError) as exc:
        reason = str(exc) if isinstance(exc, _Corrupt) else f"{type(exc).__name__}: {exc}"
        raise StateError(f"{path} is not a market state: {reason[:200]}") from None
    log.info("resumed epoch %s at seq %d from %s, %d ticks of replay", exchange.epoch,
             exchange.market.seq, path, len(exchange.replay))
    return exchange, seed


class _Corrupt(ValueError):
    """What is wrong with a state file, said plainly."""


def _restore(header_line: bytes, lines: list[bytes], rate: float | None, max_ticks: int,
             max_age_ms: int) -> tuple[Exchange, int]:
    header = json.loads(header_line)
    if header.get("type") != "market-state" or header.get("version") != VERSION:
        raise _Corrupt(f"not a version {VERSION} market state")
    epoch, seed = header["epoch"], header["seed"]
    if not isinstance(epoch, str) or not epoch.isalnum() or not isinstance(seed, int):
        raise _Corrupt("bad epoch or seed")
    universe = [Company(**company) for company in header["universe"]]
    if not 1 <= len(universe) <= MAX_SYMBOLS or not all(
        wire.SYMBOL_RE.match(company.symbol) for company in universe
    ):
        raise _Corrupt("bad universe")
    market = Market.restore(universe, header["model"],
                            rate=header["rate"] if rate is None else rate)
    candles = lines[header["ticks"]:]
    lines = lines[:header["ticks"]]
    if len(lines) != header["ticks"] or len(candles) != header.get("candles", 0):
        raise _Corrupt(f"{header['ticks']} ticks and {header.get('candles', 0)} candle lines "
                       f"announced, {len(lines) + len(candles)} lines found")
    replay = Replay(max_ticks, max_age_ms, market.seq - len(lines))
    for line in lines:
        tick = json.loads(line)
        if not line.endswith(b"\n") or tick.get("type") != "tick":
            raise _Corrupt("a replay line is not a tick")
        quote = wire.parse_quote(tick)
        if quote["seq"] != replay.seq + 1:
            raise _Corrupt(f"replay tick {quote['seq']} out of order")
        replay.extend(quote["seq"], [line], quote["ts"])
    if replay.seq != market.seq:
        raise _Corrupt("the replay does not end at the market's seq")
    replay.trim(time.time_ns() // 1_000_000)
    exchange = Exchange(market, universe, replay, epoch)
    for line in candles:
        saved = json.loads(line)
        if saved.get("type") != "candles":
            raise _Corrupt("a candles line is not candles")
        exchange.candles.restore(saved["symbol"], saved["candles"])
    return exchange, seed

