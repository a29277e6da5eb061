"""Amounts as a person reads them."""

from __future__ import annotations

from decimal import Decimal

import pytest

from flexcredits_sdk._format import credits_text, money_text


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (Decimal("0.100"), "$0.10"),
        (Decimal("-1234.5"), "-$1,234.50"),
        (3, "$3.00"),
        (Decimal("0.005"), "$0.01"),
    ],
)
def test_money_has_two_decimals(value: Decimal | int, text: str) -> None:
    assert money_text(value) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (20, "20"),
        (1_234_567, "1,234,567"),
        (Decimal("1E+3"), "1,000"),
        (Decimal("1234.5000"), "1,234.5"),
        (Decimal("0.0001"), "0.0001"),
    ],
)
def test_credits_are_exact(value: Decimal | int, text: str) -> None:
    assert credits_text(value) == text
