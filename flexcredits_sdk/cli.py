"""The ``flexcredits`` command.

Every failure of every subcommand ends as one line on stderr and exit code 1 (a usage error
exits 2, as click decides); ``flexcredits --debug ...`` shows the traceback as well. A missing
optional dependency names the extra that installs it.
"""

from __future__ import annotations

import traceback
from typing import Any

import click

from ._exceptions import FlexCreditsError
from .planning._plan_commands import register as _register_planning
from .server._wallet_commands import wallet
from .wallets._commands import register as _register_wallet_reading

__all__ = ["main"]

#: The extra that installs each optional top-level module a command may import.
EXTRAS = {
    "click": "cli",
    "fastapi": "server",
    "orjson": "planning",
    "psycopg": "server",
    "sqlalchemy": "server",
    "starlette": "server",
    "uvicorn": "server",
}
_DEBUG = "flexcredits.debug"
_LONGEST = 300


def install_hint(module: str) -> str | None:
    """Return the ``pip install`` line for the extra that provides `module`, if one does."""
    extra = EXTRAS.get(module.partition(".")[0])
    return None if extra is None else f"pip install 'flexcredits-sdk[{extra}]'"


def failure_text(exc: Exception) -> str:
    """Return the one line that tells a person what went wrong."""
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        hint = install_hint(exc.name)
        if hint is not None:
            return (
                f"this command needs {exc.name.partition('.')[0]}, which is not installed: {hint}"
            )
    if isinstance(exc, FlexCreditsError):
        return _first_line(str(exc))
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.filename}: {exc.strerror or exc}"
    cause = getattr(exc, "orig", None)  # the database driver's error that SQLAlchemy wraps
    text = _first_line(str(cause if isinstance(cause, BaseException) else exc))
    kind = type(cause if isinstance(cause, BaseException) else exc).__name__
    return f"{text or kind} ({kind}; flexcredits --debug ... shows the traceback)"


def _first_line(text: str) -> str:
    lines = text.strip().splitlines()
    line = lines[0] if lines else ""
    return line if len(line) <= _LONGEST else line[: _LONGEST - 3] + "..."


class _OneLineErrors(click.Group):
    """A group whose subcommands, at any depth, fail in one line (with ``--debug``, a trace)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.Abort):
            raise
        except click.ClickException as exc:
            if ctx.meta.get(_DEBUG) and exc.__context__ is not None:
                traceback.print_exception(exc.__context__)
            raise
        except Exception as exc:
            if ctx.meta.get(_DEBUG):
                raise
            raise click.ClickException(failure_text(exc)) from exc


@click.group(cls=_OneLineErrors)
@click.version_option(package_name="flexcredits-sdk")
@click.option("--debug", is_flag=True, help="Show the traceback of a failure.")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """Meter, simulate and forecast AI-agent credits."""
    ctx.meta[_DEBUG] = debug


_register_planning(main)

_register_wallet_reading(wallet)
main.add_command(wallet)
