"""The ledger's persisted form: `Ledger.to_state` and `Ledger.from_state`.

A stateful test drives a ledger through random operations and, after every one, rebuilds it
from its state (through JSON, as the wallet service stores it): the rebuilt ledger must equal
the original and answer the next operation exactly as the original does.
"""

from __future__ import annotations

import datetime as _dt
import itertools
import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    multiple,
    rule,
)

import flexcredits_sdk as fc
from flexcredits_sdk._ledger import Hold, Ledger
from flexcredits_sdk._records import datetime_to_ns

CARD = fc.RateCard.agentforce()
T0 = datetime_to_ns(_dt.datetime(2026, 3, 30, 12, 0, tzinfo=_dt.UTC))
HOUR = 3_600 * 10**9

amounts = st.one_of(
    st.integers(min_value=0, max_value=400),
    st.decimals(min_value=0, max_value=400, places=2, allow_nan=False, allow_infinity=False),
)
positive = st.one_of(st.integers(min_value=1, max_value=400), st.decimals("0.5", "400", places=1))
teams = st.sampled_from([None, "a", "b"])


def rebuilt(ledger: Ledger) -> Ledger:
    """The ledger rebuilt from its state, through JSON text."""
    return Ledger.from_state(json.loads(json.dumps(ledger.to_state())), CARD)


def outcome(call: Any) -> Any:
    """What a call returned, or the error it raised, in a comparable form."""
    try:
        result = call()
    except fc.FlexCreditsError as exc:
        return ("raised", type(exc), str(exc))
    if isinstance(result, Hold):
        return ("hold", result.credits, result.budgets, result.released)
    return ("returned", result)


def test_the_state_knows_every_field_of_the_ledger() -> None:
    """Fails when the ledger gains a field: `to_state` and `from_state` must learn it."""
    assert set(vars(Ledger(CARD))) == {
        "rate_card",
        "overdraft",
        "_zone_name",
        "_zone",
        "_grants",
        "_active",
        "_active_keys",
        "_next_expiry",
        "_available",
        "_active_granted",
        "_granted",
        "_used",
        "_expired",
        "_owed",
        "_held",
        "_budgets",
        "_hard_budgets",
        "_watches",
        "_grant_seq",
        "_budget_seq",
        "_watch_seq",
        "alerts",
    }


def test_an_unknown_format_is_refused() -> None:
    with pytest.raises(fc.ConfigurationError, match="format=99"):
        Ledger.from_state({"format": 99}, CARD)


#: A document written by the first layout (`Ledger.dump` before holds and alerts were in it).
FORMAT_1 = {
    "format": 1,
    "overdraft": "allow",
    "counters": {"_grant_seq": 3, "_budget_seq": 3, "_watch_seq": 3},
    "granted": "150.5",
    "used": "36.5",
    "expired": "0",
    "owed": "0",
    "available": "114.0",
    "active_granted": "150.5",
    "grants": [
        [
            "grant-1",
            "100",
            "63.5",
            "monthly",
            0,
            1775086400000000000,
            1775000000000000000,
            1,
            False,
        ],
        ["grant-2", "50.5", "50.5", "grant", 1, None, 1775000000000000000, 2, False],
    ],
    "budgets": [
        {
            "id": "budget-1",
            "name": "team=a",
            "limit": "30",
            "tags": {"team": "a"},
            "period": "day",
            "hard": True,
            "spent": "16.5",
            "period_start": 1775001600000000000,
            "period_end": 1775088000000000000,
            "alerted": False,
        },
        {
            "id": "budget-2",
            "name": "everything",
            "limit": "500",
            "tags": {},
            "period": None,
            "hard": False,
            "spent": "36.5",
            "period_start": 0,
            "period_end": 0,
            "alerted": False,
        },
    ],
    "watches": [
        {"id": "watch-1", "credits": "120", "percent": None, "fired": True},
        {"id": "watch-2", "credits": None, "percent": "10", "fired": False},
    ],
}


