"""What a wallet is: the questions every wallet answers, and what a meter hands it."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any, Protocol, runtime_checkable

from .._models import Balance, GrantInfo, UsageRow
from .._records import UsageRecord
from .._usage import Bucket

__all__ = ["Sink", "Wallet"]


@runtime_checkable
class Sink(Protocol):
    """Where a meter delivers finished records.

    ``submit`` runs on the caller's thread for every action, so it must be cheap and must not
    block on I/O. A sink that can refuse actions before they run also has a true
    ``needs_authorization`` attribute and an ``authorize`` method.

    A sink may also have a ``submit_new(fields, hold=None, /)`` method. The meter then calls it
    instead of ``submit`` for every record whose id it made itself (not one set with
    `Action.set_id`), with the record's fields as a plain tuple in `UsageRecord` order
    (``UsageRecord._make(fields)`` is the record): such an id is new by construction, so the
    sink may skip its duplicate check, and the tuple is cheaper to make than the record.
    """

    needs_authorization: bool

    def submit(self, record: UsageRecord, hold: Any = None, /) -> None:
        """Take one finished record (and the hold `authorize` returned for it, if any)."""

    def authorize(self, action: str, credits: int | Decimal, tags: Mapping[str, str]) -> Any:
        """Reserve credits for an action about to run, or raise `ActionRefused`."""

    def flush(self, timeout: float | None = None) -> bool:
        """Deliver what is pending; return whether everything was delivered in time."""

    def shutdown(self, timeout: float | None = None) -> bool:
        """Flush and release resources; return whether everything was delivered in time."""


@runtime_checkable
class Wallet(Sink, Protocol):
    """A Digital Wallet: balances, grants and usage, answered the same way by every wallet."""

    def balance(self) -> Balance:
        """Return the current balance."""

    def grant(
        self,
        credits: int | Decimal,
        *,
        source: str = "grant",
        expires_at: _dt.datetime | None = None,
        priority: int = 1,
    ) -> GrantInfo:
        """Add credits."""

    def grants(self) -> list[GrantInfo]:
        """Return every grant with what is left of it."""

    def usage(
        self,
        group_by: Sequence[str] = (),
        *,
        environment: str | None = None,
        since: _dt.datetime | None = None,
        until: _dt.datetime | None = None,
        bucket: Bucket | None = None,
    ) -> list[UsageRow]:
        """Return usage grouped by record fields, tags and time buckets."""

    def records(
        self,
        *,
        action: str | None = None,
        tags: Mapping[str, str] | None = None,
        environment: str | None = None,
        conversation_id: str | None = None,
        since: _dt.datetime | None = None,
        until: _dt.datetime | None = None,
        limit: int | None = None,
    ) -> list[UsageRecord]:
        """Return booked records, oldest first."""
