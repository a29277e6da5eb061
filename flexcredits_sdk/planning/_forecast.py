"""Forecasts of daily credit use: P50 and P90, run-out dates and packs to buy."""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Iterable, Mapping
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict

from .._exceptions import ConfigurationError
from ._holt_winters import SEASON, quantile
from ._models import predict

__all__ = ["Backtest", "Forecast", "ForecastDay", "backtest", "forecast"]

#: Days of history the forecast needs (two weeks, to see the weekly pattern).
MIN_DAYS = 2 * SEASON
#: The most credits a day can hold (a bound on numbers read from outside).
MAX_DAILY = 10**15
_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ForecastDay(_Model):
    """One forecast day, in whole credits.

    Attributes:
        date: The day.
        p50: Median usage that day.
        p90: Usage exceeded one day in ten.
        cumulative_p50: Median usage from the first forecast day to this one.
        cumulative_p90: Usage to this day exceeded one time in ten.
    """

    date: _dt.date
    p50: int
    p90: int
    cumulative_p50: int
    cumulative_p90: int


class Forecast(_Model):
    """Expected credit use and what it means for the balance.

    Attributes:
        start: The first forecast day (the day after the history ends).
        days: One entry per forecast day.
        next_30: Usage over the next 30 days at P50 and P90.
        next_90: Usage over the next 90 days at P50 and P90.
        weekly: Mean usage by weekday over the history (``"Mon"`` .. ``"Sun"``).
        balance: The balance the run-out dates are for, if given.
        runs_out_p50: The day the balance is used up at median usage (``None``: not within
            the forecast).
        runs_out_p90: The day it is used up at P90 usage (a busy scenario).
        until: The date the packs should last to, if given.
        pack_credits: Credits per pack.
        packs_p50: Packs to buy to last until `until` at median usage.
        packs_p90: Packs to buy to last until `until` at P90 usage.
        model: The model that ran: with the `forecast` extra, the median of the ETS form
            chosen by AICc, Theta and Holt-Winters (e.g.
            ``"median of ETS(M,Ad,M), Theta and Holt-Winters"``); else
            ``"Holt-Winters (built-in)"``.
        method: How the forecast was made.
    """

    start: _dt.date
    days: list[ForecastDay]
    next_30: tuple[int, int]
    next_90: tuple[int, int]
    weekly: dict[str, int]
    balance: int | Decimal | None = None
    runs_out_p50: _dt.date | None = None
    runs_out_p90: _dt.date | None = None
    until: _dt.date | None = None
    pack_credits: int
    packs_p50: int | None = None
    packs_p90: int | None = None
    model: str
    method: str


class Backtest(_Model):
    """The error of forecasts made on held-out weeks.

    Attributes:
        weeks: Weeks held out; each was forecast from the data before it.
        mape: Mean absolute percentage error of the daily P50 forecasts.
        weekly_mape: The same for each week's total (what a budget cares about).
        baseline_mape: Daily MAPE of the seasonal-naive forecast (each day as a week before).
    """

    weeks: int
    mape: Decimal
    weekly_mape: Decimal
    baseline_mape: Decimal


def _credits(value: float) -> int:
    return int(Decimal(repr(value)).to_integral_value(ROUND_HALF_EVEN))


def _series(
    daily: Mapping[_dt.date, Any] | Iterable[tuple[_dt.date, Any]],
) -> tuple[_dt.date, list[float]]:
    items = list(daily.items()) if isinstance(daily, Mapping) else list(daily)
    totals: dict[_dt.date, Decimal] = {}
    for day, credits in items:
        if not isinstance(day, _dt.date) or isinstance(day, _dt.datetime):
            shown = str(day) if isinstance(day, _dt.date) else day
            raise ConfigurationError("daily", shown, "keys must be datetime.date values")
        if (
            isinstance(credits, bool)
            or not isinstance(credits, int | Decimal)
            or (isinstance(credits, Decimal) and not credits.is_finite())
            or not 0 <= credits <= MAX_DAILY
        ):
            raise ConfigurationError(
                f"daily[{day}]",
                credits,
                f"must be credits from 0 to {MAX_DAILY:,} (int or Decimal)",
            )
        totals[day] = totals.get(day, Decimal(0)) + credits
    if not totals:
        raise ConfigurationError("daily", "no days", f"needs at least {MIN_DAYS} days of usage")
    first, last = min(totals), max(totals)
    span = (last - first).days + 1
    if span < MIN_DAYS:
        raise ConfigurationError(
            "daily",
            f"{span} days, {first} to {last}",
            f"needs at least {MIN_DAYS} days to see a weekly pattern",
        )
    zero = Decimal(0)
    values = [float(totals.get(first + _dt.timedelta(days=i), zero)) for i in range(span)]
    return first, values


