"""Holds on the service: credits reserved for actions about to run, in the tenant's ledger.

A hold is a row of the ``holds`` table and, while it is active, a reservation in the tenant's
`Ledger` (its credits overall and in each hard budget it matched). Both change in the one
transaction that locks the tenant's row (`change_ledger`), so they always agree:

* taking a hold asks `Ledger.authorize`, which refuses it when the balance less other holds
  (overdraft denied) or a hard budget it matches cannot cover it;
* a record booked with ``hold_id`` gives its credits back from the hold as the ledger debits
  them (`settle`), so a reservation is never counted twice;
* ``DELETE`` (`release`) or the hold's expiry (`sweep`) gives back what is left.

Every function here runs inside that transaction, with the ledger already loaded.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .._exceptions import BudgetExceeded, InsufficientCredits
from .._ledger import Hold, Ledger
from .._models import BudgetInfo, HoldInfo
from .._records import ns_to_datetime
from ._schema import from_nano, holds, refusals, to_nano

__all__ = [
    "HoldConflict",
    "Refused",
    "active",
    "due_tenants",
    "hold_info",
    "refusal_counts",
    "release",
    "settle",
    "sweep",
    "take",
    "unknown",
]

_ACTIVE = "active"


class HoldConflict(Exception):
    """A hold with this id exists with other credits or tags."""

    def __init__(self, hold: HoldInfo) -> None:
        self.hold = hold
        super().__init__(hold.id)


@dataclass(frozen=True)
class Refused:
    """A hold the ledger refused, with the figures the answer carries."""

    code: str  # insufficient_credits or budget_exceeded
    message: str
    credits: int | Any
    available: int | Any
    held: int | Any
    budget: BudgetInfo | None


def hold_info(row: Any) -> HoldInfo:
    """Return the `HoldInfo` of a ``holds`` row."""
    return HoldInfo(
        id=row.id,
        credits=from_nano(row.nano_credits),
        remaining=from_nano(row.nano_remaining),
        tags=json.loads(row.tags),
        budgets=json.loads(row.budgets),
        status=row.status,
        created_at=ns_to_datetime(row.created_ns),
        expires_at=ns_to_datetime(row.expires_ns),
    )


def _reservation(row: Any) -> Hold:
    """The ledger's view of an active hold's row: what it still reserves, and where."""
    return Hold(from_nano(row.nano_remaining), tuple(json.loads(row.budgets)))


def _count_refusal(conn: Connection, tenant_id: int, scope: str, nano: int, now_ns: int) -> None:
    # The tenant's row is locked by the caller: no other transaction counts for it meanwhile.
    key = (refusals.c.tenant_id == tenant_id) & (refusals.c.scope == scope)
    done = conn.execute(
        sa.update(refusals)
        .where(key)
        .values(
            count=refusals.c.count + 1,
            nano_credits=refusals.c.nano_credits + nano,
            last_ns=now_ns,
        )
    )
    if not done.rowcount:
        conn.execute(
            sa.insert(refusals).values(
                tenant_id=tenant_id, scope=scope, count=1, nano_credits=nano, last_ns=now_ns
            )
        )


def take(
    conn: Connection,
    tenant_id: int,
    ledger: Ledger,
    *,
    hold_id: str,
    credits: int | Any,
    tags: Mapping[str, str],
    ttl_ns: int,
    now_ns: int,
) -> tuple[HoldInfo, bool] | Refused:
    """Reserve `credits` for actions carrying `tags` until ``now_ns + ttl_ns``.

    Returns:
        The hold and whether it is new (``False``: the same request came before), or why the
        ledger refused it (counted in ``refusals``).

    Raises:
        HoldConflict: A hold with this id exists with other credits or tags.
    """
    row = conn.execute(
        sa.select(holds).where(holds.c.tenant_id == tenant_id, holds.c.id == hold_id)
    ).first()
    if row is not None:
        info = hold_info(row)
        if info.credits != credits or info.tags != dict(tags):
            raise HoldConflict(info)
        return info, False
    sweep(conn, tenant_id, ledger, now_ns)
    try:
        reserved = ledger.authorize("hold", credits, tags, now_ns)
    except InsufficientCredits as exc:
        _count_refusal(conn, tenant_id, "balance", to_nano(credits), now_ns)
        return Refused(
            "insufficient_credits",
            f"{credits} credits asked, but the balance less active holds is {exc.balance} "
            f"(holds reserve {ledger.held}) and the tenant denies overdraft",
            credits,
            ledger.room(tags, now_ns) or 0,
            ledger.held,
            None,
        )
    except BudgetExceeded as exc:
        budget = exc.budget.info()
        _count_refusal(conn, tenant_id, budget.id, to_nano(credits), now_ns)
        left = budget.limit - exc.spent
        return Refused(
            "budget_exceeded",
            f"{credits} credits asked, but hard budget {budget.id!r} ({budget.name}) has {left} "
            f"of {budget.limit} left this period (holds reserve {exc.budget.held} of it)",
            credits,
            ledger.room(tags, now_ns) or 0,
            ledger.held,
            budget,
        )
    values = {
        "tenant_id": tenant_id,
        "id": hold_id,
        "nano_credits": to_nano(credits),
        "nano_remaining": to_nano(credits),
        "tags": json.dumps(dict(tags), sort_keys=True),
        "budgets": json.dumps(list(reserved.budgets)),
        "status": _ACTIVE,
        "created_ns": now_ns,
        "expires_ns": now_ns + ttl_ns,
    }
    conn.execute(sa.insert(holds).values(**values))
    return hold_info(SimpleNamespace(**values)), True


def release(
    conn: Connection, tenant_id: int, ledger: Ledger, hold_id: str, now_ns: int
) -> HoldInfo | None:
    """Give back what an active hold still reserves; return the hold (``None``: no such hold).

    Releasing a hold that is no longer active changes nothing.
    """
    row = conn.execute(
        sa.select(holds).where(holds.c.tenant_id == tenant_id, holds.c.id == hold_id)
    ).first()
    if row is None:
        return None
    if row.status == _ACTIVE:
        status = "expired" if row.expires_ns <= now_ns else "released"
        ledger.release(_reservation(row))
        conn.execute(
            sa.update(holds)
            .where(holds.c.tenant_id == tenant_id, holds.c.id == hold_id)
            .values(status=status, nano_remaining=0)
        )
        row = conn.execute(
            sa.select(holds).where(holds.c.tenant_id == tenant_id, holds.c.id == hold_id)
        ).one()
    return hold_info(row)


def sweep(conn: Connection, tenant_id: int, ledger: Ledger, now_ns: int) -> int:
    """Give back what the tenant's expired holds still reserve; return how many expired."""
    due = conn.execute(
        sa.select(holds.c.id, holds.c.nano_remaining, holds.c.budgets).where(
            holds.c.tenant_id == tenant_id,
            holds.c.status == _ACTIVE,
            holds.c.expires_ns <= now_ns,
        )
    ).all()
    if not due:
        return 0
    for row in due:
        ledger.release(_reservation(row))
    conn.execute(
        sa.update(holds)
        .where(holds.c.tenant_id == tenant_id, holds.c.id.in_([row.id for row in due]))
        .values(status="expired", nano_remaining=0)
    )
    return len(due)


