"""The service's spend control: holds that reserve credits before actions run, and the policy
that says which actions need one.

A tenant that denies overdraft, or has a hard budget, can refuse an action only before it runs:
a client asks for a hold first (``POST /v1/holds``), runs its actions against it, and sends
their records with ``hold_id`` so they settle against it (see `_holds`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response
from fastapi.responses import JSONResponse

from .._models import HoldInfo
from .._records import new_id
from .._wire import (
    ErrorDetail,
    ErrorResponse,
    HoldRequest,
    HoldsResponse,
    Refusal,
    RefusalResponse,
    SpendControl,
)
from . import _holds
from ._metrics import ServiceMetrics
from ._plumbing import ApiError, TenantDep, store_of

__all__ = ["HoldSweeper", "router"]

logger = logging.getLogger("flexcredits_sdk.server")

router = APIRouter(prefix="/v1")

HoldId = Annotated[str, Path(min_length=1, max_length=64, description="The hold's id")]
_NO_HOLD: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "The tenant has no hold with this id"}
}


def _metrics(request: Request) -> ServiceMetrics:
    metrics: ServiceMetrics = request.app.state.metrics
    return metrics


@router.get("/spend-control", operation_id="getSpendControl")
def get_spend_control(request: Request, tenant: TenantDep) -> SpendControl:
    """Whether actions need a hold before they run: all of them (overdraft denied), or those
    that a hard budget matches."""
    overdraft, hard = store_of(request).spend_control(tenant.id)
    return SpendControl(overdraft=overdraft, hard_budgets=hard)


@router.post(
    "/holds",
    operation_id="takeHold",
    status_code=201,
    response_model=HoldInfo,
    responses={
        200: {"model": HoldInfo, "description": "The same request came before: the same hold"},
        402: {
            "model": RefusalResponse,
            "description": (
                "Refused: `insufficient_credits` (overdraft denied and the balance less active "
                "holds is short) or `budget_exceeded` (a hard budget the tags match)"
            ),
        },
        409: {
            "model": ErrorResponse,
            "description": "A hold with this id exists with other credits or tags",
        },
    },
)
def post_hold(
    request: Request, response: Response, tenant: TenantDep, hold: HoldRequest
) -> HoldInfo | JSONResponse:
    """Reserve credits for actions carrying `tags`, for `ttl` seconds, or refuse.

    The id is an idempotency key: the same request again answers 200 with the same hold.
    """
    store = store_of(request)
    metrics = _metrics(request)
    try:
        taken = store.take_hold(
            tenant.id,
            hold_id=hold.id or new_id(),
            credits=hold.credits,
            tags=dict(hold.tags),
            ttl_ns=int(hold.ttl * 1e9),
        )
    except _holds.HoldConflict as exc:
        raise ApiError(
            409,
            f"id: hold {exc.hold.id!r} exists for {exc.hold.credits} credits and tags "
            f"{exc.hold.tags}; a new hold needs a new id",
            "hold_conflict",
        ) from None
    if isinstance(taken, _holds.Refused):
        metrics.holds.labels(
            "refused_balance" if taken.code == "insufficient_credits" else "refused_budget"
        ).inc()
        body = RefusalResponse(
            error=ErrorDetail(code=taken.code, message=taken.message),
            refusal=Refusal(
                credits=taken.credits,
                available=taken.available,
                held=taken.held,
                budget=taken.budget,
            ),
        )
        return JSONResponse(body.model_dump(mode="json"), status_code=402)
    info, new = taken
    metrics.holds.labels("granted" if new else "repeated").inc()
    if not new:
        response.status_code = 200
    return info


@router.get("/holds", operation_id="listHolds")
def get_holds(request: Request, tenant: TenantDep) -> HoldsResponse:
    """The tenant's active holds, oldest first."""
    return HoldsResponse(holds=store_of(request).holds(tenant.id))


@router.get("/holds/{hold_id}", operation_id="getHold", responses=_NO_HOLD)
def get_hold(request: Request, tenant: TenantDep, hold_id: HoldId) -> HoldInfo:
    """One hold, whatever its status."""
    info = store_of(request).hold(tenant.id, hold_id)
    if info is None:
        raise ApiError(404, f"hold_id: no hold {hold_id!r}")
    return info


@router.delete("/holds/{hold_id}", operation_id="releaseHold", responses=_NO_HOLD)
def delete_hold(request: Request, tenant: TenantDep, hold_id: HoldId) -> HoldInfo:
    """Give back what the hold still reserves (again: nothing changes)."""
    info = store_of(request).release_hold(tenant.id, hold_id)
    if info is None:
        raise ApiError(404, f"hold_id: no hold {hold_id!r}")
    if info.status == "released":
        _metrics(request).holds.labels("released").inc()
    return info


class HoldSweeper:
    """A thread that gives back what expired holds still reserve, every `interval_s` seconds.

    Holds are also swept whenever a tenant takes a hold or books records against one; the
    sweeper frees the credit of a tenant that does neither (its agent died holding a lease),
    so that balances and budgets show it free. Every service process may run one: each
    tenant is swept in the transaction that locks its row.
    """

    def __init__(
        self, sweep: Callable[[], int], *, interval_s: float, on_expired: Callable[[int], Any]
    ):
        self._sweep = sweep
        self._interval_s = interval_s
        self._on_expired = on_expired
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="flexcredits-hold-sweeper", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                expired = self._sweep()
            except Exception:
                logger.exception("sweeping expired holds failed", extra={"event": "holds.sweep"})
                continue
            if expired:
                self._on_expired(expired)
                logger.info("holds expired", extra={"event": "holds.expired", "holds": expired})
