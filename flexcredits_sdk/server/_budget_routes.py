"""The service's budget endpoints: list, add (never replacing one) and change budgets.

Budgets nest by tags (the whole tenant, then ``department=service``, then ``department=service,
agent=triage``); a hard budget refuses holds that would go past its limit.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse

from .._wire import ErrorResponse
from ._budgets import BudgetEntry
from ._plumbing import ApiError, TenantDep, store_of
from ._requests import (
    BudgetExists,
    BudgetExistsResponse,
    BudgetRequest,
    BudgetsResponse,
    BudgetUpdate,
)

__all__ = ["router"]

router = APIRouter(prefix="/v1")

BudgetId = Annotated[str, Path(min_length=1, max_length=64, description="The budget's id")]


@router.get("/budgets", operation_id="listBudgets")
def get_budgets(request: Request, tenant: TenantDep) -> BudgetsResponse:
    """Budgets with their spending and holds this period, and each one's parent."""
    return BudgetsResponse(budgets=store_of(request).budgets(tenant.id))


@router.post(
    "/budgets",
    operation_id="setBudget",
    response_model=BudgetsResponse,
    responses={
        409: {
            "model": BudgetExistsResponse,
            "description": (
                "A budget with the same tags and period exists (`budget_id`); change it with "
                "`PUT /v1/budgets/{id}`"
            ),
        }
    },
)
def post_budget(
    request: Request, tenant: TenantDep, budget: BudgetRequest
) -> BudgetsResponse | JSONResponse:
    """Add a budget; alerts when exceeded and, if hard, refuses holds past it.

    A budget with the same tags and period is never replaced: the answer is a 409 naming it.
    """
    store = store_of(request)
    info, added = store.add_budget(
        tenant.id,
        budget.credits,
        tags=dict(budget.tags),
        period=budget.period,
        hard=budget.hard,
        name=budget.name,
    )
    if not added:
        detail = BudgetExists(
            code="budget_exists",
            message=(
                f"budget {info.id!r} has these tags and period {info.period!r}; "
                f"change it with PUT /v1/budgets/{info.id}"
            ),
            budget_id=info.id,
        )
        body = BudgetExistsResponse(error=detail)
        return JSONResponse(body.model_dump(), status_code=409)
    return BudgetsResponse(budgets=store.budgets(tenant.id))


@router.put(
    "/budgets/{budget_id}",
    operation_id="updateBudget",
    responses={
        404: {"model": ErrorResponse, "description": "The tenant has no budget with this id"}
    },
)
def put_budget(
    request: Request, tenant: TenantDep, budget_id: BudgetId, budget: BudgetUpdate
) -> BudgetEntry:
    """Change a budget's limit (and hardness or name), keeping what it spent and holds."""
    store = store_of(request)
    info = store.update_budget(
        tenant.id, budget_id, budget.credits, hard=budget.hard, name=budget.name
    )
    if info is None:
        raise ApiError(404, f"budget_id: no budget {budget_id!r}")
    return next(b for b in store.budgets(tenant.id) if b.id == info.id)
