"""Planning from what a wallet has booked: its records as a history, its days as a series, and
when each of its budgets runs out.

``flexcredits simulate --wallet`` and ``flexcredits forecast --wallet`` read a wallet file
(``OfflineWallet(path=...)``) or a wallet service instead of a history file. A wallet's records
come in time order, as `Simulator` reads them best; a forecast reads the credits booked per day
(``usage(bucket="day")``), overall, per budget (the records whose tags the budget's include) and
per value of a tag.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
from collections.abc import Iterator, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from .._exceptions import FlexCreditsError
from .._models import BudgetInfo
from ._forecast import Forecast, forecast
from ._history import HistoryRow, rows_from_records

__all__ = [
    "BudgetOutlook",
    "TagOutlook",
    "budget_outlooks",
    "open_wallet",
    "tag_outlooks",
    "wallet_daily",
    "wallet_rows",
]

#: Days of history a forecast needs (see `forecast`).
_MIN_DAYS = 14


@contextlib.contextmanager
def open_wallet(source: str, key: str | None) -> Iterator[Any]:
    """Open a wallet file, or the wallet service at an ``http(s)://`` URL (with `key`).

    Raises:
        click.ClickException: The file does not exist or cannot be opened, or the service's
            URL or key is refused.
    """
    from ..wallets._commands import open_wallet as _open  # the wallet commands' own rules

    is_url = source.startswith(("http://", "https://"))
    path = None if is_url else Path(source)
    with _open(path, source if is_url else None, key, None) as wallet:
        yield wallet


def wallet_rows(
    wallet: Any, since: _dt.datetime | None = None, until: _dt.datetime | None = None
) -> Iterator[HistoryRow]:
    """Return the wallet's records from `since` to `until` as history rows, in time order."""
    return rows_from_records(wallet.records(since=since, until=until))


def _by_day(rows: Sequence[Any], key: Mapping[str, str] | None = None) -> dict[_dt.date, Any]:
    daily: dict[_dt.date, Any] = {}
    for row in rows:
        if key is not None and any(row.key.get(k) != v for k, v in key.items()):
            continue
        day = _dt.date.fromisoformat(str(row.key["bucket"])[:10])
        daily[day] = daily.get(day, 0) + row.credits
    return daily


def wallet_daily(
    wallet: Any, since: _dt.datetime | None = None, until: _dt.datetime | None = None
) -> dict[_dt.date, Any]:
    """Return the credits the wallet booked per UTC day."""
    return _by_day(wallet.usage(bucket="day", since=since, until=until))


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class BudgetOutlook(_Model):
    """When a budget runs out at the forecast rate of its actions.

    Attributes:
        budget: The budget, with what it spent this period.
        left: Credits left this period.
        period_ends: The first day of the next period (``None``: the budget never resets).
        runs_out_p50: The day its actions use up what is left, at median use; ``None`` when
            not before the period ends (or within the forecast).
        runs_out_p90: The same at P90 use (a busy scenario).
        note: Why there is no forecast, when there is none (too little history).
    """

    budget: BudgetInfo
    left: int | Decimal
    period_ends: _dt.date | None
    runs_out_p50: _dt.date | None = None
    runs_out_p90: _dt.date | None = None
    note: str | None = None


class TagOutlook(_Model):
    """The forecast use of the actions carrying one value of a tag.

    Attributes:
        value: The tag's value (``None``: actions without the tag).
        next_30: Credits over the next 30 days at P50 and P90.
        note: Why there is no forecast, when there is none.
    """

    value: str | None
    next_30: tuple[int, int] | None = None
    note: str | None = None


def _period_end(period: str | None, today: _dt.date) -> _dt.date | None:
    if period == "day":
        return today + _dt.timedelta(days=1)
    if period == "month":
        return (today.replace(day=1) + _dt.timedelta(days=32)).replace(day=1)
    return None


def _within(day: _dt.date | None, end: _dt.date | None) -> _dt.date | None:
    return day if day is not None and (end is None or day < end) else None


def _forecast(daily: dict[_dt.date, Any], **options: Any) -> Forecast | str:
    if len(daily) < 2 or (max(daily) - min(daily)).days + 1 < _MIN_DAYS:
        return f"fewer than {_MIN_DAYS} days of history"
    try:
        return forecast(daily, **options)
    except FlexCreditsError as exc:
        return str(exc)


def budget_outlooks(
    wallet: Any,
    budgets: Sequence[BudgetInfo],
    *,
    today: _dt.date,
    horizon: int,
    seed: int,
) -> list[BudgetOutlook]:
    """Return, for each budget, the day its actions use up what it has left this period."""
    outlooks = []
    for budget in budgets:
        left = max(budget.limit - budget.spent, 0)
        end = _period_end(budget.period, today)
        rows = wallet.usage(group_by=sorted(budget.tags), bucket="day")
        result = _forecast(_by_day(rows, budget.tags), horizon=horizon, balance=left, seed=seed)
        if isinstance(result, str):
            outlooks.append(BudgetOutlook(budget=budget, left=left, period_ends=end, note=result))
            continue
        outlooks.append(
            BudgetOutlook(
                budget=budget,
                left=left,
                period_ends=end,
                runs_out_p50=_within(result.runs_out_p50, end),
                runs_out_p90=_within(result.runs_out_p90, end),
            )
        )
    return outlooks


def tag_outlooks(wallet: Any, tag: str, *, horizon: int, seed: int) -> list[TagOutlook]:
    """Return the next 30 days' use of the actions carrying each value of `tag`."""
    rows = wallet.usage(group_by=[tag], bucket="day")
    values = sorted({row.key.get(tag) for row in rows}, key=lambda v: (v is None, v or ""))
    outlooks = []
    for value in values:
        result = _forecast(_by_day(rows, {tag: value}), horizon=horizon, seed=seed)
        if isinstance(result, str):
            outlooks.append(TagOutlook(value=value, note=result))
        else:
            outlooks.append(TagOutlook(value=value, next_30=result.next_30))
    return outlooks
