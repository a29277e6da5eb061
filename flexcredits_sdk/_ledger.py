"""The accounting rules: grants, burn-down order, overdraft, holds, budgets and alerts.

This module is pure: no I/O, no clock, no locks. Time comes in as Unix nanoseconds and callers
serialise access. The offline wallet and the wallet service both drive a `Ledger`, so both compute
the same numbers from the same records.

Rules:

* Grants burn down by ``priority`` (lower first), then soonest expiry (never-expiring last),
  then the oldest grant.
* Credits used beyond every grant are *owed* when the overdraft policy is ``"allow"``; the next
  grant pays what is owed before anything else.
* A grant's unused credits expire at ``expires_at``; expiry is applied lazily, before any
  operation at or after that time.
* A hold reserves credits for an action that has not finished yet, so concurrent actions cannot
  all pass an overdraft or hard-budget check that only one of them fits.
* A low-balance watch fires once each time the balance falls below its threshold, and re-arms
  when the balance is back at or above it.
* A budget counts the credits of records whose tags include all of its tags, per calendar day
  or month in the ledger's time zone (UTC unless set; a day may be 23 or 25 hours long) or for
  ever; a hard budget refuses actions that would exceed it, and any budget
  alerts once per period when its spending first goes past its limit.
* A batch of records (`Ledger.book_many`) is booked in the order of the records' end times, ties
  by id, each at its end time or at the batch's ``now`` if it ends later: grant expiry, budget
  periods and alerts see the same sequence whatever order the records arrived in. The offline
  wallet and the wallet service both book through it.

The ledger's whole state is JSON-ready data (`Ledger.to_state`, `Ledger.from_state`), which the
wallet service stores per tenant.
"""

from __future__ import annotations

import bisect
import datetime as _dt
import functools
import zoneinfo
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from operator import itemgetter
from typing import Any, Literal

from ._exceptions import BudgetExceeded, ConfigurationError, InsufficientCredits
from ._models import Alert, Balance, BudgetInfo, GrantInfo
from ._pricing import RateCard
from ._records import UsageRecord, datetime_to_ns, ns_to_datetime

__all__ = ["Hold", "Ledger", "Overdraft", "Period", "zone_of"]

Overdraft = Literal["allow", "deny"]
Period = Literal["day", "month"]
Amount = int | Decimal

_NEVER = 1 << 127
_UTC = _dt.UTC


@functools.lru_cache(maxsize=64)
def zone_of(name: str) -> _dt.tzinfo:
    """Return the IANA time zone called `name` (``"UTC"``, ``"America/New_York"``, ...).

    Raises:
        ConfigurationError: `name` is not an IANA time zone name.
    """
    if name == "UTC":
        return _UTC
    try:
        if not isinstance(name, str) or not name or len(name) > 64 or not name.isprintable():
            raise ValueError(name)
        return zoneinfo.ZoneInfo(name)
    except (ValueError, zoneinfo.ZoneInfoNotFoundError):
        raise ConfigurationError(
            "time_zone", name, "must be an IANA time zone name, e.g. 'UTC' or 'Europe/Paris'"
        ) from None


def _local_midnight(year: int, month: int, day: int, zone: _dt.tzinfo) -> int:
    # A midnight that a DST change skips (fold 0) maps to the instant of the change.
    return datetime_to_ns(_dt.datetime(year, month, day, tzinfo=zone))


#: The version of `Ledger.to_state`'s layout (1: before holds and alerts were part of it).
STATE_FORMAT = 2

# Fields of a `UsageRecord`, by position: records may also come as plain tuples of its fields.
_CREDITS, _START_NS, _DURATION_NS = map(
    UsageRecord._fields.index, ("credits", "start_time_ns", "duration_ns")
)
_credits = itemgetter(_CREDITS)
_start_ns = itemgetter(_START_NS)
_duration_ns = itemgetter(_DURATION_NS)


def _put(amount: Amount) -> int | str:
    """An amount as JSON: an int as itself, a Decimal as its exact text."""
    return amount if type(amount) is int else str(amount)


def _get(data: int | str) -> Amount:
    """What `_put` wrote, of the same type and representation."""
    return data if type(data) is int else Decimal(data)


