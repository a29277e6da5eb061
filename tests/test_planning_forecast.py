"""Forecasts: seasonality, P50/P90, run-out dates, packs, backtests and daily inputs."""

from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal
from pathlib import Path

import pytest

import flexcredits_sdk as fc
from flexcredits_sdk import planning

MONDAY = dt.date(2026, 1, 5)
WEEK = (1.2, 1.2, 1.1, 1.0, 1.0, 0.4, 0.3)


def usage(
    days: int = 84, base: int = 10_000, noise: float = 0.05, seed: int = 1
) -> dict[dt.date, int]:
    rng = random.Random(seed)
    return {
        MONDAY + dt.timedelta(days=i): int(base * WEEK[i % 7] * rng.gauss(1, noise))
        for i in range(days)
    }


def test_weekly_pattern_and_totals() -> None:
    result = planning.forecast(usage(), balance=500_000, until=dt.date(2026, 6, 30))
    assert result.start == dt.date(2026, 3, 30)  # a Monday, the day after the history
    assert len(result.days) == 90
    assert result.weekly["Mon"] > 2 * result.weekly["Sun"]
    # Weekdays forecast well above weekends.
    first = result.days[:7]
    assert min(d.p50 for d in first[:5]) > max(d.p50 for d in first[5:])
    for day in result.days:
        assert day.p90 >= day.p50 >= 0
        assert day.cumulative_p90 >= day.cumulative_p50
    # About 62,000 credits a week: 30 days are about 266,000.
    assert 250_000 < result.next_30[0] < 290_000
    assert result.next_30[1] >= result.next_30[0]
    assert result.next_90[0] > 2.5 * result.next_30[0]


def test_run_out_dates_and_packs() -> None:
    result = planning.forecast(usage(), balance=300_000, until=dt.date(2026, 6, 20))
    assert result.runs_out_p50 is not None
    assert result.runs_out_p90 is not None
    assert result.runs_out_p90 <= result.runs_out_p50
    assert dt.date(2026, 4, 20) < result.runs_out_p50 < dt.date(2026, 5, 10)
    p50 = next(d for d in result.days if d.date == dt.date(2026, 6, 20)).cumulative_p50
    assert result.packs_p50 == -(-(p50 - 300_000) // 100_000)
    assert result.packs_p90 is not None
    assert result.packs_p90 >= result.packs_p50
    rich = planning.forecast(usage(), balance=10**9, until=dt.date(2026, 4, 30))
    assert rich.runs_out_p50 is None
    assert rich.packs_p50 == rich.packs_p90 == 0
    plain = planning.forecast(usage())
    assert plain.runs_out_p50 is None
    assert plain.packs_p50 is None


def test_forecast_is_repeatable_and_seeded() -> None:
    a = planning.forecast(usage(), horizon=30, seed=3)
    b = planning.forecast(usage(), horizon=30, seed=3)
    assert a == b
    assert len(a.days) == 30
    assert "seed 3" in a.method


def test_until_beyond_horizon_extends_the_simulation() -> None:
    result = planning.forecast(
        usage(), horizon=30, until=dt.date(2026, 12, 31), pack_credits=25_000
    )
    assert len(result.days) == 30
    assert result.packs_p50 is not None
    assert result.packs_p50 > 30


def test_missing_days_count_as_zero_and_decimals_are_accepted() -> None:
    daily: dict[dt.date, int | Decimal] = dict(usage(days=28))
    del daily[MONDAY + dt.timedelta(days=10)]
    daily[MONDAY + dt.timedelta(days=3)] = Decimal("9999.5")
    result = planning.forecast(daily)
    assert result.start == MONDAY + dt.timedelta(days=28)


@pytest.mark.parametrize(
    ("daily", "kwargs", "field"),
    [
        ({}, {}, "daily"),
        ({MONDAY: 1, MONDAY + dt.timedelta(days=5): 2}, {}, "daily"),
        ({MONDAY: 1.5}, {}, f"daily[{MONDAY}]"),
        ({MONDAY: -1}, {}, f"daily[{MONDAY}]"),
        ({"2026-01-05": 1}, {}, "daily"),
        (usage(days=28), {"horizon": 0}, "horizon"),
        (usage(days=28), {"pack_credits": 0}, "pack_credits"),
        (usage(days=28), {"paths": 5}, "paths"),
        (usage(days=28), {"balance": 1.5}, "balance"),
        (usage(days=28), {"until": MONDAY}, "until"),
    ],
)
def test_bad_input(daily: dict[object, object], kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(fc.ConfigurationError) as info:
        planning.forecast(daily, **kwargs)  # type: ignore[arg-type]
    assert info.value.field == field


def test_backtest_beats_the_seasonal_naive_baseline() -> None:
    result = planning.backtest(usage(days=140, noise=0.1), weeks=6)
    assert result.weeks == 6
    assert result.mape < result.baseline_mape
    assert result.mape < Decimal(12)
    assert result.weekly_mape < result.mape
    with pytest.raises(fc.ConfigurationError, match="weeks"):
        planning.backtest(usage(days=28), weeks=3)
    with pytest.raises(fc.ConfigurationError, match="weeks"):
        planning.backtest(usage(days=28), weeks=0)


def test_daily_usage_from_a_wallet(clock: object) -> None:
    wallet = fc.OfflineWallet(clock=clock)  # type: ignore[arg-type]
    meter = fc.Meter(wallet=wallet, clock=clock)  # type: ignore[arg-type]

    @meter.metered_action
    def lookup() -> None:
        return None

    for _ in range(3):
        lookup()
    clock.advance(86_400)  # type: ignore[attr-defined]
    lookup()
    meter.flush()
    daily = planning.daily_from_wallet(wallet)
    assert sorted(daily.values()) == [20, 60]


def test_daily_usage_from_a_history_and_an_export(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parent.parent
    daily = planning.daily_from_history(root / "examples" / "history.jsonl")
    assert min(daily) == dt.date(2026, 3, 2)
    rows = list(planning.read_history(root / "examples" / "history.jsonl"))
    expected = sum(16 if r.environment == "sandbox" else 20 for r in rows)
    assert sum(daily.values()) == expected
    with pytest.raises(fc.ConfigurationError, match="credit plan"):
        planning.daily_from_history(root / "examples" / "history.jsonl", "per-conversation")
    export = tmp_path / "daily.csv"
    export.write_text("date,credits\n2026-03-01,100\n2026-03-02,2.5\n2026-03-01,1\n")
    assert planning.read_daily(export) == {
        dt.date(2026, 3, 1): 101,
        dt.date(2026, 3, 2): Decimal("2.5"),
    }
    for body, field in (
        ("day,credits\n", "header"),
        ("date,credits\nmonday,1\n", "date"),
        ("date,credits\n2026-03-01,1.5e\n", "credits"),
        ("date,credits\n2026-03-01,-1\n", "credits"),
    ):
        export.write_text(body)
        with pytest.raises(planning.HistoryError) as info:
            planning.read_daily(export)
        assert info.value.field == field
