"""The ``flexcredits`` console script: the command, or how to install it when click is missing.

It imports nothing but the standard library until click is known to be there, so a core-only
install answers ``flexcredits`` with the install command instead of a traceback.
"""

from __future__ import annotations

import sys

__all__ = ["main"]

#: What installs the ``flexcredits`` command.
CLI_INSTALL = "pip install 'flexcredits-sdk[cli]'"


def main() -> None:
    """Run the ``flexcredits`` command; without click, print how to install it and exit 1."""
    try:
        import click  # noqa: F401
    except ImportError:
        print(f"Error: the flexcredits command needs click: {CLI_INSTALL}", file=sys.stderr)
        raise SystemExit(1) from None
    from .cli import main as command

    command()
