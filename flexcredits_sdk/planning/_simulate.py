"""Simulation: what a history of actions costs under each pricing model, in one pass.

Memory does not grow with the number of rows. It holds:

- the conversations still open: a conversation closes when no row has touched it for `idle`
  of event time (24 hours by default), or when more than `max_open` are open (the least
  recently touched closes first, and `forced_closes` counts it); a history sorted by time or
  grouped by conversation needs no more than the conversations active within `idle`, plus
  those touched in the 1,024 rows between two sweeps of the open set;
- per model, a quantile sketch (bounded, see `QuantileSketch`) and totals per month and per
  distinct tag set;
- the price of each distinct (action, type, environment).

A conversation seen again after it closed counts as a new one, as a session that timed out does.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

from .._exceptions import ConfigurationError, HistoryError, UnpricedAction
from ._history import HistoryFormat, HistoryRow, read_history
from ._plans import CreditPlan, PerConversation, PerResolution, PerTicket
from ._presets import resolve_model
from ._results import (
    CostStats,
    ModelResult,
    MonthCost,
    SimulationResult,
    TagCost,
    break_evens,
)
from ._sketch import QuantileSketch

__all__ = ["MAX_BAD_ROW_ERRORS", "Simulator", "simulate"]

AnyModel = CreditPlan | PerConversation | PerResolution | PerTicket
#: How many bad-row errors a result keeps (all are counted).
MAX_BAD_ROW_ERRORS = 20
_P50 = Decimal("0.5")
_P90 = Decimal("0.9")
_SWEEP_EVERY = 1024


class _Conversation:
    __slots__ = ("counts", "last_s", "month", "resolved", "tags", "units")

    def __init__(self, time_s: int, day: str, tags: Mapping[str, str]) -> None:
        self.counts: dict[tuple[str, str, str], int] = {}
        self.last_s = time_s
        self.month = day[:7]
        self.tags = tags
        self.resolved = False
        self.units = 0


class _Run:
    """One model's totals. Quantities are credits (credit plans) or billable conversations."""

    __slots__ = ("by_month", "by_tags", "index", "model", "resolutions", "sketch", "total", "unit")

    def __init__(self, model: AnyModel, index: int) -> None:
        self.model = model
        self.index = index  # position in the price tuples (credit plans)
        self.resolutions = isinstance(model, PerResolution)  # bills resolved conversations
        self.unit = model.list_price if isinstance(model, CreditPlan) else model.price
        self.sketch = QuantileSketch()
        self.total: int | Decimal = 0
        self.by_month: dict[str, int | Decimal] = {}
        self.by_tags: dict[int, int | Decimal] = {}  # by the tag set's number


