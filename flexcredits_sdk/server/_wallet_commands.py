"""``flexcredits wallet ...``: run the wallet service and manage its tenants.

Every command here works on one database: ``--db``, else ``$FLEXCREDITS_WALLET_DB``, else
`default_db` (the platform's data directory, whatever the working directory), and says on
standard error which one. Only ``serve`` and ``create-tenant`` create a database; the others
refuse one that does not exist.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import tempfile
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from .._exceptions import ConfigurationError
from .._pricing import to_exact
from .._records import datetime_to_ns
from ._config import ADMIN_KEY_VARIABLE, DB_VARIABLE, MULTIPROC_VARIABLE, ServerSettings

__all__ = ["wallet"]

_db_option = click.option(
    "--db",
    envvar=DB_VARIABLE,
    default=None,
    help=(
        f"A SQLite file or a postgresql:// URL (or ${DB_VARIABLE}); by default wallet.db in "
        "the platform's data directory, e.g. ~/.local/share/flexcredits/wallet.db."
    ),
)

_NEEDS_SERVER = "the wallet commands need the server extra: pip install 'flexcredits-sdk[server]'"


def _store(db: str | None, *, create: bool) -> Any:
    """Open (and migrate) the database of the current command; say on stderr which one it is.

    Args:
        db: The ``--db`` value (from the option or the environment), ``None`` for the default.
        create: Whether the command may create the database; one that only reads, or that
            needs an existing tenant, refuses a SQLite file that does not exist.

    Raises:
        click.ClickException: The database is missing, cannot be created or cannot be opened;
            one line naming where the database name came from and the database.
    """
    try:
        import sqlalchemy as sa

        from ._config import default_db
        from ._database import WalletStore
        from ._db import shown, sqlite_path
    except ImportError:
        raise click.ClickException(_NEEDS_SERVER) from None

    source = click.get_current_context().get_parameter_source("db")
    if db is None:
        db, origin, note = default_db(), "the default database", " (the default)"
    elif source is ParameterSource.ENVIRONMENT:
        origin, note = f"${DB_VARIABLE}", f" (from ${DB_VARIABLE})"
    else:
        origin, note = "--db", ""
    try:
        path, name = sqlite_path(db), shown(db)
    except ConfigurationError as exc:
        raise click.ClickException(f"{origin} {db!r}: {exc.reason}") from None
    click.echo(f"wallet database: {name}{note}", err=True)
    if path is not None:
        _check_file(path, origin, create=create, default=note == " (the default)")
    store = WalletStore(db)
    try:
        store.migrate()
    except sa.exc.SQLAlchemyError as exc:
        store.close()
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise click.ClickException(f"{origin} {name}: cannot open the database: {reason}") from None
    return store


def _check_file(path: Path, origin: str, *, create: bool, default: bool) -> None:
    if path.is_dir():
        raise click.ClickException(f"{origin} {path}: is a directory, not a database file")
    if path.exists():
        return
    if not create:
        raise click.ClickException(
            f"{origin} {path}: no wallet database there (nothing was created); choose the "
            f"database with --db or ${DB_VARIABLE}, or create it with "
            "'flexcredits wallet create-tenant NAME'"
        )
    if default:
        path.parent.mkdir(parents=True, exist_ok=True)
    elif not path.parent.is_dir():
        raise click.ClickException(f"{origin} {path}: the directory {path.parent} does not exist")


@click.group()
def wallet() -> None:
    """Run the wallet service (the Digital Wallet that agents report to) and manage it."""


@wallet.command()
@_db_option
@click.option("--host", default="127.0.0.1", show_default=True, help="The address to listen on.")
@click.option("--port", default=8780, show_default=True, type=int, help="The port.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64))
@click.option("--fd", type=int, default=None, help="Serve on this already-bound socket.")
@click.option("--admin-key", envvar=ADMIN_KEY_VARIABLE, default=None, help="Admin key.")
@click.option("--log-level", default="INFO", show_default=True)
def serve(
    db: str | None,
    host: str,
    port: int,
    workers: int,
    fd: int | None,
    admin_key: str | None,
    log_level: str,
) -> None:
    """Serve the wallet over HTTP (see --db for where it keeps everything)."""
    try:
        import uvicorn
    except ImportError:
        raise click.ClickException(
            "install the server: pip install 'flexcredits-sdk[server]'"
        ) from None

    from ._logging import configure_logging

    try:
        settings = ServerSettings.from_env(db=db, admin_key=admin_key, log_level=log_level)
    except ConfigurationError as exc:
        raise click.BadParameter(str(exc)) from None
    _store(db, create=True).close()  # fail early, and migrate once, before any worker starts
    os.environ.update(settings.to_env())
    with contextlib.ExitStack() as stack:
        if workers > 1 and not os.environ.get(MULTIPROC_VARIABLE):
            # /metrics then sums the counters of every worker, whichever one answers.
            directory = stack.enter_context(tempfile.TemporaryDirectory(prefix="fc-metrics-"))
            os.environ[MULTIPROC_VARIABLE] = directory
        uvicorn.run(
            "flexcredits_sdk.server._app:app_from_env",
            factory=True,
            host=host,
            port=port,
            fd=fd,
            workers=workers,
            log_config=configure_logging(settings.log_level),
            access_log=False,
            timeout_graceful_shutdown=30,
        )


@wallet.command("create-tenant")
@_db_option
@click.argument("name")
@click.option("--overdraft", type=click.Choice(["allow", "deny"]), default="allow")
def create_tenant(db: str | None, name: str, overdraft: str) -> None:
    """Create a tenant and print its API key (shown this once)."""
    store = _store(db, create=True)
    try:
        key = store.create_tenant(name, overdraft=overdraft)
    except ConfigurationError as exc:
        raise click.BadParameter(str(exc)) from None
    finally:
        store.close()
    click.echo(f"tenant {name} created; its API key (shown only now):")
    click.echo(key)


@wallet.command("new-key")
@_db_option
@click.argument("name")
def new_key(db: str | None, name: str) -> None:
    """Print a new API key for tenant NAME (shown this once)."""
    store = _store(db, create=False)
    try:
        click.echo(store.new_key(name))
    except ConfigurationError as exc:
        raise click.BadParameter(str(exc)) from None
    finally:
        store.close()


@wallet.command("revoke-keys")
@_db_option
@click.argument("name")
def revoke_keys(db: str | None, name: str) -> None:
    """Revoke every API key of tenant NAME (servers stop accepting them within 10 seconds)."""
    store = _store(db, create=False)
    try:
        click.echo(f"revoked {store.revoke_keys(name)} key(s) of {name}")
    except ConfigurationError as exc:
        raise click.BadParameter(str(exc)) from None
    finally:
        store.close()


@wallet.command()
@_db_option
@click.argument("name")
@click.argument("credits")
@click.option("--source", default="grant", show_default=True, help="e.g. purchase, promotion.")
@click.option("--priority", default=1, show_default=True, type=int, help="Lower burns first.")
@click.option("--expires", type=click.DateTime(), default=None, help="UTC expiry date.")
def grant(
    db: str | None,
    name: str,
    credits: str,
    source: str,
    priority: int,
    expires: _dt.datetime | None,
) -> None:
    """Add CREDITS to tenant NAME's wallet."""
    try:
        amount = to_exact(credits, "credits")
        if amount <= 0:
            raise ConfigurationError("credits", credits, "must be positive")
    except ConfigurationError as exc:
        raise click.BadParameter(str(exc)) from None
    store = _store(db, create=False)
    try:
        expires_ns = None if expires is None else datetime_to_ns(expires.replace(tzinfo=_dt.UTC))
        info = store.grant(
            store.tenant(name).id,
            amount,
            source=source,
            priority=priority,
            expires_ns=expires_ns,
        )
        balance = store.balance(store.tenant(name).id)
    except ConfigurationError as exc:
        raise click.BadParameter(str(exc)) from None
    finally:
        store.close()
    click.echo(f"granted {info.credits} credits to {name} ({info.id}); balance {balance.credits}")


@wallet.command()
@_db_option
def tenants(db: str | None) -> None:
    """List the tenants."""
    store = _store(db, create=False)
    try:
        for name in store.tenants():
            click.echo(name)
    finally:
        store.close()
