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
"""

from __future__ import annotations

import datetime as _dt
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, Json

from ._models import PRINTABLE, Credits, GrantInfo, PositiveCredits, UsageRecordModel, UsageRow
from ._paging import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE

__all__ = [
    "API_VERSION",
    "MAX_BATCH_RECORDS",
    "ErrorDetail",
    "ErrorResponse",
    "GrantRequest",
    "GrantsResponse",
    "IngestRequest",
    "IngestResponse",
    "RecordResult",
    "RecordsQuery",
    "RecordsResponse",
    "UsageQuery",
    "UsageResponse",
]

#: The path prefix of this protocol version.
API_VERSION = "v1"
#: The most records one ingestion batch may carry.
MAX_BATCH_RECORDS = 5_000


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
