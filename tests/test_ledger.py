"""The accounting rules, including properties checked with hypothesis."""

from __future__ import annotations

import datetime as _dt
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import flexcredits_sdk as fc
from flexcredits_sdk._ledger import Ledger
from flexcredits_sdk._records import datetime_to_ns, ns_to_datetime

T0 = datetime_to_ns(_dt.datetime(2026, 3, 30, 12, 0, tzinfo=_dt.UTC))
SECOND = 10**9
DAY = 86_400 * SECOND


def record(
    credits: int | Decimal, *, at: int = T0, tags: dict[str, str] | None = None
) -> fc.UsageRecord:
    return fc.UsageRecord(
        fc.new_id(at), "a", "standard", 1, credits, "production", tags or {}, None, at, 0
    )


def ledger(overdraft: str = "allow") -> Ledger:
    return Ledger(fc.RateCard.agentforce(), overdraft=overdraft)  # type: ignore[arg-type]


def remaining(led: Ledger, now: int = T0) -> dict[str, int | Decimal]:
    return {g.source: g.remaining for g in led.grants(now)}


def test_burn_order_priority_then_expiry_then_age() -> None:
    led = ledger()
    led.grant(100, now_ns=T0, source="old-never")
    led.grant(100, now_ns=T0 + 1, source="new-never")
    led.grant(100, now_ns=T0 + 2, source="expiring", expires_ns=T0 + 10 * DAY)
    led.grant(100, now_ns=T0 + 3, source="promo", priority=0)
    led.book(record(150, at=T0 + 4), T0 + 4)
    assert remaining(led) == {"old-never": 100, "new-never": 100, "expiring": 50, "promo": 0}
    led.book(record(100, at=T0 + 5), T0 + 5)
    assert remaining(led) == {"old-never": 50, "new-never": 100, "expiring": 0, "promo": 0}


def test_expiry_removes_unused_credits() -> None:
    led = ledger()
    led.grant(100, now_ns=T0, source="monthly", expires_ns=T0 + DAY)
    led.grant(50, now_ns=T0, source="pack")
    led.book(record(30), T0)
    assert led.credits(T0 + DAY - 1) == 120
    balance = led.balance(T0 + DAY)
    assert (balance.credits, balance.expired, balance.used) == (50, 70, 30)
    assert [g.expired for g in led.grants(T0 + DAY)] == [True, False]


def test_overdraft_is_owed_and_settled_by_the_next_grant() -> None:
    led = ledger()
    led.grant(10, now_ns=T0)
    led.book(record(30), T0)
    balance = led.balance(T0)
    assert (balance.credits, balance.owed) == (-20, 20)
    assert balance.usd == Decimal("-0.100")
    led.grant(100, now_ns=T0)
    balance = led.balance(T0)
    assert (balance.credits, balance.owed, balance.used, balance.granted) == (80, 0, 30, 110)


def test_deny_refuses_and_holds_reserve() -> None:
    led = ledger("deny")
    led.grant(50, now_ns=T0)
    hold = led.authorize("a", 30, {}, T0)
    with pytest.raises(fc.InsufficientCredits):
        led.authorize("b", 30, {}, T0)
    led.book(record(30), T0, hold)
    led.release(hold)  # idempotent
    assert led.balance(T0).held == 0
    led.authorize("c", 20, {}, T0)


def test_monthly_budget_resets_on_the_calendar_month() -> None:
    led = ledger()
    led.set_budget(40, now_ns=T0, tags={"team": "a"}, period="month", hard=True)
    led.book(record(40, tags={"team": "a"}), T0)
    with pytest.raises(fc.BudgetExceeded):
        led.authorize("x", 20, {"team": "a"}, T0)
    led.authorize("x", 20, {"team": "b"}, T0)  # other tags are not counted
    april = datetime_to_ns(_dt.datetime(2026, 4, 1, tzinfo=_dt.UTC))
    led.authorize("x", 20, {"team": "a"}, april)
    assert led.budgets(april)[0].spent == 0


def test_daily_budget() -> None:
    led = ledger()
    led.set_budget(20, now_ns=T0, period="day", hard=True)
    led.book(record(20), T0)
    with pytest.raises(fc.BudgetExceeded):
        led.authorize("x", 1, {}, T0 + SECOND)
    led.authorize("x", 20, {}, T0 + DAY)


def test_low_balance_fires_once_per_crossing() -> None:
    led = ledger()
    led.grant(100, now_ns=T0)
    led.watch_low_balance(credits=50, now_ns=T0)
    fired = [led.book(record(30), T0) for _ in range(3)]
    assert [len(f) for f in fired] == [0, 1, 0]
    assert fired[1][0].value == 40
    led.grant(100, now_ns=T0)  # back above: re-armed
    # 110 -> 60 -> 10 (fires) -> -40 (still below: silent)
    assert [len(led.book(record(50), T0)) for _ in range(3)] == [0, 1, 0]


def test_low_balance_percent_of_unexpired_grants() -> None:
    led = ledger()
    led.grant(1000, now_ns=T0)
    led.watch_low_balance(percent=Decimal(10), now_ns=T0)
    assert led.book(record(899), T0) == []
    alerts = led.book(record(2), T0)
    assert alerts[0].threshold == 100


def test_time_round_trip() -> None:
    when = _dt.datetime(2026, 5, 17, 8, 30, 1, 123456, tzinfo=_dt.UTC)
    assert ns_to_datetime(datetime_to_ns(when)) == when


amounts = st.one_of(
    st.integers(min_value=0, max_value=10_000),
    st.decimals(min_value=0, max_value=1000, places=3, allow_nan=False, allow_infinity=False),
)


@settings(max_examples=200, deadline=None)
@given(
    grants=st.lists(
        st.tuples(
            st.integers(min_value=1, max_value=5000),
            st.integers(min_value=0, max_value=3),
            st.one_of(st.none(), st.integers(min_value=1, max_value=40)),
        ),
        max_size=6,
    ),
    uses=st.lists(st.tuples(amounts, st.integers(min_value=0, max_value=50)), max_size=30),
)
def test_conservation(
    grants: list[tuple[int, int, int | None]], uses: list[tuple[int | Decimal, int]]
) -> None:
    """Granted = balance + used + expired at every step (the balance is net of what is owed)."""
    led = ledger()
    events: list[tuple[int, str, tuple[object, ...]]] = []
    for credits, priority, expires in grants:
        events.append(
            (0, "grant", (credits, priority, None if expires is None else T0 + expires * DAY))
        )
    for credits, day in uses:
        events.append((day, "use", (credits,)))
    events.sort(key=lambda e: e[0])
    for day, kind, args in events:
        now = T0 + day * DAY
        if kind == "grant":
            credits, priority, expires_ns = args
            led.grant(credits, now_ns=now, priority=priority, expires_ns=expires_ns)  # type: ignore[arg-type]
        else:
            led.book(record(args[0], at=now), now)  # type: ignore[arg-type]
        b = led.balance(now)
        assert b.granted == b.credits + b.used + b.expired
        assert b.owed >= 0
        assert b.owed == 0 or b.credits <= 0
        infos = led.grants(now)
        assert all(0 <= g.remaining <= g.credits for g in infos)
        assert sum(g.remaining for g in infos) - b.owed == b.credits
