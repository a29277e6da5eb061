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
from decimal import Decimal
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from .._exceptions import ConfigurationError
from .._pricing import to_exact
from .._records import datetime_to_ns, ns_to_datetime
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
            http="flexcredits_sdk.server._protocol:NoDelayHTTPProtocol",
        )


@wallet.command("create-tenant")
@_db_option
@click.argument("name")
@click.option("--overdraft", type=click.Choice(["allow", "deny"]), default="allow")
@click.option(
    "--time-zone",
    default="UTC",
    show_default=True,
    help="The IANA time zone in which day and month budget periods start.",
)
def create_tenant(db: str | None, name: str, overdraft: str, time_zone: str) -> None:
    """Create a tenant and print its API key (shown this once)."""
    store = _store(db, create=True)
    try:
        key = store.create_tenant(name, overdraft=overdraft, time_zone=time_zone)
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


@wallet.group("rate-card")
def rate_card() -> None:
    """Set or show a tenant's rate card, which prices every record the service books."""


def _when(value: str | None, option: str) -> int | None:
    """Return an ISO 8601 time (UTC when it names no offset) in Unix nanoseconds."""
    if value is None:
        return None
    try:
        when = _dt.datetime.fromisoformat(value.strip())
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not an ISO 8601 time, e.g. 2026-07-01T00:00:00Z", param_hint=option
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=_dt.UTC)
    ns = datetime_to_ns(when)
    if not 0 <= ns < 2**63:
        raise click.BadParameter(f"{value!r} is not between 1970 and 2262", param_hint=option)
    return ns


@rate_card.command("set")
@_db_option
@click.argument("tenant")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--effective-from",
    default=None,
    help="When the card comes into force: an ISO 8601 time, UTC unless it says; now by default.",
)
def rate_card_set(db: str | None, tenant: str, file: Path, effective_from: str | None) -> None:
    """Price TENANT's records from FILE (.json or .toml) from --effective-from on."""
    from .._pricing import RateCard
    from ._rate_cards import check_storable

    start = _when(effective_from, "--effective-from")
    try:
        card = check_storable(RateCard.load(file))
    except ConfigurationError as exc:
        raise click.BadParameter(str(exc), param_hint="FILE") from None
    except OSError as exc:
        raise click.BadParameter(f"{file}: {exc.strerror or exc}", param_hint="FILE") from None
    store = _store(db, create=False)
    try:
        version = store.cards.put(store.tenant(tenant).id, card, start)
    except ConfigurationError as exc:
        raise click.BadParameter(str(exc)) from None
    finally:
        store.close()
    assert version.effective_ns is not None
    since = ns_to_datetime(version.effective_ns).isoformat()
    click.echo(f"rate card {card.name!r} prices {tenant}'s records that start from {since}")


@rate_card.command("show")
@_db_option
@click.argument("tenant")
@click.option("--at", default=None, help="The time whose card to show (ISO 8601); now by default.")
def rate_card_show(db: str | None, tenant: str, at: str | None) -> None:
    """Print the rate card in force for TENANT (JSON, as 'rate-card set' reads it)."""
    when = _when(at, "--at")
    store = _store(db, create=False)
    try:
        tenant_id = store.tenant(tenant).id
        version = store.cards.at(tenant_id, when)
    except ConfigurationError as exc:
        raise click.BadParameter(str(exc)) from None
    finally:
        store.close()

    def shown(ns: int | None) -> str:
        return "-" if ns is None else ns_to_datetime(ns).isoformat()

    if version.default:
        note = f"the default card (no card of {tenant}'s in force)"
    else:
        note = f"in force from {shown(version.effective_ns)}"
    if version.until_ns is not None:
        note += f" until {shown(version.until_ns)}"
    click.echo(f"rate card of {tenant}: {version.card.name!r}, {note}", err=True)
    click.echo(version.card.dumps("json"), nl=False)


