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


# --- defaults, ids and errors -------------------------------------------------------------------


def utc(year: int, month: int, day: int, hour: int = 0) -> int:
    return datetime_to_ns(_dt.datetime(year, month, day, hour, tzinfo=_dt.UTC))


def test_a_new_ledger_allows_overdrafts_and_needs_no_authorization() -> None:
    led = Ledger(fc.RateCard.agentforce())
    assert led.overdraft == "allow"
    assert led.authorizes is False
    assert led.reacts is False
    assert led.balance(T0) == fc.Balance(
        credits=0,
        granted=0,
        used=0,
        expired=0,
        owed=0,
        held=0,
        usd=Decimal(0),
        as_of=ns_to_datetime(T0),
    )


def test_a_bad_overdraft_policy_names_the_field_and_the_value() -> None:
    with pytest.raises(fc.ConfigurationError) as info:
        ledger("maybe")
    assert (info.value.field, info.value.value) == ("overdraft", "maybe")
    assert str(info.value) == "overdraft='maybe': must be 'allow' or 'deny'"


def test_grant_defaults_and_ids() -> None:
    led = ledger()
    first, alerts = led.grant(100, now_ns=T0)
    assert alerts == []
    assert first == fc.GrantInfo(
        id="grant-1",
        credits=100,
        remaining=100,
        source="grant",
        priority=1,
        expires_at=None,
        granted_at=ns_to_datetime(T0),
        expired=False,
    )
    named, _ = led.grant(5, now_ns=T0, expires_ns=T0 + DAY, grant_id="promo")
    assert (named.id, named.expires_at) == ("promo", ns_to_datetime(T0 + DAY))
    assert led.grant(1, now_ns=T0)[0].id == "grant-3"
    assert led.watch_low_balance(credits=1, now_ns=T0) == "watch-1"
    assert led.watch_low_balance(credits=2, now_ns=T0) == "watch-2"


def test_budget_defaults_names_and_ids() -> None:
    led = ledger()
    everything = led.set_budget(100, now_ns=T0)
    assert everything == fc.BudgetInfo(
        id="budget-1",
        name="all actions",
        limit=100,
        tags={},
        period="month",
        hard=True,
        spent=0,
    )
    by_tags = led.set_budget(5, now_ns=T0, tags={"team": "a", "agent": "x"}, period="day")
    assert (by_tags.id, by_tags.name, by_tags.period) == ("budget-2", "agent=x, team=a", "day")
    named = led.set_budget(5, now_ns=T0, tags={"team": "a"}, period=None, hard=False, name="A")
    assert (named.id, named.name, named.period, named.hard) == ("budget-3", "A", None, False)
    assert [b.id for b in led.budgets(T0)] == ["budget-1", "budget-2", "budget-3"]


def test_a_bad_budget_period_names_the_field_and_the_value() -> None:
    with pytest.raises(fc.ConfigurationError) as info:
        ledger().set_budget(10, now_ns=T0, period="week")  # type: ignore[arg-type]
    assert (info.value.field, info.value.value) == ("period", "week")
    assert str(info.value) == "period='week': must be 'day', 'month' or None"


def test_refusals_carry_the_action_the_credits_and_the_balance() -> None:
    led = ledger("deny")
    led.grant(50, now_ns=T0)
    led.authorize("first", 30, {}, T0)
    with pytest.raises(fc.InsufficientCredits) as info:
        led.authorize("second", 21, {}, T0)
    assert (info.value.action, info.value.credits, info.value.balance) == ("second", 21, 20)
    assert str(info.value) == (
        "action 'second' needs 21 credits but the balance is 20 "
        "and the wallet's overdraft policy is 'deny'"
    )
    led.authorize("third", 20, {}, T0)  # exactly the rest
    assert led.balance(T0).held == 50


# --- budgets ------------------------------------------------------------------------------------


def test_holds_count_against_a_hard_budget_until_released() -> None:
    led = ledger()
    led.set_budget(50, now_ns=T0, tags={"team": "a"})
    first = led.authorize("a", 20, {"team": "a"}, T0)
    led.authorize("b", 20, {"team": "a"}, T0)
    with pytest.raises(fc.BudgetExceeded) as info:
        led.authorize("c", 11, {"team": "a"}, T0)
    refused = info.value
    assert (refused.action, refused.credits, refused.spent) == ("c", 11, 40)
    assert refused.budget.id == "budget-1"
    assert str(refused) == (
        "action 'c' needs 11 credits but budget 'team=a' has 10 of 50 left this period"
    )
    led.authorize("c", 10, {"team": "a"}, T0)  # exactly the limit
    assert led.balance(T0).held == 50
    led.release(first)
    assert led.balance(T0).held == 30
    with pytest.raises(fc.BudgetExceeded) as info:
        led.authorize("d", 21, {"team": "a"}, T0)
    assert info.value.spent == 30
    led.book(record(20, tags={"team": "a"}), T0, led.authorize("d", 20, {"team": "a"}, T0))
    with pytest.raises(fc.BudgetExceeded) as info:
        led.authorize("e", 1, {"team": "a"}, T0)
    assert info.value.spent == 50  # 20 spent + 30 still held
    assert led.budgets(T0)[0].spent == 20


