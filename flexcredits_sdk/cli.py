"""The ``flexcredits`` command."""

from __future__ import annotations

import click

from .planning._plan_commands import register as _register_planning
from .server._wallet_commands import wallet
from .wallets._commands import register as _register_wallet_reading


@click.group()
@click.version_option(package_name="flexcredits-sdk")
def main() -> None:
    """Meter, simulate and forecast AI-agent credits."""


_register_planning(main)

_register_wallet_reading(wallet)
main.add_command(wallet)
