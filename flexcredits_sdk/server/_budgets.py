"""Budgets as the service shows them: each with what holds reserve in it, and its parent.

Budgets nest by their tags: a budget on ``department=service, agent=triage`` sits inside one on
``department=service``, which sits inside one on no tags (the whole tenant). An action counts
against every budget whose tags it carries, so a hold must fit each hard one of them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal

from .._models import BudgetInfo, Credits

__all__ = ["BudgetEntry", "nest"]


class BudgetEntry(BudgetInfo):
    """A budget on the service, with its reservations and its place in the tree.

    Attributes:
        held: Credits that holds reserve in the budget, not yet spent.
        parent: The id of the budget whose tags are the largest proper subset of this one's
            (same period first, then the oldest); ``None`` at the top of the tree.
    """

    held: Credits
    parent: str | None


def _number(budget: BudgetInfo) -> int:
    tail = budget.id.rpartition("-")[2]
    return int(tail) if tail.isdigit() else 0


def _parent(budget: BudgetInfo, budgets: Sequence[BudgetInfo]) -> str | None:
    items = budget.tags.items()
    candidates = [
        other
        for other in budgets
        if len(other.tags) < len(budget.tags) and other.tags.items() <= items
    ]
    if not candidates:
        return None
    best = max(
        candidates,
        key=lambda o: (len(o.tags), o.period == budget.period, -_number(o)),
    )
    return best.id


def nest(budgets: Sequence[BudgetInfo], held: Mapping[str, int | Decimal]) -> list[BudgetEntry]:
    """Return `budgets` as entries, each with its holds (`held`, by id) and its parent."""
    return [
        BudgetEntry(
            **budget.model_dump(),
            held=held.get(budget.id, 0),
            parent=_parent(budget, budgets),
        )
        for budget in budgets
    ]
