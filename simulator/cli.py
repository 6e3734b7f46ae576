"""The simulator's command line: run a market, inject a price, list the symbols.

Every failure is one line on stderr and a non-zero exit, never a usage dump or a
traceback: ``main`` runs click in non-standalone mode and prints each error itself.
``inject`` and ``symbols`` are plain blocking clients of the feed socket; only ``run``
imports gevent and Faker, so the clients start fast.
"""

from __future__ import annotations

import logging
import math
import random
import secrets
import socket
import sys
import time
from typing import TYPE_CHECKING, NoReturn

import click
from click.core import ParameterSource

from simulator import wire
from simulator.address import (
    Address,
    AddressError,
    RedisAddress,
    UnixAddress,
    feed_from_env,
    secret_from_env,
)
from simulator.address import parse as parse_address

if TYPE_CHECKING:
    from simulator.exchange import Exchange

__all__ = ["cli", "main", "run_cli"]

MAX_RATE = 1_000_000.0
MAX_REPLAY_TICKS = 10_000_000
MAX_REPLAY_SECONDS = 7 * 24 * 3600.0
REPLY_TIMEOUT = 5.0  # seconds a client waits for the market's answer


class FeedAddress(click.ParamType):
    name = "ADDR"

    def convert(self, value, param, ctx) -> Address:
        if not isinstance(value, str):
            return value
        try:
            return parse_address(value)
        except AddressError as exc:
            self.fail(str(exc), param, ctx)


class Price(click.ParamType):
    """A finite positive number; ``-5``, ``0``, ``nan`` and ``inf`` are refused."""

    name = "PRICE"

    def convert(self, value, param, ctx) -> float:
        try:
            return wire.positive_price(float(value))
        except ValueError as exc:  # WireError is a ValueError too
            reason = str(exc) if isinstance(exc, wire.WireError) else f"not a number: {value!r}"
            self.fail(reason, param, ctx)


