"""The ``flexcredits`` command."""

from __future__ import annotations

import click


@click.group()
@click.version_option(package_name="flexcredits-sdk")
def main() -> None:
    """Meter, simulate and forecast AI-agent credits."""
