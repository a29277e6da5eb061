"""``PUT``/``GET /v1/rate-card``: each tenant's rate card, versioned by ``effective_from``.

The admin key sets a version of a tenant's card; a tenant's key reads the version in force now
(or at ``?at=``), with an ``ETag`` so that a client that has it gets ``304 Not Modified``.
"""

from __future__ import annotations

import datetime as _dt
from decimal import Decimal
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from .._models import Credits
from .._pricing import RateCard
from .._records import datetime_to_ns, ns_to_datetime
from ._plumbing import ApiError, TenantDep, admin_only, store_of
from ._rate_cards import CardVersion

__all__ = ["RateCardRequest", "RateCardResponse", "router"]

router = APIRouter(prefix="/v1", tags=["rate card"])

_Name = Annotated[str, StringConstraints(min_length=1, max_length=64)]
_ActionName = Annotated[str, StringConstraints(min_length=1, max_length=200)]
_Prices = Annotated[
    dict[_Name, Credits],
    Field(min_length=1, max_length=100, description="Credits per unit, by environment"),
]


class _ModelPrices(BaseModel):
    """What a model's tokens cost, in the card's currency per million tokens."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    input: Credits = Field(description="The price of a million input tokens")
    output: Credits = Field(description="The price of a million output tokens")


class RateCardBody(BaseModel):
    """The fields of a rate card, as `RateCard.loads` reads them from JSON.

    Credits and money are ints or decimal strings (``"0.5"``); a JSON float is refused.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Annotated[str, StringConstraints(min_length=1, max_length=200)] = "custom"
    description: Annotated[str, StringConstraints(max_length=2000)] = ""
    currency: Literal["USD"] = "USD"
    pack_credits: Annotated[int, Field(gt=0, lt=2**63, strict=True)] = Field(
        default=100_000, description="Credits in one pack"
    )
    pack_price: Credits = Field(default=Decimal(500), description="The price of one pack")
    credit_price: Credits | None = Field(
        default=None, description="The price of one credit, if not pack_price / pack_credits"
    )
    bill_failed: bool = Field(default=True, description="Whether failed actions cost credits")
    strict: Annotated[bool, Field(strict=True)] = Field(
        default=False, description="Whether only the actions listed in `actions` are priced"
    )
    action_types: Annotated[
        dict[_Name, _Prices],
        Field(min_length=1, max_length=1000, description="Prices by action type"),
    ]
    actions: Annotated[
        dict[_ActionName, _Prices],
        Field(max_length=1000, description="Prices by action name; they win over the type's"),
    ] = Field(default_factory=dict)
    models: Annotated[
        dict[_ActionName, _ModelPrices],
        Field(
            max_length=1000,
            description="Token prices by model name, in the currency per million tokens",
        ),
    ] = Field(default_factory=dict)


class RateCardRequest(RateCardBody):
    """``PUT /v1/rate-card``: a version of a tenant's rate card and when it comes into force."""

    effective_from: _dt.datetime | None = Field(
        default=None,
        description=(
            "When this version comes into force (timezone-aware); now when omitted. Records "
            "that start at or after it are priced by it, until the next version's time."
        ),
    )


class RateCardResponse(RateCardBody):
    """A version of a tenant's rate card, and when it is in force."""

    effective_from: _dt.datetime | None = Field(
        description="When this version came into force; null for the default card"
    )
    effective_until: _dt.datetime | None = Field(
        description="When the next version comes into force; null when none is set"
    )
    default: bool = Field(
        description="Whether this is the service's default card (the tenant has none in force)"
    )


def _ns(value: _dt.datetime, field: str) -> int:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ApiError(422, f"{field}: must be timezone-aware, e.g. 2026-01-31T00:00:00Z")
    ns = datetime_to_ns(value)
    if not 0 <= ns < 2**63:
        raise ApiError(422, f"{field}: {value.isoformat()} is not between 1970 and 2262")
    return ns


def _answer(version: CardVersion, status: int = 200) -> JSONResponse:
    body = RateCardResponse(
        **version.card._plain(),
        effective_from=None
        if version.effective_ns is None
        else ns_to_datetime(version.effective_ns),
        effective_until=None if version.until_ns is None else ns_to_datetime(version.until_ns),
        default=version.default,
    )
    return JSONResponse(
        body.model_dump(mode="json"),
        status_code=status,
        headers={"ETag": f'"{version.etag}"', "Cache-Control": "no-cache"},
    )


def _matches(if_none_match: str | None, etag: str) -> bool:
    """Whether an ``If-None-Match`` header (RFC 9110) names `etag` (weakly) or is ``*``."""
    if not if_none_match:
        return False
    for candidate in if_none_match.split(","):
        tag = candidate.strip()
        if tag == "*":
            return True
        if tag.startswith("W/"):
            tag = tag[2:]
        if tag.strip('"') == etag:
            return True
    return False


_ETAG = {"ETag": {"description": "The version's entity tag", "schema": {"type": "string"}}}


@router.get(
    "/rate-card",
    responses={
        200: {"model": RateCardResponse, "headers": _ETAG},
        304: {"description": "The version named in If-None-Match is still in force"},
    },
    response_model=None,
)
def get_rate_card(
    request: Request,
    tenant: TenantDep,
    at: Annotated[
        _dt.datetime | None,
        Query(description="The time whose card to return (timezone-aware); now by default"),
    ] = None,
    if_none_match: Annotated[
        str | None,
        Header(
            max_length=2000,
            description="The ETag of the version the client has: 304 while it is in force",
        ),
    ] = None,
) -> Response:
    """The tenant's rate card in force now (or at `at`); 304 when If-None-Match names it."""
    at_ns = None if at is None else _ns(at, "at")
    version = store_of(request).cards.at(tenant.id, at_ns)
    if _matches(if_none_match, version.etag):
        return Response(
            status_code=304, headers={"ETag": f'"{version.etag}"', "Cache-Control": "no-cache"}
        )
    return _answer(version)


@router.put(
    "/rate-card",
    dependencies=[Depends(admin_only)],
    responses={200: {"model": RateCardResponse, "headers": _ETAG}},
    response_model=None,
)
def put_rate_card(
    request: Request,
    body: RateCardRequest,
    tenant: Annotated[str, Query(description="The tenant's name")],
) -> Response:
    """Set a version of a tenant's rate card (admin key); one with the same start is replaced.

    Records that start at or after `effective_from` are priced by it, until the next version.
    """
    store = store_of(request)
    tenant_id = store.tenant(tenant).id
    effective_ns = (
        None if body.effective_from is None else _ns(body.effective_from, "effective_from")
    )
    card = RateCard(**body.model_dump(exclude={"effective_from"}))
    return _answer(store.cards.put(tenant_id, card, effective_ns))
