"""Forecast daily credit use, and measure the forecast on held-out weeks.

    python examples/planning_forecast.py

Generates 26 weeks of daily Flex Credit use (seed 2026: a weekday/weekend pattern, 1% growth a
week and 10% day-to-day noise), backtests the forecast on the last 8 weeks, then forecasts the
next 90 days from all 26: run-out dates of a 1,500,000-credit balance and the packs to buy to
last until the end of September.
"""

from __future__ import annotations

import datetime as dt
import random

from flexcredits_sdk import planning

FIRST_DAY = dt.date(2026, 1, 5)  # a Monday
WEEKDAY_SHAPE = (1.25, 1.3, 1.2, 1.1, 1.0, 0.45, 0.35)


def synthetic_usage(weeks: int = 26, seed: int = 2026) -> dict[dt.date, int]:
    """Return daily credits: 40,000 on an average weekday, weekly pattern, growth, noise."""
    rng = random.Random(seed)
    daily = {}
    for i in range(weeks * 7):
        growth = 1.01 ** (i / 7)
        noise = rng.gauss(1, 0.10)
        daily[FIRST_DAY + dt.timedelta(days=i)] = round(
            40_000 * WEEKDAY_SHAPE[i % 7] * growth * noise
        )
    return daily


def run() -> tuple[planning.Backtest, planning.Forecast]:
    """Backtest and forecast the synthetic usage; print both."""
    daily = synthetic_usage()
    test = planning.backtest(daily, weeks=8)
    print(
        f"backtest on 8 held-out weeks: daily MAPE {test.mape}%, weekly-total MAPE "
        f"{test.weekly_mape}% (seasonal naive: {test.baseline_mape}%)"
    )
    result = planning.forecast(daily, balance=1_500_000, until=dt.date(2026, 9, 30))
    print(f"next 30 days: {result.next_30[0]:,} credits (P50), {result.next_30[1]:,} (P90)")
    print(f"next 90 days: {result.next_90[0]:,} credits (P50), {result.next_90[1]:,} (P90)")
    print(f"1,500,000 credits run out on {result.runs_out_p50} (P50), {result.runs_out_p90} (P90)")
    print(
        f"to last until {result.until}: {result.packs_p50} packs (P50), "
        f"{result.packs_p90} packs (P90) of {result.pack_credits:,} credits"
    )
    return test, result


if __name__ == "__main__":
    run()