@wallet.command("time-zone")
@_db_option
@click.argument("name")
@click.argument("zone", required=False)
def time_zone(db: str | None, name: str, zone: str | None) -> None:
    """Print tenant NAME's time zone, or set it to ZONE (an IANA name, e.g. Europe/Paris).

    Day and month budget periods start at midnight and on the 1st in that zone; a new zone
    applies from each budget's next period.
    """
    store = _store(db, create=False)
    try:
        if zone is not None:
            store.set_time_zone(name, zone)
        click.echo(store.time_zone(name))
    except ConfigurationError as exc:
        raise click.BadParameter(str(exc)) from None
    finally:
        store.close()


@wallet.group()
def budget() -> None:
    """Add, change or list a tenant's budgets (nested by tags; hard ones refuse holds)."""


def _tags(pairs: tuple[str, ...]) -> dict[str, str]:
    tags: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key or not value:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--tag")
        tags[key] = value
    return tags


def _credits(text: str) -> int | Decimal:
    try:
        amount = to_exact(text, "credits")
        if amount <= 0:
            raise ConfigurationError("credits", text, "must be positive")
    except ConfigurationError as exc:
        raise click.BadParameter(str(exc), param_hint="CREDITS") from None
    return amount


def _show(info: Any) -> str:
    tags = ", ".join(f"{k}={v}" for k, v in sorted(info.tags.items())) or "all actions"
    kind = "hard" if info.hard else "soft"
    per = f"per {info.period}" if info.period else "in total"
    return f"{info.id}: {info.name!r} ({tags}) {kind}, {info.spent} of {info.limit} credits {per}"


@budget.command("add")
@_db_option
@click.argument("tenant")
@click.argument("credits")
@click.option("--tag", "tags", multiple=True, metavar="KEY=VALUE", help="Repeatable.")
@click.option(
    "--period", type=click.Choice(["day", "month", "none"]), default="month", show_default=True
)
@click.option("--hard", is_flag=True, help="Refuse holds that would go past the limit.")
@click.option("--name", default=None, help="A readable name (by default, from the tags).")
def budget_add(
    db: str | None,
    tenant: str,
    credits: str,
    tags: tuple[str, ...],
    period: str,
    hard: bool,
    name: str | None,
) -> None:
    """Add a budget of CREDITS per period on TENANT's actions that carry every --tag.

    A budget with the same tags and period is never replaced: change it with 'budget update'.
    """
    amount, wanted = _credits(credits), _tags(tags)
    store = _store(db, create=False)
    try:
        info, added = store.add_budget(
            store.tenant(tenant).id,
            amount,
            tags=wanted,
            period=None if period == "none" else period,
            hard=hard,
            name=name,
        )
    except ConfigurationError as exc:
        raise click.BadParameter(str(exc)) from None
    finally:
        store.close()
    if not added:
        raise click.ClickException(
            f"budget {info.id} has these tags and period; change it with "
            f"'flexcredits wallet budget update {tenant} {info.id} CREDITS'"
        )
    click.echo(_show(info))


@budget.command("update")
@_db_option
@click.argument("tenant")
@click.argument("budget_id")
@click.argument("credits")
@click.option("--hard/--soft", default=None, help="Make it hard or soft (kept by default).")
@click.option("--name", default=None, help="A new name (kept by default).")
def budget_update(
    db: str | None,
    tenant: str,
    budget_id: str,
    credits: str,
    hard: bool | None,
    name: str | None,
) -> None:
    """Set budget BUDGET_ID of TENANT to CREDITS, keeping what it spent this period."""
    amount = _credits(credits)
    store = _store(db, create=False)
    try:
        info = store.update_budget(store.tenant(tenant).id, budget_id, amount, hard=hard, name=name)
    except ConfigurationError as exc:
        raise click.BadParameter(str(exc)) from None
    finally:
        store.close()
    if info is None:
        raise click.BadParameter(f"{tenant} has no budget {budget_id!r}", param_hint="BUDGET_ID")
    click.echo(_show(info))


@budget.command("list")
@_db_option
@click.argument("tenant")
def budget_list(db: str | None, tenant: str) -> None:
    """List TENANT's budgets with their spending this period."""
    store = _store(db, create=False)
    try:
        found = store.budgets(store.tenant(tenant).id)
    except ConfigurationError as exc:
        raise click.BadParameter(str(exc)) from None
    finally:
        store.close()
    for info in found:
        click.echo(_show(info))