def test_a_format_1_document_is_still_read() -> None:
    """What the service stored before this layout: the same ledger as the same operations."""
    start = 1_775_000_000 * 10**9
    expected = Ledger(CARD)
    expected.grant(100, now_ns=start, source="monthly", priority=0, expires_ns=start + 24 * HOUR)
    expected.grant(Decimal("50.5"), now_ns=start)
    expected.set_budget(30, now_ns=start, tags={"team": "a"}, period="day", hard=True)
    expected.set_budget(500, now_ns=start, period=None, hard=False, name="everything")
    expected.watch_low_balance(credits=120, now_ns=start)
    expected.watch_low_balance(percent=Decimal(10), now_ns=start)
    uses: list[tuple[int | Decimal, dict[str, str], int]] = [
        (Decimal("16.5"), {"team": "a"}, 1),
        (20, {}, 2),
    ]
    for n, (credits, tags, hours) in enumerate(uses):
        record = fc.UsageRecord(f"r{n}", "a", "standard", 1, credits, "production", tags,
                                None, start, 0)  # fmt: skip
        expected.book(record, start + hours * HOUR)
    expected.alerts.clear()  # format 1 had no alerts
    loaded = Ledger.from_state(FORMAT_1, CARD)
    assert loaded.to_state() == expected.to_state()
    later = start + 30 * HOUR
    assert loaded.balance(later) == expected.balance(later)
    assert loaded.grants(later) == expected.grants(later)
    assert loaded.budgets(later) == expected.budgets(later)


def test_amounts_keep_their_type_and_representation() -> None:
    ledger = Ledger(CARD)
    ledger.grant(Decimal("20"), now_ns=T0)
    ledger.grant(30, now_ns=T0)
    ledger.book(fc.UsageRecord("r", "a", "standard", 1, Decimal("1.50"), "production", {},
                               None, T0, 0), T0)  # fmt: skip
    state = json.loads(json.dumps(ledger.to_state()))
    assert [g[1:3] for g in state["grants"]] == [["20", "18.50"], [30, 30]]
    assert (state["used"], state["granted"]) == ("1.50", "50")
    again = Ledger.from_state(state, CARD)
    assert again.to_state() == state
    assert str(again.balance(T0).credits) == "48.50"


def test_a_hold_taken_before_a_rebuild_is_released_by_the_rebuilt_ledger() -> None:
    ledger = Ledger(CARD, overdraft="deny")
    ledger.grant(100, now_ns=T0)
    ledger.set_budget(50, now_ns=T0, tags={"team": "a"}, period="day")
    hold = ledger.authorize("a", 40, {"team": "a"}, T0)
    again = rebuilt(ledger)
    with pytest.raises(fc.BudgetExceeded):
        again.authorize("b", 20, {"team": "a"}, T0)
    with pytest.raises(fc.InsufficientCredits):
        again.authorize("c", 70, {}, T0)
    again.release(hold)
    assert again.balance(T0).held == 0
    assert again.authorize("b", 50, {"team": "a"}, T0).budgets == ("budget-1",)


def test_a_hold_is_released_from_a_budget_replaced_meanwhile() -> None:
    ledger = Ledger(CARD)
    ledger.set_budget(50, now_ns=T0, tags={"team": "a"}, period="day")
    hold = ledger.authorize("a", 40, {"team": "a"}, T0)
    ledger.set_budget(60, now_ns=T0, tags={"team": "a"}, period="day")  # replaces it
    ledger.release(hold)
    ledger.authorize("b", 60, {"team": "a"}, T0)  # nothing is held any more


