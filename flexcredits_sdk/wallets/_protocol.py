"""What a wallet is: the questions every wallet answers, and what a meter hands it."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterator, Mapping, Sequence
from decimal import Decimal
from typing import Any, Protocol, runtime_checkable

from .._exceptions import ConfigurationError
from .._models import Balance, GrantInfo, UsageRow
from .._records import UsageRecord
from .._usage import Bucket

__all__ = ["Sink", "Wallet", "check_sink"]


@runtime_checkable
class Sink(Protocol):
    """Where a meter delivers finished records: the one entry point is `submit`.

    For every action the meter calls, on the caller's thread::

        hold = sink.authorize(action, credits, tags) if sink.authorizes else None
        ... the action's body runs ...
        sink.submit(record, hold)

    ``submit`` runs once per action, so it must be cheap and must not block on I/O. The
    offline wallet, `HttpWallet`, `AsyncHttpWallet` and the exporter behind them are sinks;
    any object with these members can be one.
    """

    @property
    def authorizes(self) -> bool:
        """Whether the meter must call `authorize` before each action's body runs."""

    def authorize(self, action: str, credits: int | Decimal, tags: Mapping[str, str]) -> Any:
        """Reserve `credits` for an action about to run and return the hold, or raise
        `ActionRefused` (`InsufficientCredits`, `BudgetExceeded`) to refuse it."""

    def submit(self, record: UsageRecord, hold: Any = None, /) -> None:
        """Take one finished record, and the hold `authorize` returned for it (or ``None``)."""

    def flush(self, timeout: float | None = None) -> bool:
        """Deliver what is pending; return whether everything was delivered in time."""

    def shutdown(self, timeout: float | None = None) -> bool:
        """Flush and release resources; return whether everything was delivered in time."""


#: The members every `Sink` has, checked when a meter is given one.
_SINK_MEMBERS = ("authorizes", "authorize", "submit", "flush", "shutdown")


def check_sink(sink: Any, field: str = "wallet") -> Sink:
    """Return `sink` if it has every member of `Sink`.

    Raises:
        ConfigurationError: A member is missing (named in the message) or not callable.
    """
    for member in _SINK_MEMBERS:
        if not hasattr(type(sink), member) and not hasattr(sink, member):
            raise ConfigurationError(
                field, sink, f"must be a Sink: it has no {member!r} (see flexcredits_sdk.Sink)"
            )
        if member != "authorizes" and not callable(getattr(sink, member)):
            raise ConfigurationError(field, sink, f"must be a Sink: {member!r} is not callable")
    return sink  # type: ignore[no-any-return]


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
        cursor: str | None = None,
        limit: int | None = None,
    ) -> Iterator[UsageRecord]:
        """Iterate over booked records in time order (start time, then id), from `cursor`."""
