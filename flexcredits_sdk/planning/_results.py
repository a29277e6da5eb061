"""What a simulation answers, as pydantic models, and the break-even points between models."""

from __future__ import annotations

from decimal import Decimal
from itertools import combinations

from pydantic import BaseModel, ConfigDict

__all__ = [
    "BreakEven",
    "CostStats",
    "ModelResult",
    "MonthCost",
    "SimulationResult",
    "TagCost",
    "break_evens",
]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CostStats(_Model):
    """The cost of one conversation under a model, at its list price.

    Attributes:
        mean: Exact mean.
        p50: Median.
        p90: 90th percentile.
        max: Most expensive conversation.
        exact: False when the quantiles come from the folded sketch (within 0.5%).
    """

    mean: Decimal
    p50: Decimal
    p90: Decimal
    max: Decimal
    exact: bool = True


class TagCost(_Model):
    """The list cost of the conversations that carry a tag (that of their first action)."""

    key: str
    value: str
    cost: Decimal


class MonthCost(_Model):
    """One month's bill under a model.

    Attributes:
        month: ``"YYYY-MM"`` (UTC).
        conversations: Conversations started in the month.
        cost: The month's bill, after allotments, tiers and caps.
        credits: Credits used in the month (credit plans only).
    """

    month: str
    conversations: int
    cost: Decimal
    credits: int | Decimal | None = None


class ModelResult(_Model):
    """What a history costs under one pricing model.

    Attributes:
        name: The model's name.
        kind: ``credits``, ``per_conversation``, ``per_resolution`` or ``per_ticket``.
        total: The bill: every month's cost, after allotments, tiers, caps and rounding.
        list_total: The cost of every conversation at the model's list price, before those.
        credits: Credits used (credit plans only).
        per_conversation: Cost per conversation, at list price.
        by_tag: List cost per tag, most expensive first.
        by_month: The bill per month.
        fixed: What a conversation costs at this volume whatever its length: the bill less
            `per_action` times the actions, over the conversations (a flat price; a price per
            resolution times the share resolved; fees, allotments, tiers and caps spread).
        per_action: What each action adds, at list price (credit plans; 0 for the others).
    """

    name: str
    kind: str
    description: str = ""
    source: str = ""
    total: Decimal
    list_total: Decimal
    credits: int | Decimal | None = None
    per_conversation: CostStats
    by_tag: list[TagCost]
    by_month: list[MonthCost]
    fixed: Decimal
    per_action: Decimal


class BreakEven(_Model):
    """Where two models cost the same, in actions per conversation.

    Attributes:
        cheaper: The model that is cheaper for shorter conversations.
        other: The model that is cheaper for longer conversations.
        actions_per_conversation: The break-even length.
        statement: The same, in a sentence.
    """

    cheaper: str
    other: str
    actions_per_conversation: Decimal
    statement: str


class SimulationResult(_Model):
    """What a history costs under each model, cheapest first.

    Attributes:
        models: One result per model, by total, cheapest first.
        cheapest: The name of the cheapest model.
        break_even: Break-even lengths between models whose cost lines cross.
        rows: Rows read.
        conversations: Conversations found.
        actions: Billable actions (the sum of the rows' units).
        resolved: Conversations resolved.
        first_day: The first day in the history (UTC).
        last_day: The last day.
        bad_rows: Rows skipped because they could not be read.
        bad_row_errors: The first of their errors, each with its line number.
        peak_open: The most conversations held open at once (the memory used).
        forced_closes: Conversations closed early because `max_open` was reached.
    """

    models: list[ModelResult]
    cheapest: str | None
    break_even: list[BreakEven]
    rows: int
    conversations: int
    actions: int
    resolved: int
    first_day: str | None
    last_day: str | None
    bad_rows: int = 0
    bad_row_errors: list[str] = []
    peak_open: int = 0
    forced_closes: int = 0

    @property
    def mean_actions(self) -> Decimal:
        """Mean actions per conversation."""
        return Decimal(self.actions) / self.conversations if self.conversations else Decimal(0)

    def model(self, name: str) -> ModelResult:
        """Return the result of the model called `name`.

        Raises:
            KeyError: No model has that name.
        """
        for result in self.models:
            if result.name == name:
                return result
        raise KeyError(name)


def _plain(value: Decimal) -> str:
    text = f"{value.quantize(Decimal('0.01')).normalize():f}"
    return text


def break_evens(models: list[ModelResult]) -> list[BreakEven]:
    """Return the lengths at which pairs of models cost the same per conversation.

    Each model's cost of a conversation of n actions is taken as ``fixed + per_action * n``,
    with both figures measured on the history, so the answer holds at this volume. Pairs
    whose lines do not cross at a positive length are left out: one of them is cheaper at any
    length.
    """
    found: list[BreakEven] = []
    for a, b in combinations(models, 2):
        if a.per_action == b.per_action:
            continue
        n = (b.fixed - a.fixed) / (a.per_action - b.per_action)
        if n <= 0:
            continue
        cheaper, other = (a, b) if a.fixed < b.fixed else (b, a)
        found.append(
            BreakEven(
                cheaper=cheaper.name,
                other=other.name,
                actions_per_conversation=n,
                statement=f"{cheaper.name} beats {other.name} below {_plain(n)} actions "
                "per conversation",
            )
        )
    found.sort(key=lambda x: (x.actions_per_conversation, x.cheaper, x.other))
    return found
