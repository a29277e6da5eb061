"""What every forecast model returns, and the models that need no library."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ._holt_winters import fit, simulate_paths

__all__ = ["BUILTIN", "Prediction", "builtin", "seasonal_naive"]

#: The name of the built-in model.
BUILTIN = "Holt-Winters (built-in)"


@dataclass(frozen=True)
class Prediction:
    """What a model predicts for the steps after a series.

    Attributes:
        point: The point forecast, one value a step.
        paths: Simulated futures, each one value a step, all at or above zero.
        model: The model that ran, e.g. ``"median of ETS(M,Ad,M), Theta and Holt-Winters"``.
        method: How it was chosen and fitted, in a sentence.
    """

    point: tuple[float, ...]
    paths: list[list[float]]
    model: str
    method: str


def seasonal_naive(values: Sequence[float], period: int, horizon: int) -> list[float]:
    """Return each step as the same step a season before (the last value if no season)."""
    n = len(values)
    period = min(max(period, 1), n)
    return [values[n - period + h % period] for h in range(horizon)]


def builtin(
    values: Sequence[float], *, period: int, horizon: int, paths: int, seed: int
) -> Prediction:
    """Forecast with the built-in additive Holt-Winters model (damped trend)."""
    if len(values) < 2 * period:
        period = 1
    model = fit(values, period)
    return Prediction(
        point=tuple(max(v, 0.0) for v in model.point(horizon)),
        paths=simulate_paths(model, horizon, paths, seed),
        model=BUILTIN,
        method=(
            f"additive Holt-Winters, damped trend, season of {period} "
            f"(alpha={model.alpha}, beta={model.beta}, gamma={model.gamma}, phi={model.phi}); "
            'install "flexcredits-sdk[forecast]" for model selection; '
            f"P50/P90 from {paths} simulated paths, seed {seed}"
        ),
    )