def test_setting_a_budget_again_replaces_it_and_keeps_spent_and_held() -> None:
    led = ledger()
    other_team = led.set_budget(100, now_ns=T0, tags={"team": "b"})
    daily = led.set_budget(100, now_ns=T0, tags={"team": "a"}, period="day")
    monthly = led.set_budget(100, now_ns=T0, tags={"team": "a"})
    led.book(record(30, tags={"team": "a"}), T0)
    hold = led.authorize("x", 20, {"team": "a"}, T0)
    again = led.set_budget(60, now_ns=T0, tags={"team": "a"}, hard=True)
    assert again == monthly.model_copy(update={"limit": 60, "spent": 30})
    assert led.authorizes is True
    limits = {b.id: (b.limit, b.spent) for b in led.budgets(T0)}
    assert limits == {other_team.id: (100, 0), daily.id: (100, 30), monthly.id: (60, 30)}
    with pytest.raises(fc.BudgetExceeded) as info:  # 30 spent + 20 held + 11 > 60
        led.authorize("y", 11, {"team": "a"}, T0)
    assert info.value.spent == 50
    led.book(record(20, tags={"team": "a"}), T0, hold)  # the hold made before is released
    led.authorize("z", 10, {"team": "a"}, T0)  # 50 spent + 10 held = 60
    with pytest.raises(fc.BudgetExceeded) as info:
        led.authorize("z", 1, {"team": "a"}, T0)
    assert info.value.spent == 60


def test_replacing_a_budget_with_a_soft_one_stops_authorization() -> None:
    led = ledger()
    led.set_budget(10, now_ns=T0)
    assert led.authorizes is True
    led.set_budget(10, now_ns=T0, hard=False)
    assert led.authorizes is False
    assert len(led.budgets(T0)) == 1


def test_remove_budget() -> None:
    led = ledger()
    hard = led.set_budget(10, now_ns=T0, tags={"team": "a"})
    soft = led.set_budget(10, now_ns=T0, hard=False)
    other_hard = led.set_budget(10, now_ns=T0, tags={"team": "b"})
    led.remove_budget(hard.id)
    assert [b.id for b in led.budgets(T0)] == [soft.id, other_hard.id]
    assert led.authorizes is True
    led.authorize("x", 100, {"team": "a"}, T0)  # no longer limited
    led.remove_budget(other_hard.id)
    assert led.authorizes is False
    led.remove_budget(soft.id)
    assert led.budgets(T0) == []
    assert led.reacts is False
    with pytest.raises(fc.ConfigurationError) as info:
        led.remove_budget(hard.id)
    assert (info.value.field, info.value.value) == ("budget_id", "budget-1")
    assert str(info.value) == "budget_id='budget-1': no such budget"


def test_a_soft_budget_alerts_once_per_period_when_spending_goes_past_it() -> None:
    led = ledger()
    led.set_budget(100, now_ns=T0, tags={"team": "b"}, hard=False)  # matches nothing booked
    led.set_budget(50, now_ns=T0, tags={"team": "a"}, period="day", hard=False)
    tags = {"team": "a"}
    assert led.book(record(50, tags=tags), T0) == []  # at the limit, not past it
    alerts = [led.book(record(5, tags=tags), T0 + i) for i in range(3)]
    expected = fc.Alert(
        kind="budget",
        message="budget 'team=a' spent 55 of 50 credits this day",
        threshold=50,
        value=55,
        budget_id="budget-2",
        at=ns_to_datetime(T0),
    )
    assert alerts == [[expected], [], []]
    assert led.alerts == [expected]
    tomorrow = T0 + DAY
    assert led.budgets(tomorrow)[1].spent == 0
    again = [led.book(record(30, tags=tags), tomorrow) for _ in range(2)]
    assert [[a.value for a in fired] for fired in again] == [[], [60]]
    assert again[1][0].at == ns_to_datetime(tomorrow)
    assert led.budgets(tomorrow)[0].spent == 0


