"""The offline wallet: thread safety, usage reports, persistence, alerts."""

from __future__ import annotations

import contextlib
import datetime as _dt
import sqlite3
import threading
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import flexcredits_sdk as fc
from flexcredits_sdk.testing import FakeClock


def test_one_balance_across_environments_with_usage_per_environment() -> None:
    wallet = fc.OfflineWallet()
    wallet.buy_packs(1)
    prod = fc.Meter(wallet=wallet, environment="production")
    sandbox = fc.Meter(wallet=wallet, environment="sandbox")
    for meter in (prod, prod, sandbox):
        with meter.action("a"):
            pass
    assert wallet.balance().credits == 100_000 - 20 - 20 - 16
    rows = {r.key["environment"]: r for r in wallet.usage(group_by=["environment"])}
    assert (rows["production"].actions, rows["production"].credits) == (2, 40)
    assert (rows["sandbox"].actions, rows["sandbox"].credits, rows["sandbox"].usd) == (
        1,
        16,
        Decimal("0.080"),
    )
    assert [r.key for r in wallet.usage(environment="sandbox")] == [{}]


def test_usage_groups_by_fields_tags_and_time(clock: FakeClock) -> None:
    wallet = fc.OfflineWallet(clock=clock)
    meter = fc.Meter(wallet=wallet, clock=clock)
    with fc.tags(department="service"):
        with meter.action("a"):
            pass
        clock.advance(86_400)
        with meter.action("b", units=2):
            pass
    with meter.action("a"):
        pass
    by_dept = wallet.usage(group_by=["department"])
    assert [(r.key, r.actions, r.records, r.credits) for r in by_dept] == [
        ({"department": "service"}, 3, 2, 60),
        ({"department": None}, 1, 1, 20),
    ]
    by_day = wallet.usage(group_by=["action"], bucket="day")
    assert [tuple(r.key.values()) for r in by_day] == [
        ("b", "2026-05-29"),
        ("a", "2026-05-28"),
        ("a", "2026-05-29"),
    ]
    day_two = _dt.datetime(2026, 5, 29, tzinfo=_dt.UTC)
    assert sum(r.credits for r in wallet.usage(since=day_two)) == 60
    assert sum(r.credits for r in wallet.usage(until=day_two)) == 20
    assert len(list(wallet.records(action="a"))) == 2
    assert len(list(wallet.records(tags={"department": "service"}))) == 2
    assert len(list(wallet.records(limit=1))) == 1


def test_threads_book_every_record_exactly_once() -> None:
    wallet = fc.OfflineWallet()
    wallet.buy_packs(1)
    meter = fc.Meter(wallet=wallet)

    @meter.metered_action
    def act() -> None:
        return None

    def work() -> None:
        for _ in range(5_000):
            act()

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(list(wallet.records())) == 20_000
    assert wallet.balance().used == 400_000
    assert wallet.balance().credits == 100_000 - 400_000
    assert meter.stats().recorded == 20_000


def test_duplicates_are_booked_once() -> None:
    wallet = fc.OfflineWallet()
    with fc.Meter(wallet=wallet).action("a") as act:
        pass
    assert act.record is not None
    assert wallet.book(act.record) is False
    wallet.submit(act.record)
    assert wallet.balance().used == 20
    assert len(list(wallet.records())) == 1


def test_an_id_set_to_a_running_actions_id_is_booked_once() -> None:
    wallet = fc.OfflineWallet()
    meter = fc.Meter(wallet=wallet)
    with meter.action("first") as first, meter.action("second") as second:
        second.set_id(first.id)
    assert [r.action for r in wallet.records()] == ["second"]
    assert wallet.balance().used == 20


def test_a_meter_made_id_seen_again_is_refused_across_chunks() -> None:
    wallet = fc.OfflineWallet()
    meter = fc.Meter(wallet=wallet)

    @meter.metered_action
    def act() -> None:
        return None

    for _ in range(1_000):
        act()
    first = next(iter(wallet.records(limit=1)))
    wallet.submit(first)
    assert wallet.book(first) is False
    with meter.action("again") as again:
        again.set_id(first.id)
    for _ in range(300):  # made after the log indexed the meter's ids
        act()
    with meter.action("late") as late:
        late.set_id(list(wallet.records())[-1].id)
    records = list(wallet.records())
    assert len(records) == len({r.id for r in records}) == 1_300
    assert wallet.balance().used == 1_300 * 20
    assert first.id in [r.id for r in records]


