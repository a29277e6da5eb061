"""Additive Holt-Winters with a damped trend and weekly seasonality, in plain Python.

A daily credit series is short (weeks to a few years) and needs one well-understood model, so
this module fits it by a grid search over the smoothing constants, minimising the one-step-ahead
squared error, and draws prediction intervals by replaying bootstrapped one-step errors through
the model (a simulation that, unlike a closed formula, needs no normality and keeps usage at or
above zero). Numbers here are floats: they are statistical estimates, and `_forecast` rounds
them to whole credits.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["SEASON", "Fit", "fit", "simulate_paths"]

#: Days in a season (a week).
SEASON = 7
_ALPHAS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.7)
_BETAS = (0.0, 0.02, 0.05, 0.1)
_GAMMAS = (0.0, 0.05, 0.1, 0.2, 0.3)
_PHIS = (0.9, 0.98)


@dataclass(frozen=True)
class Fit:
    """A fitted model and its state after the last observed day.

    Attributes:
        alpha: Level smoothing.
        beta: Trend smoothing.
        gamma: Seasonal smoothing.
        phi: Trend damping (1 is no damping).
        level: Level after the last day.
        trend: Trend after the last day.
        season: Seasonal offsets for the next 7 days, in order.
        residuals: One-step-ahead errors over the series.
        sse: Their sum of squares.
    """

    alpha: float
    beta: float
    gamma: float
    phi: float
    level: float
    trend: float
    season: tuple[float, ...]
    residuals: tuple[float, ...]
    sse: float

    def point(self, horizon: int) -> list[float]:
        """Return the point forecast for the next `horizon` days."""
        out = []
        damp = 0.0
        for h in range(1, horizon + 1):
            damp += self.phi**h
            out.append(self.level + damp * self.trend + self.season[(h - 1) % SEASON])
        return out


def _start(y: Sequence[float]) -> tuple[float, float, list[float]]:
    weeks = len(y) // SEASON
    means = [sum(y[w * SEASON : (w + 1) * SEASON]) / SEASON for w in range(weeks)]
    level = means[0]
    trend = (means[1] - means[0]) / SEASON if weeks > 1 else 0.0
    season = [0.0] * SEASON
    for w in range(weeks):
        for d in range(SEASON):
            season[d] += (y[w * SEASON + d] - means[w]) / weeks
    return level, trend, season


def _run(
    y: Sequence[float], alpha: float, beta: float, gamma: float, phi: float
) -> tuple[float, float, list[float], list[float], float]:
    level, trend, season = _start(y)
    residuals = []
    sse = 0.0
    for t, value in enumerate(y):
        s = season[t % SEASON]
        guess = level + phi * trend + s
        error = value - guess
        residuals.append(error)
        sse += error * error
        new_level = alpha * (value - s) + (1 - alpha) * (level + phi * trend)
        trend = beta * (new_level - level) + (1 - beta) * phi * trend
        season[t % SEASON] = gamma * (value - new_level) + (1 - gamma) * s
        level = new_level
    n = len(y)
    ahead = [season[(n + k) % SEASON] for k in range(SEASON)]
    return level, trend, ahead, residuals, sse


def fit(y: Sequence[float]) -> Fit:
    """Fit the model to a daily series of at least two weeks.

    The first two weeks set the starting state and are scored too, so a model that cannot
    follow the start is not preferred.
    """
    best: Fit | None = None
    for alpha, beta, gamma, phi in itertools.product(_ALPHAS, _BETAS, _GAMMAS, _PHIS):
        level, trend, season, residuals, sse = _run(y, alpha, beta, gamma, phi)
        if best is None or sse < best.sse:
            best = Fit(alpha, beta, gamma, phi, level, trend, tuple(season), tuple(residuals), sse)
    assert best is not None
    return best


def simulate_paths(model: Fit, horizon: int, paths: int, seed: int) -> list[list[float]]:
    """Return `paths` simulated futures of `horizon` days, usage kept at or above zero.

    Each day's error is drawn from the fit's residuals (after its first week, when the
    state is still settling) and fed back into the state, as the model's equations do.
    """
    rng = random.Random(seed)
    pool = list(model.residuals[SEASON:]) or [0.0]
    out = []
    a, b, g, phi = model.alpha, model.beta, model.gamma, model.phi
    for _ in range(paths):
        level, trend, season = model.level, model.trend, list(model.season)
        path = []
        for h in range(horizon):
            s = season[h % SEASON]
            error = rng.choice(pool)
            value = max(level + phi * trend + s + error, 0.0)
            path.append(value)
            new_level = a * (value - s) + (1 - a) * (level + phi * trend)
            trend = b * (new_level - level) + (1 - b) * phi * trend
            season[h % SEASON] = g * (value - new_level) + (1 - g) * s
            level = new_level
        out.append(path)
    return out


def quantile(values: Sequence[float], q: float) -> float:
    """Return the `q` quantile of `values` (nearest rank)."""
    ordered = sorted(values)
    rank = max(math.ceil(q * len(ordered)), 1)
    return ordered[rank - 1]
