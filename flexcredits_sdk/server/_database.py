"""The wallet service's storage: tenants, keys, records and ledgers, on SQLite or PostgreSQL.

Every method is one transaction. Every method that takes a ``tenant_id`` reads or writes only
that tenant's rows: the id comes from the caller's authenticated key, never from a request.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .._exceptions import ConfigurationError
from .._ledger import Ledger, Overdraft, Period, zone_of
from .._models import Alert, Balance, BudgetInfo, GrantInfo, HoldInfo, UsageRow
from .._pricing import RateCard, to_exact
from .._records import UsageRecord, ns_to_datetime
from .._usage import Bucket
from . import _holds
from ._budgets import BudgetEntry, nest
from ._db import WRITE, make_engine
from ._insert import insert_records
from ._keys import KEY_PREFIX, digest, new_key
from ._ledgers import LedgerCache, change_ledger, read_ledger
from ._queries import RecordQuery, select_records, usage
from ._rate_cards import RateCardStore
from ._schema import alerts, api_keys, holds, migrate, tenants

__all__ = ["Tenant", "WalletStore"]


#: What a tenant's name may be (it appears in URLs and logs).
_TENANT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


@dataclass(frozen=True, slots=True)
class Tenant:
    """An authenticated caller's tenant."""

    id: int
    name: str


def _now() -> int:
    return time.time_ns()