class LedgerRoundTrip(RuleBasedStateMachine):
    """Every operation of the ledger, each also applied to the ledger rebuilt from its state."""

    holds = Bundle("holds")

    def __init__(self) -> None:
        super().__init__()
        self.now = T0
        self.ids = itertools.count(1)
        self.ledger = Ledger(CARD)
        self.copy = rebuilt(self.ledger)

    @initialize(overdraft=st.sampled_from(["allow", "deny"]))
    def start(self, overdraft: str) -> None:
        self.ledger = Ledger(CARD, overdraft=overdraft)  # type: ignore[arg-type]
        self.copy = rebuilt(self.ledger)

    def both(self, call: Any) -> tuple[Any, Any]:
        """Call `call` on the ledger and on its copy; both must give the same outcome."""
        mine, theirs = outcome(lambda: call(self.ledger)), outcome(lambda: call(self.copy))
        assert mine == theirs
        return mine, theirs

    def record(self, credits: Any, team: str | None, end_hours: int) -> fc.UsageRecord:
        end = self.now + end_hours * HOUR
        tags = {"team": team} if team else {}
        return fc.UsageRecord(f"r{next(self.ids)}", "a", "standard", 1, credits, "production",
                              tags, None, end - HOUR // 2, HOUR // 2)  # fmt: skip

    @rule(
        credits=positive,
        priority=st.integers(0, 2),
        expires=st.one_of(st.none(), st.integers(-1, 72)),
    )
    def grant(self, credits: Any, priority: int, expires: int | None) -> None:
        expires_ns = None if expires is None else self.now + expires * HOUR
        self.both(lambda led: led.grant(credits, now_ns=self.now, priority=priority,
                                        expires_ns=expires_ns))  # fmt: skip

    @rule(credits=amounts, team=teams, end_hours=st.integers(-48, 3))
    def book(self, credits: Any, team: str | None, end_hours: int) -> None:
        record = self.record(credits, team, end_hours)
        self.both(lambda led: led.book(record, min(self.now, record.start_time_ns + HOUR // 2)))

    @rule(batch=st.lists(st.tuples(amounts, teams, st.integers(-48, 3)), min_size=1, max_size=5))
    def book_many(self, batch: list[tuple[Any, str | None, int]]) -> None:
        records = [self.record(*args) for args in batch]
        self.both(lambda led: led.book_many(records, self.now))

    @rule(target=holds, credits=amounts, team=teams)
    def authorize(self, credits: Any, team: str | None) -> Any:
        tags = {"team": team} if team else {}
        holds: list[Hold] = []

        def take(led: Ledger) -> Hold:
            hold = led.authorize("a", credits, tags, self.now)
            holds.append(hold)
            return hold

        mine, _ = self.both(take)
        if mine[0] == "raised":
            return multiple()
        return (holds[0], holds[1])

    @rule(pair=consumes(holds))
    def release(self, pair: tuple[Hold, Hold]) -> None:
        mine, theirs = pair
        self.ledger.release(mine)
        self.copy.release(theirs)

    @rule(pair=consumes(holds), team=teams, end_hours=st.integers(-2, 0))
    def book_held(self, pair: tuple[Hold, Hold], team: str | None, end_hours: int) -> None:
        mine, theirs = pair
        record = self.record(mine.credits, team, end_hours)
        at = record.start_time_ns + HOUR // 2
        assert self.ledger.book(record, at, mine) == self.copy.book(record, at, theirs)

    @rule(
        credits=amounts,
        team=teams,
        period=st.sampled_from(["day", "month", None]),
        hard=st.booleans(),
    )
    def set_budget(self, credits: Any, team: str | None, period: Any, hard: bool) -> None:
        tags = {"team": team} if team else {}
        self.both(lambda led: led.set_budget(credits, now_ns=self.now, tags=tags, period=period,
                                             hard=hard))  # fmt: skip

    @rule(index=st.integers(0, 3))
    def remove_budget(self, index: int) -> None:
        ids = [b.id for b in self.ledger.budgets(self.now)]
        budget_id = ids[index] if index < len(ids) else "budget-none"
        self.both(lambda led: led.remove_budget(budget_id))

    @rule(
        threshold=st.one_of(
            st.tuples(st.just("credits"), st.integers(-50, 500)),
            st.tuples(st.just("percent"), st.decimals("1", "100", places=0)),
        )
    )
    def watch(self, threshold: tuple[str, Any]) -> None:
        kind, value = threshold
        self.both(lambda led: led.watch_low_balance(now_ns=self.now, **{kind: value}))

    @rule(hours=st.integers(0, 24 * 40))
    def advance(self, hours: int) -> None:
        self.now += hours * HOUR

    @invariant()
    def a_rebuilt_ledger_equals_the_original(self) -> None:
        state = self.ledger.to_state()
        assert self.copy.to_state() == state  # the last operation left both alike
        copy = rebuilt(self.ledger)
        assert copy.to_state() == state
        assert copy.alerts == self.ledger.alerts
        now = self.now
        assert copy.balance(now) == self.ledger.balance(now)  # credits, owed, held, ...
        assert copy.grants(now) == self.ledger.grants(now)
        assert copy.budgets(now) == self.ledger.budgets(now)
        assert copy.authorizes == self.ledger.authorizes
        assert copy.reacts == self.ledger.reacts
        assert copy.to_state() == self.ledger.to_state()
        self.copy = copy  # the next operation runs on this copy too


LedgerRoundTrip.TestCase.settings = settings(
    max_examples=100, stateful_step_count=25, deadline=None
)
test_a_rebuilt_ledger_behaves_like_the_original = LedgerRoundTrip.TestCase