class Simulator:
    """Feeds history rows through several pricing models at once.

    Args:
        models: Pricing models, preset names or model file paths; names must be distinct.
        idle: Event time after which an untouched conversation closes.
        max_open: The most conversations held open at once.

    Raises:
        ConfigurationError: No models, a duplicate name, or a bad `idle` or `max_open`.
    """

    def __init__(
        self,
        models: Sequence[AnyModel | str | Path],
        *,
        idle: _dt.timedelta = _dt.timedelta(hours=24),
        max_open: int = 1_000_000,
    ) -> None:
        if isinstance(models, str) or not models:
            raise ConfigurationError("models", models, "must list at least one model")
        resolved = [resolve_model(m) for m in models]
        names = [m.name for m in resolved]
        for name in names:
            if names.count(name) > 1:
                raise ConfigurationError("models", name, "is given twice; names must differ")
        if not isinstance(idle, _dt.timedelta) or idle <= _dt.timedelta(0):
            shown = str(idle) if isinstance(idle, _dt.timedelta) else idle
            raise ConfigurationError("idle", shown, "must be a positive timedelta")
        if isinstance(max_open, bool) or not isinstance(max_open, int) or max_open < 1:
            raise ConfigurationError("max_open", max_open, "must be a positive int")
        self._plans = [m for m in resolved if isinstance(m, CreditPlan)]
        self._runs = [_Run(m, self._plans.index(m) if m in self._plans else -1) for m in resolved]
        self._idle_s = int(idle.total_seconds())
        self._max_open = max_open
        self._open: dict[str, _Conversation] = {}
        self._prices: dict[tuple[str, str, str], tuple[int | Decimal, ...]] = {}
        self._months: dict[str, int] = {}  # conversations per month
        self._tag_sets: dict[tuple[tuple[str, str], ...], int] = {}  # numbered as first seen
        self._watermark = -(2**62)
        self._first_day: str | None = None
        self._last_day: str | None = None
        self.rows = 0
        self.conversations = 0
        self.actions = 0
        self.resolved = 0
        self.peak_open = 0
        self.forced_closes = 0
        self.bad_rows = 0
        self.bad_row_errors: list[str] = []

    def bad_row(self, error: HistoryError) -> None:
        """Count a row that was skipped because it could not be read."""
        self.bad_rows += 1
        if len(self.bad_row_errors) < MAX_BAD_ROW_ERRORS:
            self.bad_row_errors.append(str(error))

    def _price(self, key: tuple[str, str, str], line: int) -> tuple[int | Decimal, ...]:
        try:
            prices = tuple(plan.credits_for(*key) for plan in self._plans)
        except UnpricedAction as exc:
            where = f" (line {line})" if line else ""
            raise UnpricedAction(exc.action, exc.model, exc.detail + where) from None
        self._prices[key] = prices
        return prices

    def feed(self, rows: Iterable[HistoryRow]) -> None:
        """Add rows to the simulation.

        Raises:
            UnpricedAction: A credit plan cannot price a row's action.
        """
        open_ = self._open
        prices = self._prices
        idle = self._idle_s
        watermark = self._watermark
        last_id: str | None = None
        conv: _Conversation | None = None
        count = self.rows
        first_day = self._first_day
        last_day = self._last_day
        for row in rows:
            line, cid, action, action_type, environment, tags, units, resolved, time_s, day = row
            count += 1
            key = (action, action_type, environment)
            if key not in prices:
                self._price(key, line)
            if time_s > watermark:
                watermark = time_s
                if last_day is None or day > last_day:
                    last_day = day
            if first_day is None or day < first_day:
                first_day = day
            if cid is None:
                single = _Conversation(time_s, day, tags)
                single.counts[key] = units
                single.units = units
                single.resolved = resolved
                self._close(single)
                continue
            if cid != last_id or conv is None or time_s - conv.last_s > idle:
                conv = open_.pop(cid, None)
                if conv is not None and time_s - conv.last_s > idle:
                    self._close(conv)  # idle too long: the id starts a new conversation
                    conv = None
                if conv is None:
                    conv = _Conversation(time_s, day, tags)
                    if len(open_) >= self._max_open:
                        self.forced_closes += 1
                        self._close(open_.pop(next(iter(open_))))
                open_[cid] = conv
                last_id = cid
            counts = conv.counts
            counts[key] = counts.get(key, 0) + units
            conv.units += units
            if resolved:
                conv.resolved = True
            if time_s > conv.last_s:
                conv.last_s = time_s
            if not count % _SWEEP_EVERY:
                if len(open_) > self.peak_open:
                    self.peak_open = len(open_)
                self._sweep(watermark - idle)
                last_id = None
        self.rows = count
        self._watermark = watermark
        self._first_day = first_day
        self._last_day = last_day

    def _sweep(self, cutoff: int) -> None:
        open_ = self._open
        while open_:
            cid = next(iter(open_))
            if open_[cid].last_s >= cutoff:
                return
            self._close(open_.pop(cid))

    def _close(self, conv: _Conversation) -> None:
        self.conversations += 1
        self.actions += conv.units
        if conv.resolved:
            self.resolved += 1
        prices = self._prices
        tags = tuple(conv.tags.items())
        tag_set = self._tag_sets.get(tags)
        if tag_set is None:
            tag_set = self._tag_sets[tags] = len(self._tag_sets)
        month = conv.month
        self._months[month] = self._months.get(month, 0) + 1
        for run in self._runs:
            index = run.index
            quantity: int | Decimal
            if index >= 0:
                quantity = 0
                for key, units in conv.counts.items():
                    quantity += prices[key][index] * units
            elif run.resolutions:
                quantity = 1 if conv.resolved else 0
            else:
                quantity = 1
            run.total += quantity
            run.sketch.add(quantity)
            by_month = run.by_month
            by_month[month] = by_month.get(month, 0) + quantity
            by_tags = run.by_tags
            by_tags[tag_set] = by_tags.get(tag_set, 0) + quantity

    def result(self) -> SimulationResult:
        """Close every open conversation and return what each model costs.

        Raises:
            ConfigurationError: A credit plan has no price per credit (a zero-sized month).
        """
        if len(self._open) > self.peak_open:
            self.peak_open = len(self._open)
        while self._open:
            self._close(self._open.pop(next(iter(self._open))))
        results = [self._model_result(run) for run in self._runs]
        results.sort(key=lambda r: (r.total, r.name))
        return SimulationResult(
            models=results,
            cheapest=results[0].name if self.conversations else None,
            break_even=break_evens(results) if self.conversations else [],
            rows=self.rows,
            conversations=self.conversations,
            actions=self.actions,
            resolved=self.resolved,
            first_day=self._first_day,
            last_day=self._last_day,
            bad_rows=self.bad_rows,
            bad_row_errors=self.bad_row_errors,
            peak_open=self.peak_open,
            forced_closes=self.forced_closes,
        )

    def _model_result(self, run: _Run) -> ModelResult:
        model = run.model
        unit = run.unit
        months = _all_months(run.by_month)
        bills: list[MonthCost] = []
        pools: dict[str, int | Decimal] = {}
        for index, month in enumerate(months):
            quantity = run.by_month.get(month, 0)
            conversations = self._months.get(month, 0)
            if isinstance(model, CreditPlan):
                cost, _ = model.bill_month(quantity, index, pools)
                bills.append(
                    MonthCost(month=month, conversations=conversations, cost=cost, credits=quantity)
                )
                continue
            cost = quantity * unit
            if isinstance(model, PerTicket) and model.monthly_cap is not None:
                cost = min(cost, model.monthly_cap)
            bills.append(MonthCost(month=month, conversations=conversations, cost=cost))
        sketch = run.sketch
        n = self.conversations
        list_total = run.total * unit
        tag_costs: dict[tuple[str, str], Decimal] = {}
        tag_sets = list(self._tag_sets)
        for tag_set, quantity in run.by_tags.items():
            for pair in tag_sets[tag_set]:
                tag_costs[pair] = tag_costs.get(pair, Decimal(0)) + quantity * unit
        by_tag = [TagCost(key=k, value=v, cost=c) for (k, v), c in tag_costs.items()]
        by_tag.sort(key=lambda t: (-t.cost, t.key, t.value))
        total = sum((b.cost for b in bills), Decimal(0))
        per_action = Decimal(0)
        if isinstance(model, CreditPlan) and self.actions:
            per_action = list_total / self.actions
        fixed = (total - per_action * self.actions) / n if n else Decimal(0)
        return ModelResult(
            name=model.name,
            kind=model.kind,
            description=model.description,
            source=model.source,
            total=total,
            list_total=Decimal(list_total),
            credits=run.total if isinstance(model, CreditPlan) else None,
            per_conversation=CostStats(
                mean=Decimal(list_total) / n if n else Decimal(0),
                p50=Decimal(sketch.quantile(_P50) * unit),
                p90=Decimal(sketch.quantile(_P90) * unit),
                max=Decimal(sketch.quantile(Decimal(1)) * unit),
                exact=sketch.exact,
            ),
            by_tag=by_tag,
            by_month=bills,
            fixed=fixed,
            per_action=per_action,
        )


