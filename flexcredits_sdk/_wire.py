"""The wire protocol between the SDK and a wallet service: request and answer models.

JSON over HTTP, versioned paths, bearer-token auth (``Authorization: Bearer <key>``); request
bodies may be gzip-compressed (``Content-Encoding: gzip``).

=======  ======================  ===================  =================================
method   path                    body                 answer
=======  ======================  ===================  =================================
POST     /v1/records             `IngestRequest`      `IngestResponse` (200) or 422
GET      /v1/balance                                  `Balance`
GET      /v1/usage               query: `UsageQuery`  `UsageResponse`
GET      /v1/records             query: records       `RecordsResponse` (a page)
GET      /v1/grants                                   `GrantsResponse`
POST     /v1/grants              `GrantRequest`       `GrantInfo` (admin key)
GET      /v1/spend-control                            `SpendControl`
POST     /v1/holds               `HoldRequest`        `HoldInfo` (201; 200 again) or 402
GET      /v1/holds                                    `HoldsResponse` (active holds)
GET      /v1/holds/{id}                               `HoldInfo`
DELETE   /v1/holds/{id}                               `HoldInfo` (released)
=======  ======================  ===================  =================================

Ingestion is idempotent per record: each record's ``id`` is its idempotency key and the service
books an id once per tenant, whatever the retries; a batch also carries an ``Idempotency-Key``
header (the batch id). A batch is validated whole before anything is booked: when any record is
invalid the answer is 422 with an `IngestResponse` whose results name the rejected records and
their reasons (``status="rejected"``) and mark the others ``"not_booked"``; nothing in the batch
is booked, and the client resends the valid records. A client that sends
``Prefer: return=minimal`` (RFC 7240) gets results only for the records the service did not
settle (rejected or not booked); the others are counted in ``accepted`` and ``duplicates``, and
the answer carries ``Preference-Applied: return=minimal``. Errors other than per-record ones are
an `ErrorResponse`.

A hold reserves credits for actions about to run, so that a tenant that denies overdraft or
has hard budgets can say no before an action runs. It is refused with 402 and a
`RefusalResponse` (``insufficient_credits`` or ``budget_exceeded``, with the figures). Its
``id`` is an idempotency key like a record's: the same request again answers 200 with the
same hold. A record that carries ``hold_id`` settles against that hold when it is booked;
``DELETE`` gives back what is left; a hold past its ``ttl`` gives it back by itself.
"""

from __future__ import annotations

import datetime as _dt
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, Json

from ._models import (
    PRINTABLE,
    BudgetInfo,
    Credits,
    GrantInfo,
    HoldInfo,
    PositiveCredits,
    RecordId,
    SignedCredits,
    Tags,
    UsageRecordModel,
    UsageRow,
)
from ._paging import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE

__all__ = [
    "API_VERSION",
    "DEFAULT_HOLD_TTL",
    "MAX_BATCH_RECORDS",
    "MAX_HOLD_CREDITS",
    "MAX_HOLD_TTL",
    "ErrorDetail",
    "ErrorResponse",
    "GrantRequest",
    "GrantsResponse",
    "HoldRequest",
    "HoldsResponse",
    "IngestRequest",
    "IngestResponse",
    "RecordResult",
    "RecordsQuery",
    "RecordsResponse",
    "Refusal",
    "RefusalResponse",
    "SpendControl",
    "UsageQuery",
    "UsageResponse",
]

#: The path prefix of this protocol version.
API_VERSION = "v1"
#: The most records one ingestion batch may carry.
MAX_BATCH_RECORDS = 5_000
#: The longest a hold may last, in seconds, and how long one lasts when the request is silent.
MAX_HOLD_TTL = 3600
DEFAULT_HOLD_TTL = 60
#: The most credits one hold may reserve.
MAX_HOLD_CREDITS = 10**9


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class IngestRequest(_Model):
    """``POST /v1/records``: a batch of usage records."""

    records: Annotated[list[UsageRecordModel], Field(min_length=1, max_length=MAX_BATCH_RECORDS)]


class RecordResult(_Model):
    """What the service did with one record of a batch.

    ``accepted``: booked now. ``duplicate``: booked before (same id), not booked again.
    ``rejected``: invalid, with the reason. ``not_booked``: valid, but the batch was refused
    because another record in it is invalid; send it again.

    The service books its own price of each record (its rate card in force at the record's
    start); an accepted record whose ``credits`` differ says both, in `priced` and `claimed`.
    """

    id: str
    status: Literal["accepted", "duplicate", "rejected", "not_booked"]
    reason: str | None = None
    priced: Credits | None = Field(
        default=None, description="The credits booked, where the record claimed others"
    )
    claimed: Credits | None = Field(
        default=None, description="The credits the record claimed, where they were not booked"
    )