def test_records_with_derived_ids_are_booked_once_among_made_ones() -> None:
    wallet = fc.OfflineWallet()
    meter = fc.Meter(wallet=wallet)
    for attempt in range(3):  # a workflow re-run twice after crashes
        for step in range(200):
            with meter.action("step") as act:
                act.set_id(fc.derive_id("run-1", step))
            with meter.action("log"):
                pass
        assert len(list(wallet.records(action="step"))) == 200
        assert len(list(wallet.records(action="log"))) == 200 * (attempt + 1)


def test_persists_across_restarts(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "wallet.db"
    wallet = fc.OfflineWallet(path=path, clock=clock)
    wallet.buy_packs(1)
    wallet.grant(
        500, source="promotion", priority=0, expires_at=_dt.datetime(2030, 1, 1, tzinfo=_dt.UTC)
    )
    wallet.set_budget(1000, tags={"department": "hr"}, period=None)
    meter = fc.Meter(wallet=wallet, clock=clock)
    with fc.tags(department="hr"):
        for _ in range(3):
            with meter.action("a"):
                pass
    before = (wallet.balance(), wallet.grants(), list(wallet.records()), wallet.budgets())
    wallet.shutdown()

    again = fc.OfflineWallet(path=path, clock=clock)
    after = (again.balance(), again.grants(), list(again.records()), again.budgets())
    assert after[0] == before[0]
    assert after[1] == before[1]
    assert after[2] == before[2]
    assert [(b.spent, b.limit) for b in after[3]] == [(60, 1000)]
    assert again.book(before[2][0]) is False  # still booked once after the restart
    again.shutdown()


def test_a_removed_budget_stops_refusing_and_stays_removed(
    tmp_path: Path, clock: FakeClock
) -> None:
    path = tmp_path / "wallet.db"
    wallet = fc.OfflineWallet(path=path, clock=clock)
    wallet.buy_packs(1)
    hr = wallet.set_budget(20, tags={"department": "hr"}, period=None)
    kept = wallet.set_budget(1000, tags={"department": "it"}, period=None)
    meter = fc.Meter(wallet=wallet, clock=clock)
    with fc.tags(department="hr"):
        with meter.action("a"):
            pass
        with pytest.raises(fc.BudgetExceeded), meter.action("a"):
            pass
        wallet.remove_budget(hr.id)
        with meter.action("a"):
            pass
    assert [b.id for b in wallet.budgets()] == [kept.id]
    with pytest.raises(fc.ConfigurationError) as info:
        wallet.remove_budget(hr.id)
    assert (info.value.field, info.value.value) == ("budget_id", hr.id)
    wallet.shutdown()

    again = fc.OfflineWallet(path=path, clock=clock)
    try:
        assert [b.id for b in again.budgets()] == [kept.id]
        assert again.balance().used == 40
    finally:
        again.shutdown()


def test_records_stream_in_time_order_and_resume_from_a_cursor() -> None:
    wallet = fc.OfflineWallet()
    start = 1_780_000_000 * 10**9
    batch = [
        fc.UsageRecord(
            f"r-{i:04}", "a", "standard", 1, 20, "production", {}, None, start, 1
        )._replace(start_time_ns=start + (i * 7919) % 25 * 1000)
        for i in range(1_000)
    ]
    wallet.book_many(batch)
    expected = [r.id for r in sorted(batch, key=lambda r: (r.start_time_ns, r.id))]

    stream = wallet.records(limit=300)
    assert stream.cursor is None
    head = [r.id for r in stream]
    rest = wallet.records(cursor=stream.cursor)
    assert head + [r.id for r in rest] == expected
    assert [r.id for r in wallet.records(limit=0)] == []
    assert list(rest) == []  # an iterator: used up
    for bad in ("", "not-a-cursor", 42, "MTIzOg"):  # the last: "123:" with no id
        with pytest.raises(fc.ConfigurationError) as info:
            wallet.records(cursor=bad)  # type: ignore[arg-type]
        assert (info.value.field, info.value.value) == ("cursor", bad)


def _another_program(path: Path) -> None:
    path.write_bytes(b"this is not a database" * 100)


def _another_schema(path: Path) -> None:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA user_version = 7")


def _unreadable_ledger(path: Path) -> None:
    fc.OfflineWallet(path=path).shutdown()
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("UPDATE ledger SET state = 'not json'")


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (_another_program, fc.ConfigurationError, "not a wallet file"),
        (_another_schema, fc.ConfigurationError, "schema version 7, newer than"),
        (_unreadable_ledger, fc.ConfigurationError, "holds a ledger this release cannot read"),
    ],
)
def test_a_refused_file_is_closed(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    make: Callable[[Path], None],
    error: type[Exception],
    message: str,
) -> None:
    path = tmp_path / "wallet.db"
    make(path)
    opened: list[sqlite3.Connection] = []
    connect = sqlite3.connect

    def spy(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        opened.append(connect(*args, **kwargs))
        return opened[-1]

    monkeypatch.setattr(sqlite3, "connect", spy)
    with pytest.raises(error, match=message):
        fc.OfflineWallet(path=path)
    assert len(opened) == 1
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        opened[0].execute("SELECT 1")  # closed at once, not left to the garbage collector


def test_low_balance_callbacks_and_failing_callbacks(caplog: pytest.LogCaptureFixture) -> None:
    wallet = fc.OfflineWallet()
    wallet.grant(100)
    seen: list[fc.Alert] = []

    def broken(alert: fc.Alert) -> None:
        raise RuntimeError("callback failed")

    wallet.on_low_balance("50%", seen.append)
    wallet.on_low_balance(50, broken)
    meter = fc.Meter(wallet=wallet)
    for _ in range(4):
        with meter.action("a"):
            pass
    assert [a.kind for a in seen] == ["low_balance"]
    assert seen[0].value == 40
    assert "callback failed" in caplog.text
    assert len(wallet.alerts()) == 2


def test_repr_shows_no_secrets_and_counts() -> None:
    wallet = fc.OfflineWallet()
    assert repr(wallet) == "OfflineWallet(in memory, overdraft='allow', records=0)"


@settings(max_examples=60, deadline=None)
@given(
    ops=st.lists(
        st.one_of(
            st.tuples(st.just("act"), st.integers(min_value=1, max_value=5)),
            st.tuples(st.just("grant"), st.integers(min_value=1, max_value=200)),
            st.tuples(st.just("tick"), st.integers(min_value=1, max_value=3)),
        ),
        max_size=40,
    )
)
def test_queued_and_eager_booking_agree(ops: list[tuple[str, int]]) -> None:
    """The wallet queues records when nothing reacts to them; the answers are the same."""
    clocks = [FakeClock(1_780_000_000 * 10**9), FakeClock(1_780_000_000 * 10**9)]
    lazy = fc.OfflineWallet(clock=clocks[0])
    eager = fc.OfflineWallet(clock=clocks[1])
    eager.on_low_balance(-(10**9), lambda alert: None)  # a watch makes booking eager
    expiry = _dt.datetime.fromtimestamp(clocks[0].now / 1e9 + 5 * 86_400, _dt.UTC)
    for wallet in (lazy, eager):
        wallet.grant(100, expires_at=expiry)
    meters = [fc.Meter(wallet=lazy, clock=clocks[0]), fc.Meter(wallet=eager, clock=clocks[1])]
    for op, n in ops:
        for wallet, meter, clock in zip((lazy, eager), meters, clocks, strict=True):
            if op == "act":
                with meter.action("a", units=n):
                    pass
            elif op == "grant":
                wallet.grant(n)
            else:
                clock.advance(n * 86_400)
    assert lazy.balance() == eager.balance()
    assert lazy.grants() == eager.grants()