def _all_months(seen: dict[str, Any]) -> list[str]:
    if not seen:
        return []
    first, last = min(seen), max(seen)
    year, month = int(first[:4]), int(first[5:7])
    months = []
    while True:
        key = f"{year:04d}-{month:02d}"
        months.append(key)
        if key >= last:
            return months
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)


def simulate(
    history: str | Path | Iterable[HistoryRow],
    models: Sequence[AnyModel | str | Path],
    *,
    format: HistoryFormat | None = None,
    skip_bad_rows: bool = False,
    idle: _dt.timedelta = _dt.timedelta(hours=24),
    max_open: int = 1_000_000,
    progress: Callable[[int], Any] | None = None,
) -> SimulationResult:
    """Return what a history of actions costs under each pricing model.

    Args:
        history: A history file (JSONL, CSV or usage records), or rows (e.g.
            `rows_from_records`).
        models: Pricing models, preset names (`PRESETS`) or ``.json``/``.toml`` model files.
        format: The file's format; by its suffix when omitted.
        skip_bad_rows: Skip rows that cannot be read (counted in the result, with the first
            errors) instead of stopping at the first.
        idle: Event time after which an untouched conversation closes.
        max_open: The most conversations held open at once.
        progress: Called now and then with the number of rows read so far.

    Raises:
        HistoryError: A row cannot be read and `skip_bad_rows` is false.
        UnpricedAction: A model cannot price an action.
        ConfigurationError: A model or option is wrong.
    """
    simulator = Simulator(models, idle=idle, max_open=max_open)
    if isinstance(history, str | Path):
        rows: Iterable[HistoryRow] = read_history(
            history, format=format, on_bad_row=simulator.bad_row if skip_bad_rows else None
        )
    else:
        rows = history
    if progress is None:
        simulator.feed(rows)
    else:
        batch: list[HistoryRow] = []
        for row in rows:
            batch.append(row)
            if len(batch) == 65_536:
                simulator.feed(batch)
                progress(simulator.rows)
                batch = []
        simulator.feed(batch)
        progress(simulator.rows)
    return simulator.result()