def test_a_budget_for_ever_alerts_without_a_period() -> None:
    led = ledger()
    led.set_budget(10, now_ns=T0, period=None, hard=False)
    assert led.book(record(11), T0)[0].message == "budget 'all actions' spent 11 of 10 credits"
    assert led.book(record(11), T0 + 400 * DAY) == []
    assert led.budgets(T0 + 400 * DAY)[0].spent == 22


def test_records_without_credits_fire_no_budget_alert() -> None:
    led = ledger()
    led.set_budget(100, now_ns=T0, hard=False)
    led.book(record(80), T0)
    led.set_budget(50, now_ns=T0, hard=False)  # now past the limit, alerting at the next cost
    assert led.book(record(0), T0) == []
    assert [a.value for a in led.book(record(1), T0)] == [81]


def test_a_day_is_a_calendar_day_in_utc() -> None:
    led = ledger()
    led.set_budget(1000, now_ns=T0, period="day", hard=False)
    led.book(record(1), utc(2026, 3, 30, 23))
    led.book(record(2), utc(2026, 3, 31, 1))  # two hours later, but another day
    assert led.budgets(utc(2026, 3, 31, 1))[0].spent == 2
    midnight = utc(2026, 4, 1)
    led.book(record(4), midnight - 1)
    led.book(record(8), midnight)  # 00:00 starts the new day
    led.book(record(16), midnight)
    led.book(record(32), midnight + DAY - 1)  # the last instant of that day
    assert led.budgets(midnight + DAY - 1)[0].spent == 56
    assert led.budgets(midnight + DAY)[0].spent == 0


