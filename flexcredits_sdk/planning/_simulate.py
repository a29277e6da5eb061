"""Simulation: what a history of actions costs under each pricing model, in one pass.

A conversation is the rows of one id whose times are no more than `idle` apart: sorted by time,
a gap longer than `idle` starts a new one, as a session that timed out does. The result is that
of the rows sorted by time, whatever their order in the file, or the run stops with an error
(`HistoryError` on ``timestamp``) that says to sort them first:

- a conversation closes when its last row is `idle` behind the newest time read (plus the most
  a row has come late so far, up to another `idle`, so that slightly unsorted files rejoin
  their conversations), and its id and last time are remembered;
- a row of a remembered id within `idle` of that time, or earlier than its open conversation
  in a way that could join two, is out of order beyond repair: the run stops;
- what is remembered is bounded: ids closed long before the newest time (by more than `idle`
  plus the most a row came late) are forgotten first, and at most `max_open` are kept; a new id
  within `idle` of a forgotten time stops the run, as it cannot be checked.

So a history sorted by time, nearly sorted, or grouped by conversation (up to `max_open`
conversations) gives exactly the sorted result in one pass; a shuffled one stops early.

Memory does not grow with the number of rows. It holds:

- the conversations still open, and the ids closed recently (above);
- per model, a quantile sketch (bounded, see `QuantileSketch`) and totals per month and per
  distinct tag set;
- the price of each distinct (action, type, environment).

More than `max_open` open conversations close the least recently touched early (counted in
`forced_closes`): a cap on memory that can split conversations.

Every step is linear: the open set is kept in order of last touch, so sweeps and forced closes
take from its front with one iterator (popping the first key of a dict again and again is
quadratic: each lookup skips the holes the previous pops left), and the end closes them all in
one pass.
"""

from __future__ import annotations

import datetime as _dt
import itertools
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
from ._sort import sorted_by_time

__all__ = ["MAX_BAD_ROW_ERRORS", "OUT_OF_ORDER", "Simulator", "simulate"]

AnyModel = CreditPlan | PerConversation | PerResolution | PerTicket
#: How many bad-row errors a result keeps (all are counted).
MAX_BAD_ROW_ERRORS = 20
_P50 = Decimal("0.5")
_P90 = Decimal("0.9")
_SWEEP_EVERY = 1024
#: Open conversations below which a sweep looks only at the least recently touched.
_SCAN_FROM = 4096
#: Closed ids remembered before the first look for ones to forget.
_FORGET_FROM = 65_536
#: How the error of rows out of time order begins.
OUT_OF_ORDER = "rows are out of time order"
_SORT_HINT = "; sort them first (--sort, or sort=True)"
_LONG_AGO = -(2**62)
#: Tag dicts remembered by identity before the memory starts afresh (keeps it bounded).
_MAX_TAG_IDS = 4096


