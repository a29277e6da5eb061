"""The quantile sketch: exact while it can be, within 0.5% after it folds."""

from __future__ import annotations

import math
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from flexcredits_sdk.planning._sketch import QuantileSketch


def _exact(values: list[int], q: Decimal) -> int:
    ordered = sorted(values)
    return ordered[max(math.ceil(q * len(ordered)), 1) - 1]


@given(st.lists(st.integers(min_value=0, max_value=50), min_size=1, max_size=200))
def test_exact_quantiles(values: list[int]) -> None:
    sketch = QuantileSketch()
    for v in values:
        sketch.add(v)
    assert sketch.exact
    for q in (Decimal("0.5"), Decimal("0.9"), Decimal(1)):
        assert sketch.quantile(q) == _exact(values, q)


@given(st.lists(st.integers(min_value=1, max_value=10**9), min_size=20, max_size=300, unique=True))
def test_folded_quantiles_are_within_half_a_percent(values: list[int]) -> None:
    sketch = QuantileSketch(max_exact=8)
    for v in values:
        sketch.add(v)
    assert not sketch.exact
    for q in (Decimal("0.5"), Decimal("0.9"), Decimal(1)):
        want = _exact(values, q)
        error = Decimal(sketch.quantile(q)) - want
        assert abs(error) <= Decimal("0.0051") * want


def test_zero_and_empty() -> None:
    sketch = QuantileSketch(max_exact=1)
    assert sketch.quantile(Decimal("0.5")) == 0
    sketch.add(0, 3)
    sketch.add(Decimal("2.5"))
    sketch.add(7)
    assert not sketch.exact
    assert sketch.count == 5
    assert sketch.quantile(Decimal("0.5")) == 0
    assert abs(Decimal(sketch.quantile(Decimal(1))) - 7) <= Decimal("0.035")
