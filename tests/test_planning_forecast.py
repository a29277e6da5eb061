"""Forecasts: seasonality, P50/P90, run-out dates, packs, backtests and daily inputs."""

from __future__ import annotations

import datetime as dt
import random
import re
import sys
from decimal import Decimal
from pathlib import Path

import pytest

import flexcredits_sdk as fc
from flexcredits_sdk import planning
from flexcredits_sdk.planning import _models

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
        ({MONDAY: 10**15 + 1}, {}, f"daily[{MONDAY}]"),
        ({MONDAY: Decimal("Infinity")}, {}, f"daily[{MONDAY}]"),
        ({MONDAY: Decimal("NaN")}, {}, f"daily[{MONDAY}]"),
        ({MONDAY: Decimal("sNaN")}, {}, f"daily[{MONDAY}]"),
        ({"2026-01-05": 1}, {}, "daily"),
        (usage(days=28), {"horizon": 0}, "horizon"),
        (usage(days=28), {"pack_credits": 0}, "pack_credits"),
        (usage(days=28), {"paths": 5}, "paths"),
        (usage(days=28), {"balance": 1.5}, "balance"),
        (usage(days=28), {"balance": Decimal("NaN")}, "balance"),
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


def _daily(values: list[float]) -> dict[dt.date, int]:
    return {MONDAY + dt.timedelta(days=i): max(round(v), 0) for i, v in enumerate(values)}


def _ets_form(result: planning.Forecast) -> tuple[str, ...]:
    found = re.search(r"ETS\((\w),(\w+),(\w)\)", result.model)
    assert found is not None, result.model
    return found.groups()


def _structured(kind: str) -> list[float]:
    rng = random.Random(0)
    if kind == "multiplicative season":  # the weekly swing grows with the level
        return [1000 * 1.01**i * WEEK[i % 7] * rng.gauss(1, 0.03) for i in range(140)]
    if kind == "additive season":  # a steady level, a swing of fixed size
        return [5000 + 1000 * (WEEK[i % 7] - 0.886) + rng.gauss(0, 100) for i in range(140)]
    if kind == "damped trend":  # growth that levels off, no weekly pattern
        return [1000 + 800 * (1 - 0.95**i) + rng.gauss(0, 10) for i in range(120)]
    assert kind == "no season"
    return [1000 + rng.gauss(0, 50) for _ in range(120)]


@pytest.mark.parametrize(
    ("kind", "trend", "season"),
    [
        ("multiplicative season", None, "M"),
        ("additive season", "N", "A"),
        ("damped trend", "Ad", "N"),
        ("no season", "N", "N"),
    ],
)
def test_the_ets_form_chosen_follows_the_structure(
    kind: str, trend: str | None, season: str
) -> None:
    result = planning.forecast(_daily(_structured(kind)), horizon=14, paths=50)
    assert result.model.startswith("median of ETS(")
    assert result.model.endswith(", Theta and Holt-Winters")
    _, found_trend, found_season = _ets_form(result)
    assert found_season == season
    if trend is not None:
        assert found_trend == trend
    assert "chosen by AICc among 15 ETS forms, season of 7" in result.method


def test_a_series_with_zero_days_gets_no_multiplicative_form() -> None:
    rng = random.Random(3)
    values = [0 if i % 7 == 6 else 1000 * WEEK[i % 7] * rng.gauss(1, 0.05) for i in range(84)]
    result = planning.forecast(_daily(values), horizon=14)
    error, _, season = _ets_form(result)
    assert (error, season) == ("A", "A")
    assert "among 6 ETS forms" in result.method
    assert all(day.p50 < 300 for day in result.days if day.date.weekday() == 6)


def test_p90_covers_about_nine_held_out_days_in_ten() -> None:
    covered = held_out = 0
    for seed in range(5):
        rng = random.Random(seed)
        values = [10_000 * 1.003**i * WEEK[i % 7] * rng.gauss(1, 0.1) for i in range(196)]
        daily = _daily(values)
        days = sorted(daily)
        result = planning.forecast({d: daily[d] for d in days[:168]}, horizon=28, paths=400)
        assert "so that P90 covered 90% of the values held out at 3 origins" in result.method
        for day in result.days:
            covered += daily[day.date] <= day.p90
            held_out += 1
    assert held_out == 140
    assert 0.85 <= covered / held_out <= 0.95


def test_two_weeks_are_enough_with_the_library() -> None:
    result = planning.forecast(usage(days=14), horizon=30)
    assert "no room to hold out" in result.method
    assert all(day.p90 >= day.p50 > 0 for day in result.days)


def test_the_built_in_model_runs_without_the_library(monkeypatch: pytest.MonkeyPatch) -> None:
    with_library = planning.forecast(usage(), horizon=30)
    assert with_library.model.startswith("median of ETS(")
    monkeypatch.setitem(sys.modules, "statsmodels", None)  # `import statsmodels` now fails
    result = planning.forecast(usage(), balance=500_000)
    assert result.model == "Holt-Winters (built-in)"
    assert 'install "flexcredits-sdk[forecast]"' in result.method
    assert "season of 7" in result.method
    assert 250_000 < result.next_30[0] < 290_000
    assert abs(result.next_30[0] - with_library.next_30[0]) < 0.05 * with_library.next_30[0]
    assert planning.backtest(usage(days=140, noise=0.1), weeks=2).mape < Decimal(12)


@pytest.mark.parametrize(
    ("frequency", "length", "season"),
    [("daily", 14, 7), ("weekly", 103, 1), ("weekly", 104, 52), ("monthly", 36, 12)],
)
def test_the_season_comes_from_the_frequency(frequency: str, length: int, season: int) -> None:
    assert _models.season_for(frequency, length) == season
    assert _models.season_for("yearly", 100) == 1


def test_an_unknown_frequency_is_refused() -> None:
    with pytest.raises(fc.ConfigurationError) as info:
        _models.season_for("hourly", 100)
    assert info.value.field == "frequency"
    assert "hourly" in str(info.value)
    assert "daily" in str(info.value)


def test_monthly_and_yearly_series_forecast_with_their_season() -> None:
    rng = random.Random(5)
    monthly = [
        100 * 1.01**i * (1 + 0.3 * ((i % 12) in (10, 11))) * rng.gauss(1, 0.02) for i in range(72)
    ]
    result = _models.predict(monthly, period=12, horizon=12, paths=200, seed=0)
    assert "season of 12" in result.method
    assert result.point[10] > 1.15 * result.point[8]  # November and December stand out
    yearly = [50 + 2 * i + rng.gauss(0, 1) for i in range(40)]
    result = _models.predict(yearly, period=1, horizon=5, paths=200, seed=0)
    assert "season of 1" in result.method
    assert 125 < result.point[0] < 136  # the trend goes on: about 130
    built_in = _models.builtin(monthly, period=12, horizon=12, paths=50, seed=0)
    assert built_in.point[10] > 1.15 * built_in.point[8]
    assert len(built_in.paths) == 50