def _get_v1(data: int | str) -> Amount:
    """An amount of state format 1, where every amount was text."""
    if isinstance(data, int):
        return data
    return int(data) if data.lstrip("-").isdigit() else Decimal(data)


def _booking_key(record: UsageRecord) -> tuple[int, str]:
    """The order of a batch's bookings: by end time, then by id."""
    return record[8] + record[9], record[0]


@dataclass(eq=False)
class _Grant:
    id: str
    credits: Amount
    remaining: Amount
    source: str
    priority: int
    expires_ns: int
    granted_ns: int
    seq: int
    expired: bool = False

    @property
    def burn_key(self) -> tuple[int, int, int]:
        return (self.priority, self.expires_ns, self.seq)

    def info(self) -> GrantInfo:
        return GrantInfo(
            id=self.id,
            credits=self.credits,
            remaining=self.remaining,
            source=self.source,
            priority=self.priority,
            expires_at=None if self.expires_ns == _NEVER else ns_to_datetime(self.expires_ns),
            granted_at=ns_to_datetime(self.granted_ns),
            expired=self.expired,
        )


@dataclass(eq=False)
class _Budget:
    id: str
    name: str
    limit: Amount
    tags: dict[str, str]
    period: Period | None
    hard: bool
    spent: Amount = 0
    held: Amount = 0
    period_start: int = 0
    period_end: int = 0  # an empty window: the first roll() opens the current period
    alerted: bool = False

    def matches(self, tags: Mapping[str, str]) -> bool:
        return all(tags.get(k) == v for k, v in self.tags.items())

    def roll(self, now_ns: int, zone: _dt.tzinfo = _UTC) -> None:
        """Start a new period when `now_ns` is outside the current one.

        Periods start at midnight, or on the 1st of the month, in `zone`.
        """
        if self.period is None or self.period_start <= now_ns < self.period_end:
            return
        if self.period == "day":
            day = ns_to_datetime(now_ns).astimezone(zone).date()
            following = day + _dt.timedelta(days=1)
            start = _local_midnight(day.year, day.month, day.day, zone)
            end = _local_midnight(following.year, following.month, following.day, zone)
        else:
            day = ns_to_datetime(now_ns).astimezone(zone)
            start = _local_midnight(day.year, day.month, 1, zone)
            end = _local_midnight(day.year + day.month // 12, day.month % 12 + 1, 1, zone)
        self.period_start, self.period_end = start, end
        self.spent = 0
        self.alerted = False

    def info(self) -> BudgetInfo:
        return BudgetInfo(
            id=self.id,
            name=self.name,
            limit=self.limit,
            tags=dict(self.tags),
            period=self.period,
            hard=self.hard,
            spent=self.spent,
        )


@dataclass(eq=False)
class _Watch:
    id: str
    credits: Amount | None
    percent: Decimal | None
    fired: bool = False


@dataclass(eq=False)
class Hold:
    """Credits reserved for a running action; released when its record is booked.

    It names its budgets by id, so it can be released on a ledger rebuilt from `to_state`, and
    on a budget that `set_budget` replaced meanwhile.
    """

    credits: Amount
    budgets: tuple[str, ...] = ()
    released: bool = False


class Ledger:
    """Grants, balances, holds, budgets and alerts of one wallet, with no I/O.

    Args:
        rate_card: Prices credits in money for balances and reports.
        overdraft: ``"allow"`` lets the balance go negative (what is used is owed);
            ``"deny"`` refuses actions the balance does not cover.
        time_zone: The IANA time zone whose midnights and 1sts of the month start budget
            periods.

    Raises:
        ConfigurationError: `overdraft` or `time_zone` is wrong.
    """

    def __init__(
        self, rate_card: RateCard, *, overdraft: Overdraft = "allow", time_zone: str = "UTC"
    ) -> None:
        if overdraft not in ("allow", "deny"):
            raise ConfigurationError("overdraft", overdraft, "must be 'allow' or 'deny'")
        self.rate_card = rate_card
        self.overdraft: Overdraft = overdraft
        self._zone_name = time_zone
        self._zone = zone_of(time_zone)
        self._grants: list[_Grant] = []
        self._active: list[_Grant] = []  # sorted by burn key, remaining > 0, not expired
        self._active_keys: list[tuple[int, int, int]] = []
        self._next_expiry = _NEVER
        self._available: Amount = 0
        self._active_granted: Amount = 0
        self._granted: Amount = 0
        self._used: Amount = 0
        self._expired: Amount = 0
        self._owed: Amount = 0
        self._held: Amount = 0
        self._budgets: list[_Budget] = []
        self._hard_budgets = False
        self._watches: list[_Watch] = []
        # The next number of each kind of id.
        self._grant_seq = 1
        self._budget_seq = 1
        self._watch_seq = 1
        self.alerts: list[Alert] = []

    # --- state --------------------------------------------------------------------------------

    @property
    def time_zone(self) -> str:
        """The IANA time zone whose midnights and 1sts of the month start budget periods.

        A change applies from each budget's next period; the current one ends when it would.

        Raises:
            ConfigurationError: A new value is not an IANA time zone name.
        """
        return self._zone_name

    @time_zone.setter
    def time_zone(self, name: str) -> None:
        self._zone = zone_of(name)
        self._zone_name = name

    @property
    def reacts(self) -> bool:
        """Whether a booking can fire alerts (budgets or low-balance watches exist)."""
        return bool(self._budgets or self._watches)

    @property
    def held(self) -> Amount:
        """The credits that holds reserve."""
        return self._held

    @property
    def authorizes(self) -> bool:
        """Whether actions must be authorized (and may be refused) before they run."""
        return self.overdraft == "deny" or self._hard_budgets

    def to_state(self) -> dict[str, Any]:
        """Return the ledger's whole state as JSON-ready data, for `from_state`.

        Amounts are JSON integers when they are ints and strings when they are Decimals, so
        that both come back exactly as they were. Holds are there as the credits they hold,
        overall and per budget: a `Hold` taken before is released on the rebuilt ledger too.
        The alert history (`alerts`) is there as well; a wallet that keeps alerts elsewhere
        empties it first.
        """
        return {
            "format": STATE_FORMAT,
            "overdraft": self.overdraft,
            "time_zone": self._zone_name,
            "next": {
                "grant": self._grant_seq,
                "budget": self._budget_seq,
                "watch": self._watch_seq,
            },
            "granted": _put(self._granted),
            "used": _put(self._used),
            "expired": _put(self._expired),
            "owed": _put(self._owed),
            "held": _put(self._held),
            "available": _put(self._available),
            "active_granted": _put(self._active_granted),
            "grants": [
                [
                    g.id,
                    _put(g.credits),
                    _put(g.remaining),
                    g.source,
                    g.priority,
                    None if g.expires_ns == _NEVER else g.expires_ns,
                    g.granted_ns,
                    g.seq,
                    g.expired,
                ]
                for g in self._grants
            ],
            "budgets": [
                {
                    "id": b.id,
                    "name": b.name,
                    "limit": _put(b.limit),
                    "tags": dict(b.tags),
                    "period": b.period,
                    "hard": b.hard,
                    "spent": _put(b.spent),
                    "held": _put(b.held),
                    "period_start": b.period_start,
                    "period_end": b.period_end,
                    "alerted": b.alerted,
                }
                for b in self._budgets
            ],
            "watches": [
                {
                    "id": w.id,
                    "credits": None if w.credits is None else _put(w.credits),
                    "percent": None if w.percent is None else str(w.percent),
                    "fired": w.fired,
                }
                for w in self._watches
            ],
            "alerts": [
                [
                    a.kind,
                    a.message,
                    _put(a.threshold),
                    _put(a.value),
                    a.budget_id if a.kind == "budget" else a.watch_id,
                    datetime_to_ns(a.at),
                ]
                for a in self.alerts
            ],
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any], rate_card: RateCard) -> Ledger:
        """Rebuild the ledger whose `to_state` gave `state`.

        Also reads the layout of earlier versions (format 1: no holds or alerts, every amount
        a string).

        Raises:
            ConfigurationError: The state has an unknown format.
        """
        form = state.get("format")
        if form not in (1, STATE_FORMAT):
            raise ConfigurationError("format", form, f"must be {STATE_FORMAT} (or 1)")
        get = _get if form == STATE_FORMAT else _get_v1
        ledger = cls(
            rate_card, overdraft=state["overdraft"], time_zone=state.get("time_zone", "UTC")
        )
        if form == STATE_FORMAT:
            ids = state["next"]
            ledger._grant_seq, ledger._budget_seq = ids["grant"], ids["budget"]
            ledger._watch_seq = ids["watch"]
        else:
            ids = state["counters"]
            ledger._grant_seq, ledger._budget_seq = ids["_grant_seq"], ids["_budget_seq"]
            ledger._watch_seq = ids["_watch_seq"]
        ledger._granted = get(state["granted"])
        ledger._used = get(state["used"])
        ledger._expired = get(state["expired"])
        ledger._owed = get(state["owed"])
        ledger._held = get(state.get("held", 0))
        # As the ledger kept them: sums of the grants' amounts, in the same representation.
        ledger._available = get(state["available"])
        ledger._active_granted = get(state["active_granted"])
        for gid, credits, remaining, source, priority, expires, granted, seq, expired in state[
            "grants"
        ]:
            g = _Grant(
                id=gid,
                credits=get(credits),
                remaining=get(remaining),
                source=source,
                priority=priority,
                expires_ns=_NEVER if expires is None else expires,
                granted_ns=granted,
                seq=seq,
                expired=expired,
            )
            ledger._grants.append(g)
            if not expired:
                ledger._next_expiry = min(ledger._next_expiry, g.expires_ns)
                if g.remaining:
                    ledger._active.append(g)
        ledger._active.sort(key=lambda g: g.burn_key)
        ledger._active_keys = [g.burn_key for g in ledger._active]
        for b in state["budgets"]:
            period_end = b["period_end"]
            ledger._budgets.append(
                _Budget(
                    id=b["id"],
                    name=b["name"],
                    limit=get(b["limit"]),
                    tags=dict(b["tags"]),
                    period=b["period"],
                    hard=b["hard"],
                    spent=get(b["spent"]),
                    held=get(b.get("held", 0)),
                    period_start=b["period_start"],
                    period_end=_NEVER if period_end is None else period_end,
                    alerted=b["alerted"],
                )
            )
        ledger._hard_budgets = any(b.hard for b in ledger._budgets)
        for w in state["watches"]:
            ledger._watches.append(
                _Watch(
                    id=w["id"],
                    credits=None if w["credits"] is None else get(w["credits"]),
                    percent=None if w["percent"] is None else Decimal(w["percent"]),
                    fired=w["fired"],
                )
            )
        for kind, message, threshold, value, source_id, at_ns in state.get("alerts", ()):
            ledger.alerts.append(
                Alert(
                    kind=kind,
                    message=message,
                    threshold=get(threshold),
                    value=get(value),
                    budget_id=source_id if kind == "budget" else None,
                    watch_id=source_id if kind == "low_balance" else None,
                    at=ns_to_datetime(at_ns),
                )
            )
        return ledger

    def credits(self, now_ns: int) -> Amount:
        """Return the spendable balance: granted and unexpired, minus what is owed."""
        if now_ns >= self._next_expiry:
            self._expire(now_ns)
        return self._available - self._owed

    def balance(self, now_ns: int) -> Balance:
        """Return the full balance at `now_ns`."""
        credits = self.credits(now_ns)
        return Balance(
            credits=credits,
            granted=self._granted,
            used=self._used,
            expired=self._expired,
            owed=self._owed,
            held=self._held,
            usd=self.rate_card.usd(credits),
            as_of=ns_to_datetime(now_ns),
        )

    def grants(self, now_ns: int) -> list[GrantInfo]:
        """Return every grant, in the order they were made."""
        self.credits(now_ns)
        return [g.info() for g in self._grants]

    def budgets(self, now_ns: int) -> list[BudgetInfo]:
        """Return every budget with its spending in the current period."""
        for budget in self._budgets:
            budget.roll(now_ns, self._zone)
        return [b.info() for b in self._budgets]

    def budget_holds(self) -> dict[str, Amount]:
        """Return the credits that holds reserve in each budget, by budget id."""
        return {b.id: b.held for b in self._budgets}

    # --- grants -------------------------------------------------------------------------------

    def grant(
        self,
        credits: Amount,
        *,
        now_ns: int,
        source: str = "grant",
        priority: int = 1,
        expires_ns: int | None = None,
        grant_id: str | None = None,
    ) -> tuple[GrantInfo, list[Alert]]:
        """Add a grant; it first pays what is owed.

        Returns:
            The grant, and any alerts its arrival fired.
        """
        if now_ns >= self._next_expiry:
            self._expire(now_ns)
        seq = self._grant_seq
        self._grant_seq += 1
        g = _Grant(
            id=grant_id or f"grant-{seq}",
            credits=credits,
            remaining=credits,
            source=source,
            priority=priority,
            expires_ns=_NEVER if expires_ns is None else expires_ns,
            granted_ns=now_ns,
            seq=seq,
        )
        self._grants.append(g)
        self._granted += credits
        if g.expires_ns <= now_ns:
            g.remaining, g.expired = 0, True
            self._expired += credits
            return g.info(), []
        settle = min(self._owed, credits)
        if settle:
            self._owed -= settle
            g.remaining -= settle
        self._active_granted += credits
        if g.remaining:
            self._available += g.remaining
            key = g.burn_key
            index = bisect.bisect(self._active_keys, key)
            self._active_keys.insert(index, key)
            self._active.insert(index, g)
        self._next_expiry = min(self._next_expiry, g.expires_ns)
        return g.info(), self._check_watches(now_ns)

    def _expire(self, now_ns: int) -> None:
        for g in self._grants:
            if not g.expired and g.expires_ns <= now_ns:
                self._available -= g.remaining
                self._expired += g.remaining
                self._active_granted -= g.credits
                g.remaining, g.expired = 0, True
        self._active = [g for g in self._active if not g.expired]
        self._active_keys = [g.burn_key for g in self._active]
        self._next_expiry = min(
            (g.expires_ns for g in self._grants if not g.expired), default=_NEVER
        )

    def _debit(self, amount: Amount) -> None:
        self._used += amount
        active = self._active
        while amount and active:
            g = active[0]
            if g.remaining > amount:
                g.remaining -= amount
                self._available -= amount
                return
            amount -= g.remaining
            self._available -= g.remaining
            g.remaining = 0
            del active[0]
            del self._active_keys[0]
        if amount:
            self._owed += amount

    # --- actions ------------------------------------------------------------------------------

    def authorize(self, action: str, credits: Amount, tags: Mapping[str, str], now_ns: int) -> Hold:
        """Reserve `credits` for an action about to run, or refuse it.

        Raises:
            InsufficientCredits: Overdrafts are denied and the balance, less other holds,
                does not cover `credits`.
            BudgetExceeded: A matching hard budget would go past its limit.
        """
        if self.overdraft == "deny":
            balance = self.credits(now_ns) - self._held
            if balance < credits:
                raise InsufficientCredits(action=action, credits=credits, balance=balance)
        matched: list[_Budget] = []
        for budget in self._budgets:
            if budget.hard and budget.matches(tags):
                budget.roll(now_ns, self._zone)
                if budget.spent + budget.held + credits > budget.limit:
                    raise BudgetExceeded(
                        action=action,
                        credits=credits,
                        budget=budget,
                        spent=budget.spent + budget.held,
                    )
                matched.append(budget)
        self._held += credits
        for budget in matched:
            budget.held += credits
        return Hold(credits, tuple(b.id for b in matched))

    def room(self, tags: Mapping[str, str], now_ns: int) -> Amount | None:
        """Return the most credits `authorize` would reserve now for an action carrying
        `tags`: what the balance (less holds) and every hard budget they match have left;
        ``None`` when nothing limits it."""
        room: Amount | None = None
        if self.overdraft == "deny":
            room = max(self.credits(now_ns) - self._held, 0)
        for budget in self._budgets:
            if budget.hard and budget.matches(tags):
                budget.roll(now_ns, self._zone)
                left = max(budget.limit - budget.spent - budget.held, 0)
                room = left if room is None else min(room, left)
        return room

    def release(self, hold: Hold, credits: Amount | None = None) -> Amount:
        """Give back what `hold` reserves, or only `credits` of it (idempotent).

        A hold that many actions draw on (a wallet service's lease) gives back each action's
        credits as its record is booked, and the rest when it is released.

        Returns:
            The credits given back.
        """
        if hold.released:
            return 0
        amount = hold.credits if credits is None else min(credits, hold.credits)
        hold.credits -= amount
        if not hold.credits:
            hold.released = True
        self._held -= amount
        if hold.budgets and amount:
            for budget in self._budgets:
                if budget.id in hold.budgets:
                    budget.held -= amount
        return amount

    def book(self, record: UsageRecord, now_ns: int, hold: Hold | None = None) -> list[Alert]:
        """Charge a record's credits at `now_ns` and update budgets and alerts.

        Wallets book what they receive with `book_many`, which decides when each record is
        booked; this books one record at a time already decided (a replay of a wallet's log).
        The caller books each record id once (see `RecordLog`).

        Returns:
            The alerts this booking fired.
        """
        if hold is not None:
            self.release(hold)
        if now_ns >= self._next_expiry:
            self._expire(now_ns)
        amount = record.credits
        if amount:
            self._debit(amount)
        if not (self._budgets or self._watches):
            return []
        fired: list[Alert] = []
        if amount and self._budgets:
            fired.extend(self._count_budgets(record, amount, now_ns))
        if self._watches:
            fired.extend(self._check_watches(now_ns))
        return fired

    @staticmethod
    def booking_order(records: Sequence[UsageRecord], now_ns: int) -> list[tuple[int, UsageRecord]]:
        """Return when and in what order `book_many` books `records`: the booking rule.

        Each record is booked at its end time, or at `now_ns` when it ends later; the records
        are booked in the order of their end times, ties by id. A wallet that logs its bookings
        logs them in this order and replays them with `book`.

        Returns:
            ``(booking time, record)`` pairs, in booking order.
        """
        ordered = sorted(records, key=_booking_key)
        return [(min(r[8] + r[9], now_ns), r) for r in ordered]

    def book_many(
        self,
        records: Sequence[UsageRecord],
        now_ns: int,
        columns: tuple[Sequence[Any], ...] | None = None,
    ) -> list[Alert]:
        """Book a batch of records that arrived together, by the rule of `booking_order`.

        The offline wallet and the wallet service both book through this method, so the same
        batch gives both the same balances, budgets and alerts, whatever its order. The caller
        books each record id once (see `RecordLog`).

        Args:
            records: The batch.
            now_ns: The time the batch is booked: no record is booked later than this.
            columns: The same batch as a block of columns (`to_columns`), when the caller has
                made one: the fast path then reads its sums there.

        Returns:
            The alerts the batch fired, in booking order.
        """
        if not records:
            return []
        # --- the fast path, the only one ---------------------------------------------------
        # When no budget or watch can react and no grant expires by the batch's last booking
        # time, booking the records one by one in any order debits the same total from the
        # same grants: debit the sum at once. The bound on that time (the latest start plus the
        # longest duration) is computed at C speed; it can only send a batch to the general
        # path needlessly, never the other way.
        if not (self._budgets or self._watches):
            credits: Iterable[Amount]
            starts: Iterable[int]
            durations: Iterable[int]
            if columns is None:
                credits, starts, durations = (
                    map(_credits, records),
                    map(_start_ns, records),
                    map(_duration_ns, records),
                )
            else:
                credits, starts, durations = (
                    columns[_CREDITS],
                    columns[_START_NS],
                    columns[_DURATION_NS],
                )
            last = max(starts) + max(durations)
            if min(last, now_ns) < self._next_expiry:
                amount = sum(credits)
                if amount:
                    self._debit(amount)
                return []
        fired: list[Alert] = []
        for at, record in self.booking_order(records, now_ns):
            fired.extend(self.book(record, at))
        return fired

    # --- budgets ------------------------------------------------------------------------------

    def set_budget(
        self,
        credits: Amount,
        *,
        now_ns: int,
        tags: Mapping[str, str] | None = None,
        period: Period | None = "month",
        hard: bool = True,
        name: str | None = None,
    ) -> BudgetInfo:
        """Add a budget; a budget with the same tags and period replaces the old one.

        The replacement keeps the old one's id, place, period, spending and holds.
        """
        if period not in ("day", "month", None):
            raise ConfigurationError("period", period, "must be 'day', 'month' or None")
        tags = dict(tags or {})
        seq = self._budget_seq
        self._budget_seq += 1
        label = name or (", ".join(f"{k}={v}" for k, v in sorted(tags.items())) or "all actions")
        budget = _Budget(
            id=f"budget-{seq}",
            name=label,
            limit=credits,
            tags=tags,
            period=period,
            hard=hard,
        )
        budget.roll(now_ns, self._zone)
        for index, old in enumerate(self._budgets):
            if old.tags == tags and old.period == period:
                old.roll(now_ns, self._zone)
                budget.id = old.id
                budget.period_start, budget.period_end = old.period_start, old.period_end
                budget.spent, budget.held = old.spent, old.held
                # Its alert stays sent while spending is still past the (new) limit.
                budget.alerted = old.alerted and budget.spent > budget.limit
                self._budgets[index] = budget  # in its place: listings keep their order
                break
        else:
            self._budgets.append(budget)
        self._hard_budgets = any(b.hard for b in self._budgets)
        return budget.info()

    def remove_budget(self, budget_id: str) -> None:
        """Remove a budget by id.

        Raises:
            ConfigurationError: No budget has that id.
        """
        for budget in self._budgets:
            if budget.id == budget_id:
                self._budgets.remove(budget)
                self._hard_budgets = any(b.hard for b in self._budgets)
                return
        raise ConfigurationError("budget_id", budget_id, "no such budget")

    def _count_budgets(self, record: UsageRecord, amount: Amount, now_ns: int) -> Iterator[Alert]:
        for budget in self._budgets:
            if not budget.matches(record.tags):
                continue
            budget.roll(now_ns, self._zone)
            budget.spent += amount
            if budget.spent > budget.limit and not budget.alerted:
                budget.alerted = True
                alert = Alert(
                    kind="budget",
                    message=(
                        f"budget {budget.name!r} spent {budget.spent} of {budget.limit} credits"
                        + (f" this {budget.period}" if budget.period else "")
                    ),
                    threshold=budget.limit,
                    value=budget.spent,
                    budget_id=budget.id,
                    at=ns_to_datetime(now_ns),
                )
                self.alerts.append(alert)
                yield alert

    # --- low-balance watches ------------------------------------------------------------------

    def watch_low_balance(
        self, *, credits: Amount | None = None, percent: Decimal | None = None, now_ns: int
    ) -> str:
        """Watch for the balance falling below `credits`, or `percent` of unexpired grants.

        Returns:
            The watch id, which alerts from this watch carry in ``watch_id``.
        """
        watch = _Watch(id=f"watch-{self._watch_seq}", credits=credits, percent=percent)
        self._watch_seq += 1
        watch.fired = self.credits(now_ns) < self._threshold(watch)
        self._watches.append(watch)
        return watch.id

    def _threshold(self, watch: _Watch) -> Amount:
        if watch.credits is not None:
            return watch.credits
        assert watch.percent is not None
        return self._active_granted * watch.percent / 100

    def _check_watches(self, now_ns: int) -> list[Alert]:
        fired: list[Alert] = []
        balance = self._available - self._owed
        for watch in self._watches:
            threshold = self._threshold(watch)
            below = balance < threshold
            if below and not watch.fired:
                alert = Alert(
                    kind="low_balance",
                    message=f"balance {balance} credits fell below {threshold}",
                    threshold=threshold,
                    value=balance,
                    watch_id=watch.id,
                    at=ns_to_datetime(now_ns),
                )
                self.alerts.append(alert)
                fired.append(alert)
            watch.fired = below
        return fired
