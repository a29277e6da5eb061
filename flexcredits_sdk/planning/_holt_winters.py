"""Additive Holt-Winters with a damped trend and a season, in plain Python.

The built-in forecast model, used when the `forecast` extra (statsmodels) is not installed. A
daily credit series is short (weeks to a few years) and needs one well-understood model, so
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

#: Days in a season (a week): the default period.
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
        season: Seasonal offsets for the next `period` steps, in order.
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
    period: int = SEASON

    def point(self, horizon: int) -> list[float]:
        """Return the point forecast for the next `horizon` days."""
        out = []
        damp = 0.0
        for h in range(1, horizon + 1):
            damp += self.phi**h
            out.append(self.level + damp * self.trend + self.season[(h - 1) % self.period])
        return out


def _start(y: Sequence[float], period: int) -> tuple[float, float, list[float]]:
    weeks = len(y) // period
    means = [sum(y[w * period : (w + 1) * period]) / period for w in range(weeks)]
    level = means[0]
    trend = (means[1] - means[0]) / period if weeks > 1 else 0.0
    season = [0.0] * period
    for w in range(weeks):
        for d in range(period):
            season[d] += (y[w * period + d] - means[w]) / weeks
    return level, trend, season


def _run(
    y: Sequence[float], alpha: float, beta: float, gamma: float, phi: float, period: int
) -> tuple[float, float, list[float], list[float], float]:
    level, trend, season = _start(y, period)
    residuals = []
    sse = 0.0
    for t, value in enumerate(y):
        s = season[t % period]
        guess = level + phi * trend + s
        error = value - guess
        residuals.append(error)
        sse += error * error
        new_level = alpha * (value - s) + (1 - alpha) * (level + phi * trend)
        trend = beta * (new_level - level) + (1 - beta) * phi * trend
        season[t % period] = gamma * (value - new_level) + (1 - gamma) * s
        level = new_level
    n = len(y)
    ahead = [season[(n + k) % period] for k in range(period)]
    return level, trend, ahead, residuals, sse


def fit(y: Sequence[float], period: int = SEASON) -> Fit:
    """Fit the model to a series of at least two seasons (`period` steps each).

    The first two seasons set the starting state and are scored too, so a model that cannot
    follow the start is not preferred.
    """
    best: Fit | None = None
    for alpha, beta, gamma, phi in itertools.product(_ALPHAS, _BETAS, _GAMMAS, _PHIS):
        level, trend, season, residuals, sse = _run(y, alpha, beta, gamma, phi, period)
        if best is None or sse < best.sse:
            best = Fit(
                alpha,
                beta,
                gamma,
                phi,
                level,
                trend,
                tuple(season),
                tuple(residuals),
                sse,
                period,
            )
    assert best is not None
    return best


def simulate_paths(model: Fit, horizon: int, paths: int, seed: int) -> list[list[float]]:
    """Return `paths` simulated futures of `horizon` days, usage kept at or above zero.

    Each day's error is drawn from the fit's residuals (after its first season, when the
    state is still settling) and fed back into the state, as the model's equations do.
    """
    rng = random.Random(seed)
    period = model.period
    pool = list(model.residuals[period:]) or [0.0]
    out = []
    a, b, g, phi = model.alpha, model.beta, model.gamma, model.phi
    for _ in range(paths):
        level, trend, season = model.level, model.trend, list(model.season)
        path = []
        for h in range(horizon):
            s = season[h % period]
            error = rng.choice(pool)
            value = max(level + phi * trend + s + error, 0.0)
            path.append(value)
            new_level = a * (value - s) + (1 - a) * (level + phi * trend)
            trend = b * (new_level - level) + (1 - b) * phi * trend
            season[h % period] = g * (value - new_level) + (1 - g) * s
            level = new_level
        out.append(path)
    return out


def quantile(values: Sequence[float], q: float) -> float:
    """Return the `q` quantile of `values` (nearest rank)."""
    ordered = sorted(values)
    rank = max(math.ceil(q * len(ordered)), 1)
    return ordered[rank - 1]