feed_option = click.option(
    "--feed", type=FeedAddress(), default=feed_from_env, metavar="ADDR",
    show_default="$TICKER_FEED, else a per-user socket in the temp dir",
    help="Where the market publishes: unix:PATH, tcp://HOST:PORT or redis://HOST:PORT/DB.",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """A fake stock market that publishes ticks on a socket.

    \b
    Start a market, then talk to it from another terminal:
      python -m simulator run --seed 1
      python -m simulator symbols
      python -m simulator inject ZIMM 123.45
    """


@cli.command()
@feed_option
@click.option("--symbols", default="50", show_default=True, metavar="N|A,B,C",
              help="How many companies to list (up to 10,000), or exactly which symbols.")
@click.option("--rate", type=float, default=20.0, show_default=True, metavar="TICKS_PER_S",
              help="Ticks per second across the whole market, on average.")
@click.option("--seed", type=int, default=None,
              help="Replay a market: same seed, same companies and same ticks. [default: random]")
@click.option("--state", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="Go on with the market saved in FILE, if any; save it there on stop.")
@click.option("--replay-ticks", type=int, default=50_000, show_default=True, metavar="N",
              help="Recent ticks kept for replay requests, at most.")
@click.option("--replay-seconds", type=float, default=1800.0, show_default=True, metavar="S",
              help="Age past which a tick is no longer kept for replay requests.")
def run(feed: Address, symbols: str, rate: float, seed: int | None, state: str | None,
        replay_ticks: int, replay_seconds: float) -> None:
    """Start the market and publish its ticks until SIGINT or SIGTERM.

    Subscribers connect to ADDR and get newline-delimited JSON: a hello, a snapshot of
    the latest quotes, then every tick (docs/feed-protocol.md). Logs go to stderr.
    With --state, a market saved in FILE goes on with the same epoch, seq, companies,
    prices and replay (FILE wins over --symbols and --seed; --rate, if given, applies).

    \b
    Example:
      python -m simulator run --symbols AAPL,MSFT,GOOG --rate 100 --seed 7
      python -m simulator run --state market.json
    """
    if isinstance(feed, RedisAddress):
        from gevent import monkey

        monkey.patch_all()  # before redis is imported: its I/O must yield to the pump
    from simulator import lifecycle, listener, universe
    from simulator import state as saved_state

    given = click.get_current_context().get_parameter_source
    try:
        spec = universe.parse_spec(symbols)
    except universe.UniverseError as exc:
        _fail(str(exc))
    if not (0 < rate <= MAX_RATE and math.isfinite(rate)):
        _fail(f"--rate must be above 0 and at most {MAX_RATE:.0f}, not {rate:g}")
    if not 0 <= replay_ticks <= MAX_REPLAY_TICKS:
        _fail(f"--replay-ticks must be between 0 and {MAX_REPLAY_TICKS}, not {replay_ticks}")
    if not (0 < replay_seconds <= MAX_REPLAY_SECONDS and math.isfinite(replay_seconds)):
        _fail(f"--replay-seconds must be above 0 and at most {MAX_REPLAY_SECONDS:.0f}, "
              f"not {replay_seconds:g}")
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s simulator: %(message)s")
    bounds = {"max_ticks": replay_ticks, "max_age_ms": round(replay_seconds * 1000)}
    restored = None
    if state is not None:
        try:
            restored = saved_state.load(
                state, rate=rate if given("rate") is ParameterSource.COMMANDLINE else None,
                **bounds,
            )
        except saved_state.StateError as exc:
            _fail(str(exc))
    if restored is None:
        seed = secrets.randbelow(1_000_000) if seed is None else seed
        exchange = _fresh_exchange(spec, seed, rate, bounds)
    else:
        exchange, saved_seed = restored
        _say_if_overruled(state, exchange, saved_seed, spec if given("symbols") is
                          ParameterSource.COMMANDLINE else None, seed)
        seed = saved_seed
    if isinstance(feed, RedisAddress):
        import redis

        from simulator import redis_feed

        try:
            redis_feed.serve(exchange, feed.url, seed)
        except redis.RedisError as exc:
            _fail(f"cannot publish on {feed}: {exc}")
    else:
        try:
            lifecycle.serve(exchange, feed, seed, secret_from_env())
        except listener.FeedError as exc:
            _fail(str(exc))
    if state is not None:
        try:
            saved_state.save(state, exchange, seed)
        except saved_state.StateError as exc:
            _fail(str(exc))


def _fresh_exchange(spec: int | tuple[str, ...], seed: int, rate: float,
                    bounds: dict) -> Exchange:
    from simulator import model, universe
    from simulator.exchange import Exchange
    from simulator.replay import Replay

    companies = universe.create(spec, seed)
    market = model.Market(companies, random.Random(seed), rate=rate,
                          ts=time.time_ns() // 1_000_000)
    return Exchange(market, companies, Replay(**bounds, seq=market.seq))


def _say_if_overruled(path: str, exchange: Exchange, saved_seed: int,
                      spec: int | tuple[str, ...] | None, seed: int | None) -> None:
    """One log line when --symbols or --seed say otherwise than the saved market."""
    symbols = [company.symbol for company in exchange.universe]
    overruled = []
    if spec is not None and spec != (len(symbols) if isinstance(spec, int) else tuple(symbols)):
        overruled.append("--symbols")
    if seed is not None and seed != saved_seed:
        overruled.append("--seed")
    if overruled:
        logging.getLogger("simulator").info(
            "%s differ from the market saved in %s: the saved market wins (%d symbols, seed %d)",
            " and ".join(overruled), path, len(symbols), saved_seed)


@cli.command(context_settings={"ignore_unknown_options": True})
@click.argument("symbol")
@click.argument("price", type=Price())
@feed_option
def inject(symbol: str, price: float, feed: Address) -> None:
    """Set SYMBOL's price in the running market; its walk goes on from there.

    Prints the resulting quote as one line of JSON.

    \b
    Example:
      python -m simulator inject ZIMM 123.45
    """
    answer = _request(feed, {"op": "inject", "symbol": symbol.upper(), "price": price})
    quote = answer.get("quote")
    if not isinstance(quote, dict):
        _fail(f"the market at {feed} sent a reply with no quote")
    click.echo(wire.encode(quote).decode().rstrip("\n"))


@cli.command()
@feed_option
def symbols(feed: Address) -> None:
    """List the running market's symbols: symbol, company name, sector.

    \b
    Example:
      python -m simulator symbols --feed tcp://127.0.0.1:7001
    """
    listed = _request(feed, {"op": "symbols"}).get("universe")
    if not isinstance(listed, list) or not all(isinstance(entry, dict) for entry in listed):
        _fail(f"the market at {feed} sent a reply with no symbols")
    rows = [(str(e.get("symbol", "")), str(e.get("name", "")), str(e.get("sector", "")))
            for e in listed]
    widths = [max((len(row[i]) for row in rows), default=0) for i in range(2)]
    for symbol, name, sector in rows:
        click.echo(f"{symbol:<{widths[0]}}  {name:<{widths[1]}}  {sector}".rstrip())


def _request(address: Address, request: dict) -> dict:
    """Send one request to the market and return its reply, skipping the ticks before it;
    a reply listing the universe comes back whole, its ``universe`` pieces read too."""
    if isinstance(address, RedisAddress):
        return _redis_request(address, request)
    try:
        if isinstance(address, UnixAddress):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(REPLY_TIMEOUT)
            sock.connect(address.path)
        else:
            sock = socket.create_connection((address.host, address.port), REPLY_TIMEOUT)
    except (FileNotFoundError, ConnectionRefusedError):
        _fail(f"no market running at {address}")
    except OSError as exc:
        _fail(f"cannot reach the market at {address}: {exc.strerror or exc}")
    deadline = time.monotonic() + REPLY_TIMEOUT
    decoder = wire.Decoder()
    reply, pieces = None, 0  # the reply once it came; universe pieces still to come
    with sock:
        try:
            secret = secret_from_env()
            sock.sendall((wire.encode(wire.auth(secret)) if secret else b"")
                         + wire.encode({**request, "id": 1}))
            while (left := deadline - time.monotonic()) > 0:
                sock.settimeout(left)
                data = sock.recv(1 << 16)
                if not data:
                    _fail(f"the market at {address} closed the connection before replying")
                for item in decoder.feed(data):
                    if not isinstance(item, dict) or item.get("id") != 1:
                        continue
                    if item.get("type") == "error":
                        _fail(str(item.get("error")))
                    if reply is None:
                        reply = item
                        pieces = wire.missing(item, "universe") if "universe" in item else 0
                    elif item.get("type") == "universe":
                        more = item.get("universe")
                        if not isinstance(more, list) or not more:
                            raise wire.WireError("a universe piece lists nothing")
                        reply["universe"].extend(more)
                        pieces -= len(more)
                    if pieces <= 0:
                        return reply
        except TimeoutError:
            pass
        except wire.WireError as exc:
            _fail(f"the market at {address} sent a bad reply: {exc}")
        except OSError as exc:
            _fail(f"lost the market at {address}: {exc.strerror or exc}")
    _fail(f"no reply from the market at {address} within {REPLY_TIMEOUT:g} s")


def _redis_request(address: RedisAddress, request: dict) -> dict:
    import redis

    from simulator import redis_feed

    try:
        reply = redis_feed.request(address.url, request, REPLY_TIMEOUT)
    except LookupError as exc:
        _fail(str(exc))
    except redis.RedisError as exc:
        _fail(f"cannot reach redis at {address}: {exc}")
    if reply.get("type") == "error":
        _fail(str(reply.get("error")))
    return reply


def _fail(reason: str) -> NoReturn:
    raise click.ClickException(reason)


def main() -> None:
    run_cli(cli, "python -m simulator")


def run_cli(group: click.Group, prog_name: str) -> NoReturn:
    """Run a click CLI and exit; every error is one line on stderr, never a usage dump."""
    try:
        code = group.main(prog_name=prog_name, standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as exc:
        exc.show()
        code = exc.exit_code
    except click.ClickException as exc:
        click.echo(f"error: {exc.format_message()}", err=True)
        code = exc.exit_code
    except click.Abort:
        click.echo("error: interrupted", err=True)
        code = 130
    sys.exit(code or 0)