class WalletStore:
    """Tenants, keys, records and ledgers in one database.

    Args:
        db: A SQLite file path or a ``postgresql://`` URL.
        rate_card: Prices credits in money in balances and reports, and prices the records
            of tenants that have no rate card of their own.
        clock: Returns the current Unix time in nanoseconds.
    """

    def __init__(
        self,
        db: str,
        *,
        rate_card: RateCard | None = None,
        clock: Callable[[], int] = _now,
    ) -> None:
        self.engine = make_engine(db)
        self.rate_card = rate_card or RateCard.agentforce()
        self.clock = clock
        self._cache = LedgerCache()
        #: The tenants' rate cards, which price every record the service books.
        self.cards = RateCardStore(self.engine, self.rate_card, lambda: self.clock())

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self.engine.dialect.name

    def migrate(self) -> int:
        """Bring the schema up to date; return its version."""
        return migrate(self.engine)

    def ping(self) -> None:
        """Run a trivial query (raises when the database cannot be reached)."""
        with self.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))

    def close(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()

    @contextlib.contextmanager
    def _write(self) -> Iterator[tuple[Connection, list[Callable[[], None]]]]:
        after: list[Callable[[], None]] = []
        with self.engine.connect().execution_options(**WRITE) as conn, conn.begin():
            yield conn, after
        for callback in after:
            callback()

    def _read(self) -> contextlib.AbstractContextManager[Connection]:
        return self.engine.begin()

    # --- tenants and keys ---------------------------------------------------------------------

    def create_tenant(
        self, name: str, *, overdraft: Overdraft = "allow", time_zone: str = "UTC"
    ) -> str:
        """Create a tenant; return its first API key (the only time it is shown).

        Args:
            name: The tenant's name.
            overdraft: ``"allow"`` or ``"deny"`` (see `Ledger`).
            time_zone: The IANA time zone whose midnights and 1sts of the month start the
                tenant's day and month budget periods.

        Raises:
            ConfigurationError: The name is malformed or taken, or `overdraft` or `time_zone`
                is wrong.
        """
        if not isinstance(name, str) or not _TENANT_NAME.fullmatch(name):
            raise ConfigurationError(
                "name", name, "must be 1 to 64 letters, digits, '_', '.' or '-', not first"
            )
        ledger = Ledger(self.rate_card, overdraft=overdraft, time_zone=time_zone)
        now = self.clock()
        with self._write() as (conn, _):
            if conn.execute(sa.select(tenants.c.id).where(tenants.c.name == name)).first():
                raise ConfigurationError("name", name, "a tenant with this name exists")
            tenant_id = conn.execute(
                sa.insert(tenants)
                .values(
                    name=name,
                    created_ns=now,
                    ledger=json.dumps(ledger.to_state()),
                    version=1,
                    time_zone=time_zone,
                )
                .returning(tenants.c.id)
            ).scalar_one()
            return self._add_key(conn, tenant_id, now)

    def new_key(self, name: str) -> str:
        """Add an API key to the tenant `name`; return it (the only time it is shown).

        Raises:
            ConfigurationError: No tenant has that name.
        """
        with self._write() as (conn, _):
            return self._add_key(conn, self._tenant_id(conn, name), self.clock())

    def revoke_keys(self, name: str) -> int:
        """Revoke every key of tenant `name`; return how many were revoked."""
        with self._write() as (conn, _):
            tenant_id = self._tenant_id(conn, name)
            result = conn.execute(
                sa.update(api_keys)
                .where(api_keys.c.tenant_id == tenant_id, api_keys.c.revoked.is_(False))
                .values(revoked=True)
            )
            return int(result.rowcount)

    def set_time_zone(self, name: str, time_zone: str) -> None:
        """Start tenant `name`'s day and month budget periods in `time_zone` from now on.

        Each budget's current period ends when it would have; the next starts in the new zone.

        Raises:
            ConfigurationError: No tenant has that name, or `time_zone` is not an IANA name.
        """
        zone_of(time_zone)
        with self._write() as (conn, after):
            tenant_id = self._tenant_id(conn, name)
            conn.execute(
                sa.update(tenants).where(tenants.c.id == tenant_id).values(time_zone=time_zone)
            )

            def change(ledger: Ledger) -> tuple[None, list[Alert]]:
                ledger.time_zone = time_zone
                return None, []

            change_ledger(conn, tenant_id, self._cache, self.rate_card, change, after)

    def time_zone(self, name: str) -> str:
        """Return tenant `name`'s time zone.

        Raises:
            ConfigurationError: No tenant has that name.
        """
        with self._read() as conn:
            found = conn.execute(
                sa.select(tenants.c.time_zone).where(tenants.c.name == name)
            ).scalar()
        if found is None:
            raise ConfigurationError("tenant", name, "no such tenant")
        return str(found)

    def _add_key(self, conn: Connection, tenant_id: int, now: int) -> str:
        key = new_key()
        conn.execute(
            sa.insert(api_keys).values(
                tenant_id=tenant_id,
                digest=digest(key),
                prefix=key[: len(KEY_PREFIX) + 6],
                created_ns=now,
                revoked=False,
            )
        )
        return key

    def _tenant_id(self, conn: Connection, name: str) -> int:
        found = conn.execute(sa.select(tenants.c.id).where(tenants.c.name == name)).scalar()
        if found is None:
            raise ConfigurationError("tenant", name, "no such tenant")
        return int(found)

    def tenant(self, name: str) -> Tenant:
        """Return the tenant called `name`.

        Raises:
            ConfigurationError: No tenant has that name.
        """
        with self._read() as conn:
            return Tenant(self._tenant_id(conn, name), name)

    def tenants(self) -> list[str]:
        """Return every tenant's name, alphabetically."""
        with self._read() as conn:
            return list(conn.execute(sa.select(tenants.c.name).order_by(tenants.c.name)).scalars())

    def authenticate(self, key: str) -> Tenant | None:
        """Return the tenant whose live key `key` is, or ``None``."""
        if not key.startswith(KEY_PREFIX):
            return None
        with self._read() as conn:
            row = conn.execute(
                sa.select(tenants.c.id, tenants.c.name)
                .join(api_keys, api_keys.c.tenant_id == tenants.c.id)
                .where(api_keys.c.digest == digest(key), api_keys.c.revoked.is_(False))
            ).first()
        return None if row is None else Tenant(row.id, row.name)

    # --- the ledger ---------------------------------------------------------------------------

    def _change(self, tenant_id: int, change: Callable[[Ledger], tuple[Any, list[Alert]]]) -> Any:
        with self._write() as (conn, after):
            return change_ledger(conn, tenant_id, self._cache, self.rate_card, change, after)

    def _ask(self, tenant_id: int, read: Callable[[Ledger], Any]) -> Any:
        with self._read() as conn:
            return read_ledger(conn, tenant_id, self._cache, self.rate_card, read)

    def balance(self, tenant_id: int) -> Balance:
        """Return the tenant's balance now."""
        now = self.clock()
        result: Balance = self._ask(tenant_id, lambda ledger: ledger.balance(now))
        return result

    def grants(self, tenant_id: int) -> list[GrantInfo]:
        """Return the tenant's grants, oldest first."""
        now = self.clock()
        result: list[GrantInfo] = self._ask(tenant_id, lambda ledger: ledger.grants(now))
        return result

    def budgets(self, tenant_id: int) -> list[BudgetEntry]:
        """Return the tenant's budgets with their spending and holds this period, and parents."""
        now = self.clock()
        result: list[BudgetEntry] = self._ask(
            tenant_id, lambda ledger: nest(ledger.budgets(now), ledger.budget_holds())
        )
        return result

    def grant(
        self,
        tenant_id: int,
        credits: int | Decimal,
        *,
        source: str = "grant",
        priority: int = 1,
        expires_ns: int | None = None,
    ) -> GrantInfo:
        """Add a grant to the tenant's wallet.

        Raises:
            ConfigurationError: `expires_ns` is not in the future (the grant would be void).
        """
        now = self.clock()
        if expires_ns is not None and expires_ns <= now:
            when = ns_to_datetime(expires_ns).isoformat()
            raise ConfigurationError("expires_at", when, "must be in the future")

        def change(ledger: Ledger) -> tuple[GrantInfo, list[Alert]]:
            return ledger.grant(
                credits, now_ns=now, source=source, priority=priority, expires_ns=expires_ns
            )

        result: GrantInfo = self._change(tenant_id, change)
        return result

    def add_budget(
        self,
        tenant_id: int,
        credits: int | Decimal,
        *,
        tags: dict[str, str],
        period: Period | None,
        hard: bool,
        name: str | None,
    ) -> tuple[BudgetInfo, bool]:
        """Add a budget unless one with the same tags and period exists.

        Returns:
            The new budget and ``True``; or the existing budget, unchanged, and ``False``.
        """
        now = self.clock()

        def change(ledger: Ledger) -> tuple[tuple[BudgetInfo, bool], list[Alert]]:
            for existing in ledger.budgets(now):
                if existing.tags == tags and existing.period == period:
                    return (existing, False), []
            info = ledger.set_budget(
                credits, now_ns=now, tags=tags, period=period, hard=hard, name=name
            )
            return (info, True), []

        result: tuple[BudgetInfo, bool] = self._change(tenant_id, change)
        return result

    def update_budget(
        self,
        tenant_id: int,
        budget_id: str,
        credits: int | Decimal,
        *,
        hard: bool | None = None,
        name: str | None = None,
    ) -> BudgetInfo | None:
        """Change a budget's limit, and its hardness and name when given; keep its spending.

        Returns:
            The changed budget, or ``None`` when the tenant has no budget `budget_id`.
        """
        now = self.clock()

        def change(ledger: Ledger) -> tuple[BudgetInfo | None, list[Alert]]:
            for old in ledger.budgets(now):
                if old.id == budget_id:
                    info = ledger.set_budget(
                        credits,
                        now_ns=now,
                        tags=old.tags,
                        period=old.period,
                        hard=old.hard if hard is None else hard,
                        name=name or old.name,
                    )
                    return info, []
            return None, []

        result: BudgetInfo | None = self._change(tenant_id, change)
        return result

    def watch_low_balance(
        self, tenant_id: int, *, credits: int | Decimal | None, percent: Decimal | None
    ) -> str:
        """Add a low-balance watch; return its id."""
        now = self.clock()

        def change(ledger: Ledger) -> tuple[str, list[Alert]]:
            return ledger.watch_low_balance(credits=credits, percent=percent, now_ns=now), []

        result: str = self._change(tenant_id, change)
        return result

    def balances(self) -> list[tuple[str, Balance]]:
        """Return every tenant's name and balance now, by name."""
        now = self.clock()
        with self._read() as conn:
            rows = conn.execute(
                sa.select(tenants.c.id, tenants.c.name).order_by(tenants.c.name)
            ).all()
            return [
                (
                    row.name,
                    read_ledger(
                        conn,
                        row.id,
                        self._cache,
                        self.rate_card,
                        lambda ledger: ledger.balance(now),
                    ),
                )
                for row in rows
            ]

    # --- holds --------------------------------------------------------------------------------

    def spend_control(self, tenant_id: int) -> tuple[Overdraft, list[BudgetInfo]]:
        """Return the tenant's overdraft policy and its hard budgets."""
        now = self.clock()

        def read(ledger: Ledger) -> tuple[Overdraft, list[BudgetInfo]]:
            return ledger.overdraft, [b for b in ledger.budgets(now) if b.hard]

        result: tuple[Overdraft, list[BudgetInfo]] = self._ask(tenant_id, read)
        return result

    def take_hold(
        self,
        tenant_id: int,
        *,
        hold_id: str,
        credits: int | Decimal,
        tags: dict[str, str],
        ttl_ns: int,
    ) -> tuple[HoldInfo, bool] | _holds.Refused:
        """Reserve credits for actions carrying `tags` (see `_holds.take`).

        Raises:
            HoldConflict: A hold with this id exists with other credits or tags.
        """
        now = self.clock()
        with self._write() as (conn, after):

            def change(ledger: Ledger) -> tuple[Any, list[Alert]]:
                taken = _holds.take(
                    conn,
                    tenant_id,
                    ledger,
                    hold_id=hold_id,
                    credits=credits,
                    tags=tags,
                    ttl_ns=ttl_ns,
                    now_ns=now,
                )
                return taken, []

            result: tuple[HoldInfo, bool] | _holds.Refused = change_ledger(
                conn, tenant_id, self._cache, self.rate_card, change, after
            )
            return result

    def release_hold(self, tenant_id: int, hold_id: str) -> HoldInfo | None:
        """Give back what a hold still reserves; return it (``None``: the tenant has none)."""
        now = self.clock()
        with self._write() as (conn, after):

            def change(ledger: Ledger) -> tuple[HoldInfo | None, list[Alert]]:
                return _holds.release(conn, tenant_id, ledger, hold_id, now), []

            result: HoldInfo | None = change_ledger(
                conn, tenant_id, self._cache, self.rate_card, change, after
            )
            return result

    def hold(self, tenant_id: int, hold_id: str) -> HoldInfo | None:
        """Return one of the tenant's holds, whatever its status (``None``: no such hold)."""
        with self._read() as conn:
            row = conn.execute(
                sa.select(holds).where(holds.c.tenant_id == tenant_id, holds.c.id == hold_id)
            ).first()
        return None if row is None else _holds.hold_info(row)

    def holds(self, tenant_id: int) -> list[HoldInfo]:
        """Return the tenant's active holds, oldest first."""
        now = self.clock()
        with self._read() as conn:
            return _holds.active(conn, tenant_id, now)

    def refusals(self, tenant_id: int) -> dict[str, tuple[int, int | Decimal]]:
        """Return the holds refused, by ``balance`` or budget id: how many, and their credits."""
        with self._read() as conn:
            return _holds.refusal_counts(conn, tenant_id)

    def sweep_holds(self) -> int:
        """Give back what every tenant's expired holds still reserve; return how many."""
        now = self.clock()
        with self._read() as conn:
            due = _holds.due_tenants(conn, now)
        swept = 0
        for tenant_id in due:
            with self._write() as (conn, after):

                def change(ledger: Ledger) -> tuple[int, list[Alert]]:
                    return _holds.sweep(conn, tenant_id, ledger, now), []  # noqa: B023

                swept += change_ledger(conn, tenant_id, self._cache, self.rate_card, change, after)
        return swept

    def unknown_holds(self, tenant_id: int, hold_ids: set[str]) -> set[str]:
        """Return those of `hold_ids` that name no hold of the tenant."""
        with self._read() as conn:
            return _holds.unknown(conn, tenant_id, hold_ids)

    # --- ingestion ----------------------------------------------------------------------------

    def ingest(
        self,
        tenant_id: int,
        batch: Sequence[UsageRecord],
        hold_ids: Mapping[str, str] | None = None,
    ) -> set[str]:
        """Book each record of `batch` whose id the tenant has not booked; return their ids.

        The batch is one transaction: its new records are stored and charged together, or
        (on any error) not at all. `hold_ids` names, by record id, the hold a record settles
        against: its credits come out of that hold's reservation as they are debited.
        """
        now = self.clock()
        with self._write() as (conn, after):
            # Rows go in before the tenant's row is locked: concurrent batches insert in
            # parallel, and only the ledger's update is serialised.
            inserted = insert_records(conn, tenant_id, batch)
            if inserted:
                fresh = set(inserted)
                added = []
                for r in batch:  # an id repeated within the batch is booked once
                    if r.id in fresh:
                        fresh.discard(r.id)
                        added.append(r)
                held = hold_ids or {}
                charges = [(held[r.id], r.credits) for r in added if r.id in held]

                def change(ledger: Ledger) -> tuple[None, list[Alert]]:
                    if charges:
                        _holds.sweep(conn, tenant_id, ledger, now)
                        _holds.settle(conn, tenant_id, ledger, charges)
                    return None, ledger.book_many(added, now)

                change_ledger(conn, tenant_id, self._cache, self.rate_card, change, after)
        return inserted

    # --- reports ------------------------------------------------------------------------------

    def usage(
        self,
        tenant_id: int,
        group_by: Sequence[str] = (),
        *,
        environment: str | None = None,
        since_ns: int | None = None,
        until_ns: int | None = None,
        bucket: Bucket | None = None,
    ) -> list[UsageRow]:
        """Return the tenant's usage grouped by record fields or tag keys (see `usage`)."""
        with self._read() as conn:
            return usage(
                conn,
                tenant_id,
                self.rate_card,
                group_by,
                environment=environment,
                since_ns=since_ns,
                until_ns=until_ns,
                bucket=bucket,
            )

    def records(self, tenant_id: int, query: RecordQuery) -> list[UsageRecord]:
        """Return the tenant's records that `query` selects, oldest first."""
        with self._read() as conn:
            return select_records(conn, tenant_id, query)

    # --- alerts -------------------------------------------------------------------------------

    def alerts(self, tenant_id: int, limit: int = 100) -> list[Alert]:
        """Return the tenant's latest alerts, newest first."""
        with self._read() as conn:
            rows = conn.execute(
                sa.select(alerts)
                .where(alerts.c.tenant_id == tenant_id)
                .order_by(alerts.c.id.desc())
                .limit(limit)
            ).all()
        return [
            Alert(
                kind=row.kind,
                message=row.message,
                threshold=to_exact(row.threshold),
                value=to_exact(row.value),
                budget_id=row.budget_id,
                watch_id=row.watch_id,
                at=ns_to_datetime(row.at_ns),
            )
            for row in rows
        ]

    def set_webhook(self, tenant_id: int, url: str | None, secret: str | None) -> None:
        """Set (or with ``None``, remove) the tenant's webhook."""
        with self._write() as (conn, _):
            conn.execute(
                sa.update(tenants)
                .where(tenants.c.id == tenant_id)
                .values(webhook_url=url, webhook_secret=secret)
            )
