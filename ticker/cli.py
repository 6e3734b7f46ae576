"""The ticker's command line: mint access tokens for a server that requires them.

Every failure is one line on stderr and a non-zero exit, never a usage dump or a
traceback: ``main`` runs click through the simulator's ``run_cli``, which prints each
error itself.
"""

from __future__ import annotations

import time
from typing import NoReturn

import click

from simulator.cli import run_cli
from ticker import auth
from ticker.config import Config, ConfigError

__all__ = ["cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Tools for the ticker web app."""


@cli.command()
@click.option("--symbols", required=True, metavar="A,B|*",
              help="The symbols the token grants, comma-separated, or * for every symbol.")
@click.option("--ttl", type=click.IntRange(min=1), default=3600, show_default=True,
              metavar="SECONDS", help="How long the token is valid.")
def token(symbols: str, ttl: int) -> None:
    """Print a token granting SYMBOLS for SECONDS, signed with $TICKER_AUTH_SECRET.

    Give it to a client as ?token=... or as Authorization: Bearer ...

    \b
    Example:
      python -m ticker token --symbols AAPL,MSFT --ttl 86400
    """
    try:
        secret = Config.load().auth_secret
    except ConfigError as exc:
        _fail(str(exc))
    if not secret:
        _fail("TICKER_AUTH_SECRET is not set, so there is no key to sign with")
    granted = auth.ALL if symbols.strip() == auth.ALL else symbols.split(",")
    try:
        click.echo(auth.mint(secret, granted, int(time.time()) + ttl))
    except auth.TokenError as exc:
        _fail(str(exc))


def _fail(reason: str) -> NoReturn:
    raise click.ClickException(reason)


def main() -> None:
    run_cli(cli, "python -m ticker")