class IngestResponse(_Model):
    """The answer to a batch: one result per record, in the batch's order, and the counts."""

    results: list[RecordResult]
    accepted: int
    duplicates: int
    rejected: int


class GrantRequest(_Model):
    """``POST /v1/grants?tenant=NAME`` (admin key): add credits to a tenant's wallet."""

    credits: PositiveCredits
    source: Annotated[str, Field(min_length=1, max_length=200)] = "grant"
    expires_at: _dt.datetime | None = None
    priority: int = 1


class GrantsResponse(_Model):
    """``GET /v1/grants``."""

    grants: list[GrantInfo]


class UsageQuery(_Model):
    """``GET /v1/usage`` query parameters (``group_by`` may repeat)."""

    group_by: list[Annotated[str, Field(json_schema_extra={"pattern": PRINTABLE})]] = Field(
        default_factory=list, json_schema_extra={"maxItems": 20}
    )
    environment: str | None = None
    since: _dt.datetime | None = None
    until: _dt.datetime | None = None
    bucket: Literal["hour", "day", "month"] | None = None


class UsageResponse(_Model):
    """``GET /v1/usage``: rows with the most credits first."""

    rows: list[UsageRow]


class RecordsQuery(_Model):
    """``GET /v1/records`` query parameters; ``tags`` is a JSON object every record must match.

    One page of records in time order (start time, then id): at most `limit` (1,000 when
    omitted, at most 10,000), after the record that `cursor` (a ``next_cursor``) stands for.
    """

    action: str | None = None
    environment: str | None = None
    conversation_id: str | None = None
    tags: Json[dict[str, str]] | None = Field(
        default=None,
        description=(
            'A JSON object of tags, e.g. `{"team":"support"}`: only records that carry every one '
            "of them."
        ),
        examples=['{"team":"support"}'],
    )
    since: _dt.datetime | None = None
    until: _dt.datetime | None = None
    cursor: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    limit: Annotated[int, Field(gt=0, le=MAX_PAGE_SIZE)] = DEFAULT_PAGE_SIZE


class RecordsResponse(_Model):
    """``GET /v1/records``: one page of records in time order, and the cursor of the next page
    (``None`` on the last page)."""

    records: list[UsageRecordModel]
    next_cursor: str | None = None


class ErrorDetail(_Model):
    """A machine-readable code and a sentence; never a stack trace."""

    code: str
    message: str


class ErrorResponse(_Model):
    """Any error answer other than a 422 on ingestion."""

    error: ErrorDetail


class HoldRequest(_Model):
    """``POST /v1/holds``: reserve `credits` for actions carrying `tags`, for `ttl` seconds.

    ``id`` is the idempotency key (the service makes one when it is absent): the same request
    again answers with the same hold, a different request with the same id is refused (409).
    """

    id: RecordId | None = None
    credits: Annotated[
        PositiveCredits, Field(le=MAX_HOLD_CREDITS, json_schema_extra={"maximum": MAX_HOLD_CREDITS})
    ]
    tags: Tags = Field(default_factory=dict)
    ttl: Annotated[float, Field(gt=0, le=MAX_HOLD_TTL, allow_inf_nan=False)] = DEFAULT_HOLD_TTL


class HoldsResponse(_Model):
    """``GET /v1/holds``: the tenant's active holds, oldest first."""

    holds: list[HoldInfo]


class Refusal(_Model):
    """Why a hold was refused, with the figures.

    Attributes:
        credits: The credits asked for.
        available: The most a hold for these tags could reserve now: what the balance less
            every active hold (with overdraft denied) and every hard budget the tags match have
            left, the least of them.
        held: The credits every active hold of the tenant reserves (leases of other
            processes among them).
        budget: The hard budget that refused, for ``budget_exceeded``.
    """

    credits: Credits
    available: SignedCredits
    held: Credits
    budget: BudgetInfo | None = None


class RefusalResponse(_Model):
    """A refused hold (402): ``error.code`` is ``insufficient_credits`` or ``budget_exceeded``."""

    error: ErrorDetail
    refusal: Refusal


class SpendControl(_Model):
    """``GET /v1/spend-control``: whether actions must be authorized (hold first) and which
    tags need it.

    Attributes:
        overdraft: ``"deny"``: every action needs a hold; ``"allow"``: only actions that a
            hard budget matches.
        hard_budgets: The hard budgets (a hold for an action's tags counts against each one
            whose tags the action carries).
        max_ttl: The longest hold the service grants, in seconds.
    """

    overdraft: Literal["allow", "deny"]
    hard_budgets: list[BudgetInfo]
    max_ttl: int = MAX_HOLD_TTL