def settle(
    conn: Connection,
    tenant_id: int,
    ledger: Ledger,
    charges: Iterable[tuple[str, int | Any]],
) -> None:
    """Give back, from each active hold, the credits of the records booked against it.

    `charges` are ``(hold id, credits)`` of records about to be debited. A hold gives back at
    most what it still reserves; a record that costs more is debited beyond it (when the
    client's price is below the service's). A hold that is no longer active gives nothing.
    """
    totals: dict[str, int | Any] = {}
    for hold_id, credits in charges:
        totals[hold_id] = totals.get(hold_id, 0) + credits
    if not totals:
        return
    rows = conn.execute(
        sa.select(holds.c.id, holds.c.nano_remaining, holds.c.budgets).where(
            holds.c.tenant_id == tenant_id,
            holds.c.id.in_(list(totals)),
            holds.c.status == _ACTIVE,
        )
    ).all()
    for row in rows:
        given = ledger.release(_reservation(row), totals[row.id])
        conn.execute(
            sa.update(holds)
            .where(holds.c.tenant_id == tenant_id, holds.c.id == row.id)
            .values(nano_remaining=row.nano_remaining - to_nano(given))
        )


def unknown(conn: Connection, tenant_id: int, hold_ids: Iterable[str]) -> set[str]:
    """Return those of `hold_ids` that name no hold of the tenant."""
    wanted = set(hold_ids)
    if not wanted:
        return set()
    known = conn.execute(
        sa.select(holds.c.id).where(holds.c.tenant_id == tenant_id, holds.c.id.in_(wanted))
    ).scalars()
    return wanted - set(known)


def active(conn: Connection, tenant_id: int, now_ns: int) -> list[HoldInfo]:
    """Return the tenant's active, unexpired holds, oldest first."""
    rows = conn.execute(
        sa.select(holds)
        .where(
            holds.c.tenant_id == tenant_id,
            holds.c.status == _ACTIVE,
            holds.c.expires_ns > now_ns,
        )
        .order_by(holds.c.created_ns, holds.c.id)
    ).all()
    return [hold_info(row) for row in rows]


def due_tenants(conn: Connection, now_ns: int) -> list[int]:
    """Return the tenants that have active holds past their expiry."""
    return list(
        conn.execute(
            sa.select(holds.c.tenant_id)
            .where(holds.c.status == _ACTIVE, holds.c.expires_ns <= now_ns)
            .distinct()
        ).scalars()
    )


def refusal_counts(conn: Connection, tenant_id: int) -> dict[str, tuple[int, int | Any]]:
    """Return, by scope (``balance`` or a budget id), how many holds were refused and the
    credits they asked for."""
    rows = conn.execute(
        sa.select(refusals.c.scope, refusals.c.count, refusals.c.nano_credits).where(
            refusals.c.tenant_id == tenant_id
        )
    ).all()
    return {scope: (count, from_nano(nano)) for scope, count, nano in rows}
