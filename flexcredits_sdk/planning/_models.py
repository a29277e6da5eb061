"""Which forecast model runs: the library's model selection, or the built-in model.

With the `forecast` extra (statsmodels), `_models_ets` chooses an ETS form by AICc and forecasts
with the median of it, the Theta method and the built-in Holt-Winters model, with intervals
calibrated by cross-validation. Without it, the built-in additive Holt-Winters model runs, in
plain Python (`_models_base`). Both return a `Prediction`: the point forecast, simulated
futures, and the name of the model that ran.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

from .._exceptions import ConfigurationError
from ._models_base import BUILTIN, Prediction, builtin, seasonal_naive

__all__ = [
    "BUILTIN",
    "FREQUENCIES",
    "Prediction",
    "builtin",
    "library_available",
    "predict",
    "season_for",
    "seasonal_naive",
]

#: The season (in steps) of each frequency; weekly data has a yearly season of 52 weeks.
FREQUENCIES = {"daily": 7, "weekly": 52, "monthly": 12, "quarterly": 4, "yearly": 1}


def season_for(frequency: str, length: int) -> int:
    """Return the season of a series of `length` steps at `frequency` (1: no season).

    A season needs two full cycles to be seen: weekly data of less than two years has none.

    Raises:
        ConfigurationError: An unknown frequency.
    """
    if frequency not in FREQUENCIES:
        raise ConfigurationError("frequency", frequency, f"must be one of {sorted(FREQUENCIES)}")
    period = FREQUENCIES[frequency]
    return period if length >= 2 * period else 1


def library_available() -> bool:
    """Say whether statsmodels (the `forecast` extra) can be imported."""
    with warnings.catch_warnings():  # what a library says as it loads is not the user's
        warnings.simplefilter("ignore")
        try:
            import statsmodels.tsa.exponential_smoothing.ets  # type: ignore[import-untyped]
            import statsmodels.tsa.forecasting.theta  # type: ignore[import-untyped]  # noqa: F401
        except ImportError:
            return False
    return True


def predict(
    values: Sequence[float],
    *,
    period: int,
    horizon: int,
    paths: int,
    seed: int,
    intervals: bool = True,
) -> Prediction:
    """Forecast `horizon` steps after `values` with the best model installed.

    Args:
        values: The series, at least two values, none negative.
        period: Its season in steps (1: none).
        horizon: Steps to forecast.
        paths: Simulated futures to draw.
        seed: Seed of the simulation.
        intervals: False when only the point forecast is needed (skips the calibration).
    """
    if library_available():
        from ._models_ets import predict as select

        chosen = select(
            values, period=period, horizon=horizon, paths=paths, seed=seed, intervals=intervals
        )
        if chosen is not None:
            return chosen
    return builtin(values, period=period, horizon=horizon, paths=paths, seed=seed)
