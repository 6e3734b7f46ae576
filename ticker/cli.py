"""The ticker's command line: mint access tokens for a server that requires them.

Every failure is one line on stderr and a non-zero exit, never a usage dump or a
traceback: ``main`` runs click through the simulator's ``run_cli``, which prints each
error itself.
"""

from __future__ import annotations

import time
from pathlib import Path
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
@click.option("--key", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              metavar="PRIVATE.pem",
              help="Sign with this RSA or EC P-256 private key (RS256 or ES256) instead of "
                   "$TICKER_AUTH_SECRET (HS256).")
def token(symbols: str, ttl: int, key: Path | None) -> None:
    """Print a JWT granting SYMBOLS for SECONDS, signed with $TICKER_AUTH_SECRET or --key.

    Give it to a client as ?token=... or as Authorization: Bearer ... When
    $TICKER_AUTH_AUDIENCE is set, the token carries it as its audience.

    \b
    Example:
      python -m ticker token --symbols AAPL,MSFT --ttl 86400
      python -m ticker token --symbols '*' --key private.pem
    """
    try:
        config = Config.load()
    except ConfigError as exc:
        _fail(str(exc))
    signing_key = config.auth_secret if key is None else _private_key(key)
    if not signing_key:
        _fail("TICKER_AUTH_SECRET is not set and no --key is given, so there is nothing to "
              "sign with")
    granted = auth.ALL if symbols.strip() == auth.ALL else symbols.split(",")
    try:
        click.echo(auth.mint(signing_key, granted, int(time.time()) + ttl,
                             config.auth_audience or None))
    except auth.TokenError as exc:
        _fail(str(exc))


def _private_key(path: Path) -> auth.SigningKey:
    try:
        return auth.private_key(path.read_bytes())
    except OSError as exc:
        _fail(f"cannot read {path}: {exc.strerror or exc}")
    except auth.AuthKeyError as exc:
        _fail(f"{path}: {exc}")


def _fail(reason: str) -> NoReturn:
    raise click.ClickException(reason)


def main() -> None:
    run_cli(cli, "python -m ticker")