def forecast(
    daily: Mapping[_dt.date, int | Decimal] | Iterable[tuple[_dt.date, int | Decimal]],
    *,
    horizon: int = 90,
    balance: int | Decimal | None = None,
    until: _dt.date | None = None,
    pack_credits: int = 100_000,
    paths: int = 1000,
    seed: int = 0,
) -> Forecast:
    """Forecast daily credit use after the last day of `daily`.

    Args:
        daily: Credits used per day (days missing between the first and last count as 0).
        horizon: Days to forecast (at least 90 are always simulated for the 90-day total,
            and more if `until` is later).
        balance: Credits left; gives the run-out dates.
        until: A date the credits should last to; gives the packs to buy.
        pack_credits: Credits per pack (100,000 for Agentforce Flex Credits).
        paths: Simulated futures behind the P50 and P90 figures.
        seed: Seed of the simulation, so a forecast can be repeated exactly.

    Returns:
        The forecast. With the `forecast` extra (statsmodels) it is the median of an ETS model
        chosen by AICc, the Theta method and the built-in Holt-Winters model, with P90
        calibrated on held-out days; without it, the built-in model alone. `Forecast.model`
        names the model that ran.

    Raises:
        ConfigurationError: Fewer than 14 days, negative, float or unbounded usage (over
            `MAX_DAILY` a day, infinite, NaN), a negative balance, or a bad option.
    """
    for name, value, low in (
        ("horizon", horizon, 1),
        ("pack_credits", pack_credits, 1),
        ("paths", paths, 10),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigurationError(name, value, f"must be an int of at least {low}")
    if balance is not None and (
        isinstance(balance, bool)
        or not isinstance(balance, int | Decimal)
        or (isinstance(balance, Decimal) and not balance.is_finite())
    ):
        raise ConfigurationError("balance", balance, "must be credits (int or Decimal)")
    if balance is not None and balance < 0:
        raise ConfigurationError("balance", str(balance), "must not be negative")
    first, values = _series(daily)
    start = first + _dt.timedelta(days=len(values))
    if until is not None and (not isinstance(until, _dt.date) or until < start):
        shown = str(until) if isinstance(until, _dt.date) else until
        raise ConfigurationError("until", shown, f"must be a date on or after {start}")
    length = max(horizon, 90, ((until - start).days + 1) if until else 0)
    prediction = predict(values, period=SEASON, horizon=length, paths=paths, seed=seed)
    futures = prediction.paths
    days: list[ForecastDay] = []
    running = [0.0] * paths
    for h in range(length):
        today = [path[h] for path in futures]
        running = [r + v for r, v in zip(running, today, strict=True)]
        days.append(
            ForecastDay(
                date=start + _dt.timedelta(days=h),
                p50=_credits(quantile(today, 0.5)),
                p90=_credits(quantile(today, 0.9)),
                cumulative_p50=_credits(quantile(running, 0.5)),
                cumulative_p90=_credits(quantile(running, 0.9)),
            )
        )
    weekly: list[float] = [0.0] * SEASON
    counts = [0] * SEASON
    for i, used in enumerate(values):
        weekday = (first + _dt.timedelta(days=i)).weekday()
        weekly[weekday] += used
        counts[weekday] += 1

    def runs_out(key: str) -> _dt.date | None:
        if balance is None:
            return None
        return next((d.date for d in days if getattr(d, key) >= balance), None)

    def packs(key: str) -> int | None:
        if until is None:
            return None
        need = getattr(days[(until - start).days], key) - (balance or 0)
        return max(math.ceil(Decimal(need) / pack_credits), 0)

    return Forecast(
        start=start,
        days=days[:horizon],
        next_30=(days[29].cumulative_p50, days[29].cumulative_p90),
        next_90=(days[89].cumulative_p50, days[89].cumulative_p90),
        weekly={_WEEKDAYS[d]: _credits(weekly[d] / counts[d]) for d in range(SEASON)},
        balance=balance,
        runs_out_p50=runs_out("cumulative_p50"),
        runs_out_p90=runs_out("cumulative_p90"),
        until=until,
        pack_credits=pack_credits,
        packs_p50=packs("cumulative_p50"),
        packs_p90=packs("cumulative_p90"),
        model=prediction.model,
        method=prediction.method,
    )


def _mape(pairs: list[tuple[float, float]]) -> Decimal:
    errors = [abs(guess - actual) / actual for actual, guess in pairs if actual > 0]
    if not errors:
        return Decimal(0)
    return Decimal(repr(100 * sum(errors) / len(errors))).quantize(Decimal("0.1"))


def backtest(
    daily: Mapping[_dt.date, int | Decimal] | Iterable[tuple[_dt.date, int | Decimal]],
    *,
    weeks: int = 4,
) -> Backtest:
    """Forecast each of the last `weeks` weeks from the data before it, and score it.

    Raises:
        ConfigurationError: Too few days to hold out `weeks` weeks and keep two to fit.
    """
    if isinstance(weeks, bool) or not isinstance(weeks, int) or weeks < 1:
        raise ConfigurationError("weeks", weeks, "must be an int of at least 1")
    _, values = _series(daily)
    if len(values) - weeks * SEASON < MIN_DAYS:
        raise ConfigurationError(
            "weeks", weeks, f"leaves fewer than {MIN_DAYS} of {len(values)} days to fit"
        )
    daily_pairs: list[tuple[float, float]] = []
    weekly_pairs: list[tuple[float, float]] = []
    naive_pairs: list[tuple[float, float]] = []
    for k in range(weeks, 0, -1):
        cut = len(values) - k * SEASON
        train, test = values[:cut], values[cut : cut + SEASON]
        guess = list(
            predict(train, period=SEASON, horizon=SEASON, paths=10, seed=0, intervals=False).point
        )
        daily_pairs += list(zip(test, guess, strict=True))
        weekly_pairs.append((sum(test), sum(guess)))
        naive_pairs += list(zip(test, train[-SEASON:], strict=True))
    return Backtest(
        weeks=weeks,
        mape=_mape(daily_pairs),
        weekly_mape=_mape(weekly_pairs),
        baseline_mape=_mape(naive_pairs),
    )
