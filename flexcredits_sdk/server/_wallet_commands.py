"""``flexcredits wallet ...``: run the wallet service and manage its tenants."""

from __future__ import annotations

import datetime as _dt
import os
from typing import Any

import click

from .._exceptions import ConfigurationError
from .._pricing import to_exact
from .._records import datetime_to_ns
from ._config import ADMIN_KEY_VARIABLE, DB_VARIABLE, DEFAULT_DB, ServerSettings

__all__ = ["wallet"]

_db_option = click.option(
    "--db",
    envvar=DB_VARIABLE,
    default=DEFAULT_DB,
    show_default=True,
    help=f"A SQLite file or a postgresql:// URL (or ${DB_VARIABLE}).",
)


def _store(db: str) -> Any:
    from ._database import WalletStore

    store = WalletStore(db)
    store.migrate()
    return store


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
    db: str,
    host: str,
    port: int,
    workers: int,
    fd: int | None,
    admin_key: str | None,
    log_level: str,
) -> None:
    """Serve the wallet over HTTP (SQLite in the working directory by default)."""
    try:
        import uvicorn
    except ImportError:
        raise click.ClickException(
            "install the server: pip install 'flexcredits-sdk[server]'"
        ) from None

    from ._logging import configure_logging

    try:
        settings = ServerSettings.from_env(db=db, admin_key=admin_key, log_level=log_level)
        _store(settings.db).close()  # fail early, and migrate once, before any worker starts
    except ConfigurationError as exc:
        raise click.BadParameter(str(exc)) from None
    os.environ.update(settings.to_env())
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
def create_tenant(db: str, name: str, overdraft: str) -> None:
    """Create a tenant and print its API key (shown this once)."""
    store = _store(db)
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
def new_key(db: str, name: str) -> None:
    """Print a new API key for tenant NAME (shown this once)."""
    store = _store(db)
    try:
        click.echo(store.new_key(name))
    except ConfigurationError as exc:
        raise click.BadParameter(str(exc)) from None
    finally:
        store.close()


@wallet.command("revoke-keys")
@_db_option
@click.argument("name")
def revoke_keys(db: str, name: str) -> None:
    """Revoke every API key of tenant NAME (servers stop accepting them within 10 seconds)."""
    store = _store(db)
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
    db: str,
    name: str,
    credits: str,
    source: str,
    priority: int,
    expires: _dt.datetime | None,
) -> None:
    """Add CREDITS to tenant NAME's wallet."""
    store = _store(db)
    try:
        amount = to_exact(credits, "credits")
        if amount <= 0:
            raise ConfigurationError("credits", credits, "must be positive")
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
def tenants(db: str) -> None:
    """List the tenants."""
    store = _store(db)
    try:
        for name in store.tenants():
            click.echo(name)
    finally:
        store.close()
