"""Quantiles of a stream of costs in bounded memory.

Costs per conversation take few distinct values (a conversation of n actions costs n times a
price), so the sketch counts each distinct value and its quantiles are exact. Past `MAX_EXACT`
distinct values it folds the counts into logarithmic buckets, each 1% wide (a relative error of
at most 0.5%, as DDSketch does), and its answers are marked approximate. Memory is bounded
either way: at most `MAX_EXACT` counts, then about 2,400 buckets per factor of a billion.
"""

from __future__ import annotations

import math
from decimal import Decimal

__all__ = ["MAX_EXACT", "QuantileSketch"]

#: Distinct values counted exactly before the sketch folds them into buckets.
MAX_EXACT = 65_536
_ALPHA = 0.005
_GAMMA = (1 + _ALPHA) / (1 - _ALPHA)
_LOG_GAMMA = math.log(_GAMMA)


class QuantileSketch:
    """Counts of values (credits or money), exact until there are too many distinct ones."""

    __slots__ = ("buckets", "count", "counts", "max_exact")

    def __init__(self, max_exact: int = MAX_EXACT) -> None:
        self.counts: dict[int | Decimal, int] = {}
        self.buckets: dict[int, int] | None = None
        self.count = 0
        self.max_exact = max_exact

    @property
    def exact(self) -> bool:
        """Whether every quantile is exact."""
        return self.buckets is None

    def add(self, value: int | Decimal, times: int = 1) -> None:
        """Count `value` (non-negative) `times` times."""
        self.count += times
        if self.buckets is None:
            counts = self.counts
            counts[value] = counts.get(value, 0) + times
            if len(counts) > self.max_exact:
                self._fold()
        else:
            key = self._bucket(value)
            self.buckets[key] = self.buckets.get(key, 0) + times

    @staticmethod
    def _bucket(value: int | Decimal) -> int:
        if value <= 0:
            return -(10**9)
        return math.ceil(math.log(value) / _LOG_GAMMA)

    def _fold(self) -> None:
        buckets: dict[int, int] = {}
        for value, times in self.counts.items():
            key = self._bucket(value)
            buckets[key] = buckets.get(key, 0) + times
        self.buckets = buckets
        self.counts = {}

    def quantile(self, q: Decimal) -> int | Decimal:
        """Return the smallest value with at least `q` of the counts at or below it.

        Args:
            q: Between 0 and 1, e.g. ``Decimal("0.9")``.

        Returns:
            The value (0 when nothing was counted); a bucket's midpoint, to 6 significant
            digits, once the sketch has folded.
        """
        if not self.count:
            return 0
        rank = max(math.ceil(q * self.count), 1)
        seen = 0
        if self.buckets is None:
            for value in sorted(self.counts):
                seen += self.counts[value]
                if seen >= rank:
                    return value
            raise AssertionError("unreachable")  # pragma: no cover
        for key in sorted(self.buckets):
            seen += self.buckets[key]
            if seen >= rank:
                if key == -(10**9):
                    return 0
                middle = 2 * _GAMMA**key / (_GAMMA + 1)
                return Decimal(f"{middle:.6g}")
        raise AssertionError("unreachable")  # pragma: no cover
