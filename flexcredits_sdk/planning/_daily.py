"""Daily credit use, the input of a forecast: from a wallet, an export or a history."""

from __future__ import annotations

import csv
import datetime as _dt
from collections.abc import Iterable
from decimal import Decimal
from pathlib import Path
from typing import Any

from .._exceptions import ConfigurationError, HistoryError
from .._pricing import to_exact
from ._history import HistoryFormat, HistoryRow, read_history
from ._plans import CreditPlan
from ._presets import resolve_model

__all__ = ["daily_from_history", "daily_from_wallet", "read_daily"]

Daily = dict[_dt.date, int | Decimal]


def daily_from_wallet(wallet: Any) -> Daily:
    """Return the credits a wallet booked per UTC day (any wallet with ``usage(bucket=)``)."""
    rows = wallet.usage(bucket="day")
    return {_dt.date.fromisoformat(row.key["bucket"]): row.credits for row in rows}


def daily_from_history(
    history: str | Path | Iterable[HistoryRow],
    model: CreditPlan | str | Path = "agentforce",
    *,
    format: HistoryFormat | None = None,
    skip_bad_rows: bool = False,
) -> Daily:
    """Return the credits a history's actions cost per UTC day under a credit plan.

    Args:
        history: A history file or rows.
        model: A credit plan (or its preset name or file) that prices the actions.
        format: The file's format; by its suffix when omitted.
        skip_bad_rows: Skip rows that cannot be read instead of stopping.

    Raises:
        ConfigurationError: The model is not a credit plan.
        HistoryError: A row cannot be read and `skip_bad_rows` is false.
        UnpricedAction: The plan cannot price an action.
    """
    plan = resolve_model(model)
    if not isinstance(plan, CreditPlan):
        raise ConfigurationError("model", plan.name, "must be a credit plan to count credits")
    skipped: list[HistoryError] = []
    rows = (
        read_history(history, format=format, on_bad_row=skipped.append if skip_bad_rows else None)
        if isinstance(history, str | Path)
        else history
    )
    prices: dict[tuple[str, str, str], int | Decimal] = {}
    by_day: dict[str, int | Decimal] = {}
    for row in rows:
        key = (row.action, row.action_type, row.environment)
        price = prices.get(key)
        if price is None:
            price = prices[key] = plan.credits_for(*key)
        by_day[row.day] = by_day.get(row.day, 0) + price * row.units
        if len(skipped) > 1000:
            skipped.clear()
    return {_dt.date.fromisoformat(day): credits for day, credits in sorted(by_day.items())}


def read_daily(path: str | Path) -> Daily:
    """Read daily usage from a CSV file with ``date`` and ``credits`` columns.

    Raises:
        HistoryError: A row has a bad date or credits (with its line number).
        OSError: The file cannot be read.
    """
    path = Path(path)
    daily: Daily = {}
    with path.open(encoding="utf-8", newline="") as stream:
        reader = csv.DictReader(stream)
        if not reader.fieldnames or not {"date", "credits"} <= set(reader.fieldnames):
            raise HistoryError(
                "header", reader.fieldnames, "needs 'date' and 'credits'", line=1, source=path.name
            )
        for row in reader:
            line = reader.line_num
            try:
                day = _dt.date.fromisoformat(row["date"])
            except (TypeError, ValueError):
                raise HistoryError(
                    "date", row["date"], "is not YYYY-MM-DD", line=line, source=path.name
                ) from None
            try:
                credits = to_exact(row["credits"], "credits")
            except ConfigurationError as exc:
                raise HistoryError(
                    "credits", row["credits"], exc.reason, line=line, source=path.name
                ) from None
            if credits < 0:
                raise HistoryError(
                    "credits", row["credits"], "must not be negative", line=line, source=path.name
                )
            daily[day] = daily.get(day, 0) + credits
    return daily