class _Conversation:
    __slots__ = (
        "counts",
        "first_s",
        "last_s",
        "month",
        "previous_s",
        "resolved",
        "swept",
        "tags",
        "units",
    )

    def __init__(
        self, time_s: int, day: str, tags: Mapping[str, str], previous_s: int = _LONG_AGO
    ) -> None:
        self.counts: dict[tuple[str, str, str], int] = {}
        self.first_s = time_s
        self.last_s = time_s
        self.previous_s = previous_s  # the last time of the id's conversation before this one
        self.month = day[:7]
        self.tags = tags
        self.resolved = False
        self.units = 0
        self.swept = 0  # sweeps before it was last touched


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
        max_open: The most conversations held open at once, and the most closed ids
            remembered to check that rows out of time order do not continue them.

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
        self._open: dict[str, _Conversation] = {}  # in order of last touch
        self._closed: dict[str, int] = {}  # id -> last time, of conversations swept closed
        self._forgotten_s = _LONG_AGO  # the latest last time of a forgotten closed id
        self._late_s = 0  # the most a row came behind the newest time before it
        self._scan_at = _SCAN_FROM
        self._sweeps = 0
        self._forget_at = min(max_open + 1, _FORGET_FROM)
        self._source = "<rows>"
        self._prices: dict[tuple[str, str, str], tuple[int | Decimal, ...]] = {}
        self._credit_runs = [run for run in self._runs if run.index >= 0]
        self._months: dict[str, int] = {}  # conversations per month
        self._resolved_months: dict[str, int] = {}  # resolved conversations per month
        self._tag_counts: dict[int, int] = {}  # conversations per tag set, by its number
        self._resolved_tags: dict[int, int] = {}
        self._tag_ids: dict[int, tuple[Mapping[str, str], int]] = {}  # by id(): (tags, number)
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

    def feed(self, rows: Iterable[HistoryRow], *, source: str | None = None) -> None:
        """Add rows to the simulation.

        Args:
            rows: History rows, in any order (see the module's docstring).
            source: The file's name, for errors.

        Raises:
            UnpricedAction: A credit plan cannot price a row's action.
            HistoryError: Rows are out of time order in a way one pass cannot make right.
        """
        if source is not None:
            self._source = source
        open_ = self._open
        prices = self._prices
        idle = self._idle_s
        watermark = self._watermark
        last_id: str | None = None
        conv: _Conversation | None = None
        count = self.rows
        first_day = self._first_day
        last_day = self._last_day
        sweeps = self._sweeps
        for row in rows:
            line, cid, action, action_type, environment, tags, units, resolved, time_s, day = row
            count += 1
            key = (action, action_type, environment)
            if key not in prices:
                self._price(key, line)
            if time_s >= watermark:
                if time_s > watermark:
                    watermark = time_s
                    if last_day is None or day > last_day:
                        last_day = day
            elif watermark - time_s > self._late_s:
                self._late_s = watermark - time_s
            if first_day is None or day < first_day:
                first_day = day
            if cid is None:
                single = _Conversation(time_s, day, tags)
                single.counts[key] = units
                single.units = units
                single.resolved = resolved
                self._close(single)
                continue
            if (
                cid != last_id
                or conv is None
                or time_s - conv.last_s > idle
                or time_s < conv.first_s
            ):
                conv = open_.pop(cid, None)
                if conv is not None and conv.first_s <= time_s and time_s - conv.last_s <= idle:
                    conv.swept = sweeps  # the row continues it: to the back of the open set
                    open_[cid] = conv
                else:
                    conv = self._touch(cid, time_s, day, tags, line, conv)
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
                self._watermark = watermark
                self._sweep()
                sweeps = self._sweeps
                last_id = None
        self.rows = count
        self._watermark = watermark
        self._first_day = first_day
        self._last_day = last_day

    def _touch(
        self,
        cid: str,
        time_s: int,
        day: str,
        tags: Mapping[str, str],
        line: int,
        conv: _Conversation | None,
    ) -> _Conversation:
        """Return the conversation a row of `cid` joins, opening one if need be.

        Args:
            conv: The id's open conversation, taken out of the open set, or ``None``.

        Raises:
            HistoryError: The row is out of time order in a way one pass cannot make right.
        """
        open_ = self._open
        idle = self._idle_s
        if conv is not None:
            conv.swept = self._sweeps
            if time_s - conv.last_s > idle:  # a gap: the id starts a new conversation
                self._close(conv)
                conv = self._new(time_s, day, tags, conv.last_s)
            elif time_s < conv.first_s:  # earlier than any row of it so far
                if conv.first_s - time_s > idle or time_s - conv.previous_s <= idle:
                    raise self._out_of_order(
                        f"conversation {cid!r} has a row here earlier than where it was split",
                        time_s,
                        line,
                    )
                conv.first_s = time_s
                conv.month = day[:7]
                conv.tags = tags
            open_[cid] = conv
            return conv
        previous = self._closed.pop(cid, None)
        if previous is not None:
            if time_s - previous <= idle:
                raise self._out_of_order(
                    f"conversation {cid!r} continues here after it was closed", time_s, line
                )
        elif time_s - self._forgotten_s <= idle:
            raise self._out_of_order(
                f"beyond what the last {self._max_open:,} closed conversations (max_open) can "
                "check",
                time_s,
                line,
            )
        conv = self._new(time_s, day, tags, self._forgotten_s if previous is None else previous)
        open_[cid] = conv
        return conv

    def _new(
        self, time_s: int, day: str, tags: Mapping[str, str], previous_s: int
    ) -> _Conversation:
        """Return a new conversation, first closing the least recently touched if too many."""
        open_ = self._open
        if len(open_) >= self._max_open:
            # A batch at a time, in one pass: a dict's front is slow to find after many pops.
            batch = max(1, self._max_open // 64)
            for cid in list(itertools.islice(open_, batch)):
                self._close(open_.pop(cid))
            self.forced_closes += batch
        conv = _Conversation(time_s, day, tags, previous_s)
        conv.swept = self._sweeps
        return conv

    def _out_of_order(self, what: str, time_s: int, line: int) -> HistoryError:
        late = self._late_s
        minutes, hours = -(-late // 60), -(-late // 3600)
        span = f"{minutes} minute{'s' * (minutes > 1)}" if late < 7200 else f"{hours:,} hours"
        when = _dt.datetime.fromtimestamp(time_s, _dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return HistoryError(
            "timestamp",
            when,
            f"{OUT_OF_ORDER} by up to {span}, and {what}{_SORT_HINT}",
            line=line,
            source=self._source,
        )

    def _sweep(self) -> None:
        """Close the conversations idle for longer than the window, and remember their ids.

        A conversation touched since the last sweep stays open (in a file grouped by
        conversation, the one being read may be far behind the newest time). Those least
        recently touched come first in the open set, so the sweep looks at its front until a
        conversation touched within the window; when the set has doubled since the last full
        look (rows out of time order keep stale ones behind fresh ones), it looks at all of
        them. Either look is one pass.
        """
        open_ = self._open
        idle = self._idle_s
        cutoff = self._watermark - idle - min(self._late_s, idle)
        recent = self._sweeps
        self._sweeps += 1
        stale: list[str] = []
        if len(open_) >= self._scan_at:
            stale = [
                cid for cid, conv in open_.items() if conv.last_s < cutoff and conv.swept < recent
            ]
            self._scan_at = max(_SCAN_FROM, 2 * (len(open_) - len(stale)))
        else:
            for cid, conv in open_.items():
                if conv.last_s >= cutoff or conv.swept >= recent:
                    break
                stale.append(cid)
        closed = self._closed
        for cid in stale:
            conv = open_.pop(cid)
            self._close(conv)
            closed[cid] = conv.last_s
        if len(closed) >= self._forget_at:
            self._forget()

    def _forget(self) -> None:
        """Forget closed ids no row can continue unless it comes later than any so far.

        When more than `max_open` are left, the older half goes too.
        """
        closed = self._closed
        cutoff = self._watermark - self._idle_s - self._late_s
        old = [last_s for last_s in closed.values() if last_s < cutoff]
        if len(closed) - len(old) > self._max_open:
            times = sorted(closed.values())
            cutoff = times[len(times) // 2] + 1
            old = times[: len(times) // 2 + 1]
        if old:
            self._forgotten_s = max(self._forgotten_s, max(old))
            self._closed = {cid: last_s for cid, last_s in closed.items() if last_s >= cutoff}
        self._forget_at = min(self._max_open + 1, max(_FORGET_FROM, 2 * len(self._closed)))

    def _close(self, conv: _Conversation) -> None:
        """Count a closed conversation; price it under each credit plan.

        The other models bill one conversation, or one resolved conversation: their totals
        come from the counts per month and tag set (`_count_runs`).
        """
        self.conversations += 1
        self.actions += conv.units
        tags = conv.tags
        known = self._tag_ids.get(id(tags))
        tag_set = known[1] if known is not None and known[0] is tags else self._tag_set(tags)
        month = conv.month
        months = self._months
        months[month] = months.get(month, 0) + 1
        per_tags = self._tag_counts
        per_tags[tag_set] = per_tags.get(tag_set, 0) + 1
        if conv.resolved:
            self.resolved += 1
            by_month = self._resolved_months
            by_month[month] = by_month.get(month, 0) + 1
            by_tags = self._resolved_tags
            by_tags[tag_set] = by_tags.get(tag_set, 0) + 1
        if not self._credit_runs:
            return
        prices = self._prices
        items = conv.counts.items()
        for run in self._credit_runs:
            index = run.index
            quantity: int | Decimal = 0
            for key, units in items:
                quantity += prices[key][index] * units
            run.total += quantity
            run.sketch.add(quantity)
            run_months = run.by_month
            run_months[month] = run_months.get(month, 0) + quantity
            run_tags = run.by_tags
            run_tags[tag_set] = run_tags.get(tag_set, 0) + quantity

    def _tag_set(self, tags: Mapping[str, str]) -> int:
        """Return the number of a tag set, numbering it if new, and remember it by identity."""
        pairs = tuple(tags.items())
        tag_set = self._tag_sets.get(pairs)
        if tag_set is None:
            tag_set = self._tag_sets[pairs] = len(self._tag_sets)
        if len(self._tag_ids) >= _MAX_TAG_IDS:
            self._tag_ids.clear()
        self._tag_ids[id(tags)] = (tags, tag_set)  # held: its id is not reused meanwhile
        return tag_set

    def _count_runs(self) -> None:
        """Set the totals of the models that bill conversations from the counts."""
        conversations, resolved = self.conversations, self.resolved
        for run in self._runs:
            if run.index >= 0:
                continue
            run.sketch = QuantileSketch()
            if run.resolutions:
                run.total = resolved
                run.by_month = {m: self._resolved_months.get(m, 0) for m in self._months}
                run.by_tags = {t: self._resolved_tags.get(t, 0) for t in self._tag_counts}
                if conversations > resolved:
                    run.sketch.add(0, conversations - resolved)
                if resolved:
                    run.sketch.add(1, resolved)
            else:
                run.total = conversations
                run.by_month = dict(self._months)
                run.by_tags = dict(self._tag_counts)
                if conversations:
                    run.sketch.add(1, conversations)

    def result(self) -> SimulationResult:
        """Close every open conversation and return what each model costs.

        Raises:
            ConfigurationError: A credit plan has no price per credit (a zero-sized month).
        """
        if len(self._open) > self.peak_open:
            self.peak_open = len(self._open)
        for conv in self._open.values():  # one pass: O(N) for N open conversations
            self._close(conv)
        self._open.clear()
        self._closed.clear()
        self._count_runs()
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
    sort: bool = False,
    progress: Callable[[int], Any] | None = None,
) -> SimulationResult:
    """Return what a history of actions costs under each pricing model.

    The result is that of the rows sorted by time, in whatever order they come; rows out of
    order in a way one pass cannot make right stop the run with a `HistoryError` that says
    to sort them (`sort`).

    Args:
        history: A history file (JSONL, CSV or usage records), or rows (e.g.
            `rows_from_records`).
        models: Pricing models, preset names (`PRESETS`) or ``.json``/``.toml`` model files.
        format: The file's format; by its suffix when omitted.
        skip_bad_rows: Skip rows that cannot be read (counted in the result, with the first
            errors) instead of stopping at the first.
        idle: Event time after which an untouched conversation closes.
        max_open: The most conversations held open at once (and closed ids remembered).
        sort: Sort the rows by time first, in temporary files when they do not fit in
            memory (an external sort; memory stays bounded).
        progress: Called now and then with the number of rows read so far.

    Raises:
        HistoryError: A row cannot be read and `skip_bad_rows` is false, or rows are out of
            time order and `sort` is false.
        UnpricedAction: A model cannot price an action.
        ConfigurationError: A model or option is wrong.
    """
    simulator = Simulator(models, idle=idle, max_open=max_open)
    source = "<rows>"
    if isinstance(history, str | Path):
        source = Path(history).name
        rows: Iterable[HistoryRow] = read_history(
            history, format=format, on_bad_row=simulator.bad_row if skip_bad_rows else None
        )
    else:
        rows = history
    if sort:
        rows = sorted_by_time(rows)
    if progress is None:
        simulator.feed(rows, source=source)
    else:
        batch: list[HistoryRow] = []
        for row in rows:
            batch.append(row)
            if len(batch) == 65_536:
                simulator.feed(batch, source=source)
                progress(simulator.rows)
                batch = []
        simulator.feed(batch, source=source)
        progress(simulator.rows)
    return simulator.result()
