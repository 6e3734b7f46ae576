"""The ticker's command line: mint access tokens for a server that requires them.

Every failure is one line on stderr and a non-zero exit, never a usage dump or a
traceback, as in the simulator's CLI: ``main`` runs click in non-standalone mode and
prints each error itself.
"""

from __future__ import annotations

import sys
import time
from typing import NoReturn

import click

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
    """Run the CLI; print every error as one line."""
    try:
        code = cli.main(prog_name="python -m ticker", standalone_mode=False)
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
