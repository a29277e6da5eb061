"""The persistent form of a `Ledger`: a JSON-ready document (`Ledger.dump` / `Ledger.load`).

The wallet service stores one document per tenant: each booking loads the tenant's ledger from it
(or reuses an in-process copy whose version matches the database), applies the ledger's own
operations, and writes the document back in the same transaction. Holds are per-process and
short-lived, so they are not part of the document. Amounts are written as decimal strings so
that no precision is lost.

The document mirrors the ledger's private fields, so a test pins the set of those fields: a
change to the ledger that this module does not know about fails that test.
"""

from __future__ import annotations

import bisect
import itertools
from decimal import Decimal
from typing import Any

from ._exceptions import ConfigurationError
from ._ledger import _NEVER, Ledger, _Budget, _Grant, _Watch
from ._pricing import RateCard

__all__ = ["dump_ledger", "load_ledger"]

#: The version of the document layout; a change of layout is a schema migration.
FORMAT = 1


def _amount(value: int | Decimal) -> str:
    return str(value)


def _exact(text: str) -> int | Decimal:
    """Return what `_amount` wrote, of the same type and representation."""
    return int(text) if text.lstrip("-").isdigit() else Decimal(text)


def _counters(ledger: Ledger) -> dict[str, int]:
    """Return the next value of each of the ledger's id sequences, leaving them unchanged."""
    found = {}
    for name, value in vars(ledger).items():
        if isinstance(value, itertools.count):
            found[name] = next(value)
            setattr(ledger, name, itertools.count(found[name]))
    return found


def dump_ledger(ledger: Ledger) -> dict[str, Any]:
    """Return `ledger`'s state (without alerts and holds) as JSON-ready data."""
    return {
        "format": FORMAT,
        "overdraft": ledger.overdraft,
        "counters": _counters(ledger),
        "granted": _amount(ledger._granted),
        "used": _amount(ledger._used),
        "expired": _amount(ledger._expired),
        "owed": _amount(ledger._owed),
        "available": _amount(ledger._available),
        "active_granted": _amount(ledger._active_granted),
        "grants": [
            [
                g.id,
                _amount(g.credits),
                _amount(g.remaining),
                g.source,
                g.priority,
                None if g.expires_ns == _NEVER else g.expires_ns,
                g.granted_ns,
                g.seq,
                g.expired,
            ]
            for g in ledger._grants
        ],
        "budgets": [
            {
                "id": b.id,
                "name": b.name,
                "limit": _amount(b.limit),
                "tags": b.tags,
                "period": b.period,
                "hard": b.hard,
                "spent": _amount(b.spent),
                "period_start": b.period_start,
                "period_end": None if b.period_end == _NEVER else b.period_end,
                "alerted": b.alerted,
            }
            for b in ledger._budgets
        ],
        "watches": [
            {
                "id": w.id,
                "credits": None if w.credits is None else _amount(w.credits),
                "percent": None if w.percent is None else str(w.percent),
                "fired": w.fired,
            }
            for w in ledger._watches
        ],
    }


def load_ledger(data: dict[str, Any], rate_card: RateCard) -> Ledger:
    """Rebuild the `Ledger` that `dump_ledger` described.

    Raises:
        ConfigurationError: The document has an unknown format.
    """
    if data.get("format") != FORMAT:
        raise ConfigurationError("format", data.get("format"), f"must be {FORMAT}")
    ledger = Ledger(rate_card, overdraft=data["overdraft"])
    for name, value in data["counters"].items():
        setattr(ledger, name, itertools.count(value))
    ledger._granted = _exact(data["granted"])
    ledger._used = _exact(data["used"])
    ledger._expired = _exact(data["expired"])
    ledger._owed = _exact(data["owed"])
    for gid, credits, remaining, source, priority, expires, granted, seq, expired in data["grants"]:
        g = _Grant(
            id=gid,
            credits=_exact(credits),
            remaining=_exact(remaining),
            source=source,
            priority=priority,
            expires_ns=_NEVER if expires is None else expires,
            granted_ns=granted,
            seq=seq,
            expired=expired,
        )
        ledger._grants.append(g)
        if expired:
            continue
        ledger._active_granted += g.credits
        ledger._next_expiry = min(ledger._next_expiry, g.expires_ns)
        if g.remaining:
            ledger._available += g.remaining
            index = bisect.bisect(ledger._active_keys, g.burn_key)
            ledger._active_keys.insert(index, g.burn_key)
            ledger._active.insert(index, g)
    for b in data["budgets"]:
        ledger._budgets.append(
            _Budget(
                id=b["id"],
                name=b["name"],
                limit=_exact(b["limit"]),
                tags=b["tags"],
                period=b["period"],
                hard=b["hard"],
                spent=_exact(b["spent"]),
                period_start=b["period_start"],
                period_end=_NEVER if b["period_end"] is None else b["period_end"],
                alerted=b["alerted"],
            )
        )
    ledger._available = _exact(data["available"])  # the sums above, as the ledger wrote them
    ledger._active_granted = _exact(data["active_granted"])
    ledger._hard_budgets = any(b.hard for b in ledger._budgets)
    for w in data["watches"]:
        ledger._watches.append(
            _Watch(
                id=w["id"],
                credits=None if w["credits"] is None else _exact(w["credits"]),
                percent=None if w["percent"] is None else Decimal(w["percent"]),
                fired=w["fired"],
            )
        )
    return ledger
