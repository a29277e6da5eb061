"""Loading, changing and saving a tenant's `Ledger` inside a database transaction.

Every change to a tenant's ledger runs in one transaction that locks the tenant's row, so any
number of server processes on one database change it one at a time. Each process keeps the
ledger objects it last saved, keyed by the row's version: when the version in the database is
still the same, the object is reused instead of being rebuilt from its document.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .._ledger import Ledger
from .._models import Alert
from .._pricing import RateCard
from .._records import datetime_to_ns
from ._schema import alerts, deliveries, tenants
from ._webhooks import alert_body

__all__ = ["LedgerCache", "change_ledger", "read_ledger"]

T = TypeVar("T")


class LedgerCache:
    """Ledger objects by tenant, each owned by one thread at a time.

    A thread `take`s a ledger (removing it) and `put`s it back after using it, so two threads
    never touch one ledger object at once.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[int, tuple[int, Ledger]] = {}

    def take(self, tenant_id: int, version: int) -> Ledger | None:
        """Remove and return the tenant's ledger if it is at `version`."""
        with self._lock:
            entry = self._entries.get(tenant_id)
            if entry is None or entry[0] != version:
                return None
            del self._entries[tenant_id]
            return entry[1]

    def put(self, tenant_id: int, version: int, ledger: Ledger) -> None:
        """Keep `ledger` as the tenant's ledger at `version`, unless a newer one is kept."""
        with self._lock:
            entry = self._entries.get(tenant_id)
            if entry is None or entry[0] <= version:
                self._entries[tenant_id] = (version, ledger)

    def clear(self) -> None:
        """Forget every ledger."""
        with self._lock:
            self._entries.clear()


def _load(
    conn: Connection, tenant_id: int, cache: LedgerCache, rate_card: RateCard, *, lock: bool
) -> tuple[int, Ledger]:
    query = sa.select(tenants.c.version).where(tenants.c.id == tenant_id)
    if lock:
        query = query.with_for_update()
    version = conn.execute(query).scalar_one()
    ledger = cache.take(tenant_id, version)
    if ledger is None:
        # Version and document in one read: at READ COMMITTED, two reads could see two versions.
        version, text = conn.execute(
            sa.select(tenants.c.version, tenants.c.ledger).where(tenants.c.id == tenant_id)
        ).one()
        ledger = Ledger.from_state(json.loads(text), rate_card)
    return version, ledger


def read_ledger(
    conn: Connection,
    tenant_id: int,
    cache: LedgerCache,
    rate_card: RateCard,
    read: Callable[[Ledger], T],
) -> T:
    """Return ``read(ledger)`` for the tenant's current ledger, without locking it."""
    version, ledger = _load(conn, tenant_id, cache, rate_card, lock=False)
    try:
        return read(ledger)
    finally:
        cache.put(tenant_id, version, ledger)


def change_ledger(
    conn: Connection,
    tenant_id: int,
    cache: LedgerCache,
    rate_card: RateCard,
    change: Callable[[Ledger], tuple[T, list[Alert]]],
    after_commit: list[Callable[[], None]],
) -> T:
    """Apply ``change(ledger)`` to the tenant's ledger and save it, in `conn`'s transaction.

    The tenant's row stays locked until the transaction ends. Alerts that the change fired are
    stored, with a webhook delivery each when the tenant has a webhook. The changed ledger is
    kept for reuse by a callback added to `after_commit`, which the caller runs once the
    transaction has committed; if it fails instead, the next use rebuilds the ledger.

    Returns:
        What `change` returned first.
    """
    version, ledger = _load(conn, tenant_id, cache, rate_card, lock=True)
    result, fired = change(ledger)
    ledger.alerts.clear()  # the alerts table keeps them: the document stays small
    new_version = version + 1
    conn.execute(
        sa.update(tenants)
        .where(tenants.c.id == tenant_id)
        .values(ledger=json.dumps(ledger.to_state()), version=new_version)
    )
    if fired:
        _store_alerts(conn, tenant_id, fired)
    after_commit.append(lambda: cache.put(tenant_id, new_version, ledger))
    return result


def _store_alerts(conn: Connection, tenant_id: int, fired: list[Alert]) -> None:
    url = conn.execute(sa.select(tenants.c.webhook_url).where(tenants.c.id == tenant_id)).scalar()
    for alert in fired:
        alert_id = conn.execute(
            sa.insert(alerts)
            .values(
                tenant_id=tenant_id,
                kind=alert.kind,
                message=alert.message,
                threshold=str(alert.threshold),
                value=str(alert.value),
                budget_id=alert.budget_id,
                watch_id=alert.watch_id,
                at_ns=datetime_to_ns(alert.at),
            )
            .returning(alerts.c.id)
        ).scalar_one()
        if url:
            conn.execute(
                sa.insert(deliveries).values(
                    tenant_id=tenant_id,
                    alert_id=alert_id,
                    url=url,
                    body=alert_body(alert_id, alert),
                    status="pending",
                    attempts=0,
                    due_ns=datetime_to_ns(alert.at),
                )
            )