@pytest.mark.parametrize("month", [1, 4, 11, 12])
def test_a_month_is_a_calendar_month_in_utc(month: int) -> None:
    first = utc(2026, month, 1)
    following = utc(2026 + month // 12, month % 12 + 1, 1)
    led = ledger()
    led.set_budget(1000, now_ns=first - DAY, hard=False)
    led.book(record(1), first - 1)
    led.book(record(2), first)  # the 1st at 00:00 starts the new month
    led.book(record(4), first + DAY // 2)
    led.book(record(8), following - 1)
    assert led.budgets(following - 1)[0].spent == 14
    led.book(record(16), following)
    assert led.budgets(following)[0].spent == 16


instants = st.datetimes(
    min_value=_dt.datetime(2000, 1, 1),
    max_value=_dt.datetime(2100, 1, 1),
    timezones=st.just(_dt.UTC),
).map(datetime_to_ns)


@settings(max_examples=100, deadline=None)
@given(
    first=instants,
    gap=st.one_of(st.integers(0, 2 * DAY), st.integers(0, 70 * DAY)),
    period=st.sampled_from(["day", "month"]),
)
def test_budget_periods_follow_the_calendar(first: int, gap: int, period: str) -> None:
    """Two bookings share a period exactly when they fall on the same UTC day or month."""
    second = first + gap
    led = ledger()
    led.set_budget(10**9, now_ns=first, period=period, hard=False)  # type: ignore[arg-type]
    led.book(record(1, at=first), first)
    led.book(record(2, at=second), second)
    a, b = ns_to_datetime(first), ns_to_datetime(second)
    same = a.date() == b.date() if period == "day" else (a.year, a.month) == (b.year, b.month)
    assert led.budgets(second)[0].spent == (3 if same else 2)


# --- expiry -------------------------------------------------------------------------------------


def test_a_grant_already_expired_when_made() -> None:
    led = ledger()
    led.grant(100, now_ns=T0, expires_ns=T0 + DAY, source="month")
    led.book(record(30), T0)
    now = T0 + 2 * DAY
    late, alerts = led.grant(50, now_ns=now, expires_ns=now, source="late")
    assert (late.remaining, late.expired, alerts) == (0, True, [])
    balance = led.balance(now)
    assert (balance.granted, balance.expired, balance.used, balance.credits) == (150, 120, 30, 0)
    led.book(record(10), now)  # owed: the expired grant pays nothing
    led.grant(20, now_ns=now, expires_ns=now - 1)
    assert (led.balance(now).owed, led.balance(now).expired) == (10, 140)


def test_booking_at_the_instant_a_grant_expires() -> None:
    led = ledger()
    led.grant(100, now_ns=T0, expires_ns=T0 + DAY, source="expiring")
    led.grant(100, now_ns=T0, source="pack")
    led.watch_low_balance(credits=150, now_ns=T0)
    alerts = led.book(record(30, at=T0 + DAY), T0 + DAY)
    assert remaining(led, T0 + DAY) == {"expiring": 0, "pack": 70}
    assert led.balance(T0 + DAY).expired == 100
    assert [(a.value, a.threshold) for a in alerts] == [(70, 150)]


def test_a_grant_at_the_instant_another_expires() -> None:
    led = ledger()
    led.grant(100, now_ns=T0, expires_ns=T0 + DAY)
    led.watch_low_balance(credits=50, now_ns=T0)
    _, alerts = led.grant(10, now_ns=T0 + DAY)
    assert alerts == [
        fc.Alert(
            kind="low_balance",
            message="balance 10 credits fell below 50",
            threshold=50,
            value=10,
            watch_id="watch-1",
            at=ns_to_datetime(T0 + DAY),
        )
    ]
    assert led.alerts == alerts


def test_burn_order_after_an_expiry() -> None:
    led = ledger()
    led.grant(100, now_ns=T0, source="a", expires_ns=T0 + DAY)
    led.grant(100, now_ns=T0, source="b", expires_ns=T0 + 3 * DAY)
    led.grant(100, now_ns=T0, source="c")
    led.book(record(10), T0)
    led.grant(100, now_ns=T0 + DAY, source="d", expires_ns=T0 + 2 * DAY)  # expires before b
    led.book(record(150), T0 + DAY)
    assert remaining(led, T0 + DAY) == {"a": 0, "b": 50, "c": 100, "d": 0}
    led.book(record(60), T0 + 2 * DAY)
    assert remaining(led, T0 + 2 * DAY) == {"a": 0, "b": 0, "c": 90, "d": 0}
    assert [g.expired for g in led.grants(T0 + 3 * DAY)] == [True, True, False, True]


# --- low-balance watches ------------------------------------------------------------------------


def test_low_balance_fires_below_the_threshold_not_at_it() -> None:
    led = ledger()
    led.grant(100, now_ns=T0)
    led.watch_low_balance(credits=50, now_ns=T0)
    assert led.book(record(50), T0) == []  # exactly at the threshold
    assert [a.value for a in led.book(record(1), T0)] == [49]


def test_a_watch_set_at_or_below_the_balance_fires_on_the_next_fall() -> None:
    led = ledger()
    led.grant(100, now_ns=T0)
    led.watch_low_balance(credits=100, now_ns=T0)  # exactly the balance: not below it
    led.watch_low_balance(credits=60, now_ns=T0)
    assert [a.watch_id for a in led.book(record(1), T0)] == ["watch-1"]
    assert [a.watch_id for a in led.book(record(40), T0)] == ["watch-2"]


def test_a_watch_set_above_the_balance_waits_for_the_next_crossing() -> None:
    led = ledger()
    led.grant(100, now_ns=T0)
    led.watch_low_balance(credits=150, now_ns=T0)  # already below: no alert for that
    assert led.book(record(1), T0) == []
    led.grant(100, now_ns=T0)  # 199: back above, re-armed
    assert [a.value for a in led.book(record(50), T0)] == [149]


def test_low_balance_counts_what_is_owed() -> None:
    led = ledger()
    led.grant(10, now_ns=T0)
    led.watch_low_balance(credits=5, now_ns=T0)
    alerts = led.book(record(30), T0)
    assert [(a.value, a.message) for a in alerts] == [(-20, "balance -20 credits fell below 5")]


def test_percent_watch_base_is_every_unexpired_grant() -> None:
    led = ledger()
    led.grant(600, now_ns=T0, expires_ns=T0 + DAY)
    led.grant(1000, now_ns=T0)
    led.watch_low_balance(percent=Decimal(10), now_ns=T0)  # 10% of 1600
    assert [a.threshold for a in led.book(record(1441), T0)] == [160]
    led.grant(1000, now_ns=T0)  # 1159 of 2600: back above 260
    # At T0 + DAY the 600 expires (nothing was left of it): the base is 2000, the threshold 200.
    assert led.book(record(958), T0 + DAY) == []  # 201
    assert [(a.threshold, a.value) for a in led.book(record(2), T0 + DAY)] == [(200, 199)]


def test_setting_a_budget_again_does_not_repeat_its_alert() -> None:
    led = ledger()
    led.set_budget(50, now_ns=T0, hard=False)
    assert len(led.book(record(60), T0)) == 1
    led.set_budget(50, now_ns=T0, hard=False)  # the same budget, set again
    assert led.book(record(1), T0) == []
    led.set_budget(55, now_ns=T0, hard=False)  # still past the new limit: still alerted
    assert led.book(record(1), T0) == []
    led.set_budget(62, now_ns=T0, hard=False)  # spending is at the new limit: re-armed
    assert [a.message for a in led.book(record(1), T0)] == [
        "budget 'all actions' spent 63 of 62 credits this month"
    ]
    led.set_budget(100, now_ns=T0, hard=False)  # spending is under the new limit: re-armed
    assert led.book(record(37), T0) == []
    assert [a.message for a in led.book(record(1), T0)] == [
        "budget 'all actions' spent 101 of 100 credits this month"
    ]


# --- batches ------------------------------------------------------------------------------------


def ran(rid: str, credits: int, start: int, duration: int, action: str = "a") -> fc.UsageRecord:
    return fc.UsageRecord(
        rid, action, "standard", 1, credits, "production", {}, None, start, duration
    )


def test_a_batch_is_booked_by_end_time_then_id() -> None:
    records = [
        ran("r3", 1, T0, 5 * SECOND, action="a"),  # ends at T0 + 5 s
        ran("r1", 1, T0 + 2 * SECOND, 2 * SECOND, action="c"),  # ends at T0 + 4 s
        ran("r2", 1, T0 + SECOND, 3 * SECOND, action="b"),  # ends at T0 + 4 s too
        ran("r0", 1, T0 + 9 * SECOND, 9 * SECOND),  # ends after the batch's now
    ]
    order = Ledger.booking_order(records, T0 + 10 * SECOND)
    assert [(at - T0, r.id) for at, r in order] == [
        (4 * SECOND, "r1"),
        (4 * SECOND, "r2"),
        (5 * SECOND, "r3"),
        (10 * SECOND, "r0"),
    ]


def test_a_batch_with_only_a_watch_fires_its_alert() -> None:
    led = ledger()
    led.grant(100, now_ns=T0)
    led.watch_low_balance(credits=50, now_ns=T0)
    alerts = led.book_many([ran("r1", 30, T0, 0), ran("r2", 30, T0, 0)], T0)
    assert [a.value for a in alerts] == [40]


@pytest.mark.parametrize("ends", [DAY, DAY + SECOND])
def test_a_batch_that_ends_at_or_after_an_expiry_books_after_it(ends: int) -> None:
    led = ledger()
    led.grant(100, now_ns=T0, expires_ns=T0 + DAY, source="expiring")
    led.grant(100, now_ns=T0, source="pack")
    led.book_many([ran("r1", 30, T0 + DAY - 5 * SECOND, ends - DAY + 5 * SECOND)], T0 + 2 * DAY)
    assert remaining(led, T0 + 2 * DAY) == {"expiring": 0, "pack": 70}
    assert led.balance(T0 + 2 * DAY).expired == 100


def test_a_batch_that_ends_before_an_expiry_burns_the_expiring_grant() -> None:
    led = ledger()
    led.grant(100, now_ns=T0, expires_ns=T0 + DAY, source="expiring")
    led.grant(100, now_ns=T0, source="pack")
    led.book_many([ran("r1", 30, T0, SECOND), ran("r2", 5, T0, DAY - 1)], T0 + 2 * DAY)
    assert remaining(led, T0 + 2 * DAY) == {"expiring": 0, "pack": 100}
    assert led.balance(T0 + 2 * DAY).expired == 65


# --- state --------------------------------------------------------------------------------------


def test_the_state_of_a_small_ledger() -> None:
    led = ledger()
    led.grant(100, now_ns=T0)
    led.book(record(Decimal("2.5")), T0)
    state = led.to_state()
    assert state["grants"] == [["grant-1", 100, "97.5", "grant", 1, None, T0, 1, False]]
    assert (state["format"], state["used"], state["next"]) == (
        2,
        "2.5",
        {"grant": 2, "budget": 1, "watch": 1},
    )


def test_a_state_of_an_unknown_format_names_the_field_and_the_value() -> None:
    with pytest.raises(fc.ConfigurationError) as info:
        Ledger.from_state({"format": 99}, fc.RateCard.agentforce())
    assert (info.value.field, info.value.value) == ("format", 99)
    assert str(info.value) == "format=99: must be 2 (or 1)"


def test_format_1_amounts_come_back_as_they_were_written() -> None:
    old = {
        "format": 1,
        "overdraft": "allow",
        "counters": {"_grant_seq": 1, "_budget_seq": 1, "_watch_seq": 3},
        **dict.fromkeys(("granted", "used", "expired", "owed", "available"), "0"),
        "active_granted": "0",
        "grants": [],
        "budgets": [],
        "watches": [
            {"id": "watch-1", "credits": "-50", "percent": None, "fired": False},
            {"id": "watch-2", "credits": "-0.5", "percent": None, "fired": False},
        ],
    }
    state = Ledger.from_state(old, fc.RateCard.agentforce()).to_state()
    assert [w["credits"] for w in state["watches"]] == [-50, "-0.5"]
