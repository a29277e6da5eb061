"""How amounts read where a person reads them: money to the cent, credits exactly."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

__all__ = ["credits_text", "money_text"]


def money_text(value: Decimal | int, currency: str = "$") -> str:
    """Return money to the cent (halves up), with thousands separators: ``$1,234.50``."""
    amount = Decimal(value).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    sign = "-" if amount < 0 else ""
    return f"{sign}{currency}{abs(amount):,.2f}"


def credits_text(value: Decimal | int) -> str:
    """Return credits exactly, with thousands separators and no exponent: ``1,234.5``."""
    if isinstance(value, int):
        return f"{value:,}"
    text = f"{value.normalize():,f}"
    return text.rstrip("0").rstrip(".") if "." in text else text
