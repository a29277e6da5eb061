"""Each tenant's rate cards on the service, by the time each comes into force, and pricing.

A tenant's cards form a schedule: each version is in force from its ``effective_ns`` until the
next version's. Before a tenant's first card, and for a tenant with none, the default card
(`RateCard.agentforce()` unless the store was given another) is in force.

Pricing a batch looks the schedule up once: one small query for the versions' tags, and the
cards themselves only when that list changed since this process last read it (another process
or the command line may add a version at any time). Each record is then priced by the card in
force at its start time, with the price of each (card, action, type, environment) computed once
per batch.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from .._exceptions import ConfigurationError, RateCardError
from .._pricing import ModelUsage, RateCard
from .._records import UsageRecord
from ._db import WRITE
from ._schema import NANO, rate_cards

__all__ = [
    "CardVersion",
    "Pricer",
    "RateCardStore",
    "check_storable",
    "etag_of",
    "wire_credits",
]

#: Nano-credits must fit a signed 64-bit column.
_INT64 = 2**63


def etag_of(card: RateCard, effective_ns: int | None) -> str:
    """Return the entity tag of a card version (a hash of its content and start)."""
    text = f"{effective_ns}\n{card.dumps('json')}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def check_storable(card: RateCard) -> RateCard:
    """Return `card` if the service can book every price on it.

    Raises:
        RateCardError: A price has more than nine decimal places or is too large to store;
            the error names the price's path, e.g. ``action_types.standard.production``.
    """
    for table in ("action_types", "actions"):
        for key, prices in getattr(card, table).items():
            for environment, price in prices.items():
                field = f"{table}.{key}.{environment}"
                nano = price * NANO
                if nano >= _INT64:
                    raise RateCardError(field, price, "is too large to book (at most 9.2e9)")
                if isinstance(nano, Decimal) and nano != nano.to_integral_value():
                    raise RateCardError(field, price, "must have at most 9 decimal places")
    return card


@dataclass(frozen=True, slots=True)
class CardVersion:
    """A rate card and when it is in force (``None`` for the default card's open ends)."""

    card: RateCard
    effective_ns: int | None
    until_ns: int | None
    etag: str
    default: bool


class _Schedule:
    """One tenant's versions, oldest first, as read at one moment."""

    __slots__ = ("cards", "etags", "starts")

    def __init__(self, starts: list[int], cards: list[RateCard], etags: tuple[str, ...]) -> None:
        self.starts = starts
        self.cards = cards
        self.etags = etags


class RateCardStore:
    """Rate card versions in the wallet's database, with parsed cards cached per process.

    Args:
        engine: The wallet's database.
        default: The card in force where a tenant has none.
        clock: Returns the current Unix time in nanoseconds.
    """

    def __init__(self, engine: Engine, default: RateCard, clock: Callable[[], int]) -> None:
        self.engine = engine
        self.default = default
        self.default_etag = etag_of(default, None)
        self.clock = clock
        self._lock = threading.Lock()
        self._schedules: dict[int, _Schedule] = {}
        self._parsed: dict[str, RateCard] = {}  # by tag

    def put(self, tenant_id: int, card: RateCard, effective_ns: int | None = None) -> CardVersion:
        """Store `card` as the tenant's version from `effective_ns` (now when ``None``).

        A version with the same start replaces the earlier one.

        Raises:
            RateCardError: A price cannot be booked (see `check_storable`).
            ConfigurationError: `effective_ns` is outside 1970 to 2262.
        """
        check_storable(card)
        now = self.clock()
        start = now if effective_ns is None else effective_ns
        if not 0 <= start < _INT64:
            raise ConfigurationError("effective_from", start, "must be between 1970 and 2262")
        row = {
            "tenant_id": tenant_id,
            "effective_ns": start,
            "card": card.dumps("json"),
            "etag": etag_of(card, start),
            "created_ns": now,
        }
        same = (rate_cards.c.tenant_id == tenant_id, rate_cards.c.effective_ns == start)
        for attempt in (1, 2):
            try:
                with self.engine.connect().execution_options(**WRITE) as conn, conn.begin():
                    conn.execute(sa.delete(rate_cards).where(*same))
                    conn.execute(sa.insert(rate_cards).values(**row))
                break
            except sa.exc.IntegrityError:
                if attempt == 2:  # pragma: no cover - a third writer of the same start
                    raise
                # Another process stored a version with the same start meanwhile: replace it.
        return self.at(tenant_id, start)

    def _schedule(self, conn: Connection, tenant_id: int) -> _Schedule:
        query = (
            sa.select(rate_cards.c.id, rate_cards.c.effective_ns, rate_cards.c.etag)
            .where(rate_cards.c.tenant_id == tenant_id)
            .order_by(rate_cards.c.effective_ns)
        )
        rows = conn.execute(query).all()
        # Versions are known by their tags, which hash their content: a replaced version has a
        # new one, whatever id the database gives its row.
        tags = tuple(row.etag for row in rows)
        with self._lock:
            known = self._schedules.get(tenant_id)
            cards = [self._parsed.get(tag) for tag in tags]
        if known is not None and known.etags == tags:
            return known
        if any(card is None for card in cards):
            # Versions and cards in one statement: at READ COMMITTED, a second statement could
            # see a version replaced since the first.
            rows = conn.execute(query.add_columns(rate_cards.c.card)).all()
            tags = tuple(row.etag for row in rows)
            parsed = [RateCard(**json.loads(row.card)) for row in rows]
            with self._lock:
                if len(self._parsed) > 10_000:
                    self._parsed.clear()
                self._parsed.update(zip(tags, parsed, strict=True))
            cards = list(parsed)
        schedule = _Schedule(
            [row.effective_ns for row in rows], [card for card in cards if card is not None], tags
        )
        with self._lock:
            self._schedules[tenant_id] = schedule
        return schedule

    def schedule(self, tenant_id: int) -> _Schedule:
        """Return the tenant's versions as they are now (one query when they did not change)."""
        with self.engine.begin() as conn:
            return self._schedule(conn, tenant_id)

    def at(self, tenant_id: int, at_ns: int | None = None) -> CardVersion:
        """Return the tenant's card version in force at `at_ns` (now when ``None``)."""
        schedule = self.schedule(tenant_id)
        when = self.clock() if at_ns is None else at_ns
        index = bisect.bisect_right(schedule.starts, when) - 1
        until = schedule.starts[index + 1] if index + 1 < len(schedule.starts) else None
        if index < 0:
            return CardVersion(self.default, None, until, self.default_etag, True)
        return CardVersion(
            schedule.cards[index], schedule.starts[index], until, schedule.etags[index], False
        )

    def versions(self, tenant_id: int) -> Iterator[CardVersion]:
        """Yield every version of the tenant's, oldest first (the default card's not included)."""
        schedule = self.schedule(tenant_id)
        for index, start in enumerate(schedule.starts):
            until = schedule.starts[index + 1] if index + 1 < len(schedule.starts) else None
            yield CardVersion(schedule.cards[index], start, until, schedule.etags[index], False)

    def pricer(self, tenant_id: int) -> Pricer:
        """Return the pricing of one batch of the tenant's records."""
        return Pricer(self.schedule(tenant_id), self.default)


def _exact(value: int | Decimal) -> int | Decimal:
    if isinstance(value, Decimal) and value == value.to_integral_value():
        return int(value)
    return value


class Pricer:
    """Prices the records of one batch by the card in force at each record's start."""

    __slots__ = ("_cards", "_prices", "_single", "_starts")

    def __init__(self, schedule: _Schedule, default: RateCard) -> None:
        self._starts = schedule.starts
        self._cards = [default, *schedule.cards]
        # With no version, or one in force since before every record, one card prices all.
        self._single = not schedule.starts
        self._prices: dict[tuple[int, str, str, str], tuple[int | Decimal, bool] | str] = {}

    def _card_index(self, start_ns: int) -> int:
        if self._single:
            return 0
        return bisect.bisect_right(self._starts, start_ns)

    def price(self, record: UsageRecord) -> int | Decimal | str:
        """Return the credits the service books for `record`, or why it cannot price it."""
        index = self._card_index(record.start_time_ns)
        key = (index, record.action, record.action_type, record.environment)
        found = self._prices.get(key)
        if found is None:
            found = self._prices[key] = self._look_up(index, record)
        if isinstance(found, str):
            return found
        unit, bill_failed = found
        if record.outcome == "error" and not bill_failed:
            return 0
        credits = unit if record.units == 1 else _exact(unit * record.units)
        if credits * NANO >= _INT64:
            return f"units: {record.units} units cost {credits} credits, too many to book"
        return credits

    def model_usage(self, record: UsageRecord) -> tuple[ModelUsage, ...]:
        """Return `record`'s model usage at the costs of the card in force at its start."""
        card = self._cards[self._card_index(record.start_time_ns)]
        return tuple(
            u._replace(cost=card.model_cost(u.model, u.input_tokens, u.output_tokens))
            for u in record.model_usage
        )

    def _look_up(self, index: int, record: UsageRecord) -> tuple[int | Decimal, bool] | str:
        card = self._cards[index]
        try:
            unit = card.price(record.action_type, record.environment, action=record.action)
        except ConfigurationError as exc:
            return (
                f"{exc.field}: {str(exc.value)[:200]!r} is not priced by the rate card in force "
                f"at the record's start: {exc.reason}"
            )
        return unit, card.bill_failed


def wire_credits(credits: int | Decimal) -> Any:
    """Return credits as the wire carries them: an int, or a decimal string."""
    return credits if isinstance(credits, int) else str(credits)
