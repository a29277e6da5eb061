"""The service's JSON endpoints: the wire protocol's, and the wallet's alerts and settings.

Every tenant endpoint takes the tenant from the caller's key (`tenant_of`) and passes only its
id to the store; no request names another tenant. Admin endpoints need the admin key.
"""

from __future__ import annotations

import datetime as _dt
import json
import secrets
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from .._exceptions import ConfigurationError
from .._models import Balance, GrantInfo
from .._paging import decode_cursor, encode_cursor, time_order
from .._records import datetime_to_ns
from .._wire import (
    MAX_BATCH_RECORDS,
    ErrorResponse,
    GrantRequest,
    GrantsResponse,
    IngestRequest,
    IngestResponse,
    RecordsQuery,
    RecordsResponse,
    UsageQuery,
    UsageResponse,
)
from ._ingest import ingest_batch
from ._metrics import ServiceMetrics
from ._plumbing import ApiError, TenantDep, admin_only, printable, read_body, store_of
from ._queries import RecordQuery
from ._requests import (
    AlertsResponse,
    TenantRequest,
    TenantResponse,
    TenantSettings,
    TenantUpdate,
    WatchRequest,
    WatchResponse,
    WebhookRequest,
    WebhookResponse,
)
from ._webhooks import check_destination

__all__ = ["router"]

router = APIRouter(prefix="/v1")

# The keys a route needs, 401/403, 413 and 422 are declared from its dependencies, parameters
# and body by `flexcredits_sdk._export._openapi`; the routes declare only what is their own.
_INGEST: dict[str, Any] = {
    "parameters": [
        {
            "name": "Idempotency-Key",
            "in": "header",
            "required": False,
            "schema": {"type": "string"},
            "description": (
                "The batch's id (a retry of the batch reuses it), for logs; each record's `id` "
                "is its own idempotency key."
            ),
        },
        {
            "name": "Prefer",
            "in": "header",
            "required": False,
            "schema": {"type": "string", "examples": ["return=minimal"]},
            "description": (
                "`return=minimal` (RFC 7240): list only the records not settled (rejected, not "
                "booked); the answer then carries `Preference-Applied: return=minimal`."
            ),
        },
    ],
    "requestBody": {
        "required": True,
        "description": (
            f"A batch of 1 to {MAX_BATCH_RECORDS:,} records. The body may be gzip-compressed: "
            "send the compressed bytes with `Content-Encoding: gzip` (an encoding other than "
            "`gzip` or `identity` is a 415); the size limit applies after decompression. The "
            "encoding is the body's, not a parameter: `x-content-encoding` lists the ones "
            "accepted."
        ),
        "content": {
            "application/json": {
                "schema": {"$ref": f"#/components/schemas/{IngestRequest.__name__}"}
            }
        },
        "x-content-encoding": ["identity", "gzip"],
    },
}
_PREFERENCE = {
    "Preference-Applied": {
        "description": "`return=minimal` when the request asked for it",
        "schema": {"type": "string"},
    },
    "Vary": {"description": "`Prefer`", "schema": {"type": "string"}},
}


_INT64 = 2**63


def _ns(value: _dt.datetime | None, field: str) -> int | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise ApiError(422, f"{field}: must be timezone-aware, e.g. 2026-01-31T00:00:00Z")
    return max(-_INT64, min(datetime_to_ns(value), _INT64 - 1))  # the range of BIGINT


@router.post(
    "/records",
    operation_id="ingestRecords",
    openapi_extra=_INGEST,
    responses={
        200: {
            "model": IngestResponse,
            "description": "Every record booked now or before (a duplicate)",
            "headers": _PREFERENCE,
        },
        422: {
            "model": IngestResponse,
            "description": (
                "Some records are invalid: each is rejected with its reason, the others are "
                "not booked; nothing of the batch was booked"
            ),
            "headers": _PREFERENCE,
        },
        400: {
            "model": ErrorResponse,
            "description": "Not a batch: not JSON, no records, "
            f"more than {MAX_BATCH_RECORDS:,}, or a gzip body that is not valid gzip",
        },
        415: {"model": ErrorResponse, "description": "A content encoding other than gzip"},
    },
)
async def post_records(request: Request, tenant: TenantDep) -> Response:
    """Book a batch of usage records, each id once per tenant."""
    body = await read_body(request, request.app.state.settings.max_body_bytes)
    metrics: ServiceMetrics = request.app.state.metrics
    with metrics.ingest_seconds.time():
        status, answer = await run_in_threadpool(ingest_batch, store_of(request), tenant, body)
    metrics.count_records(answer)
    headers = {"Vary": "Prefer"}
    if _prefers_minimal(request.headers.get("prefer")):
        settled = ("accepted", "duplicate")
        answer["results"] = [r for r in answer["results"] if r["status"] not in settled]
        headers["Preference-Applied"] = "return=minimal"
    return Response(
        json.dumps(answer), status_code=status, media_type="application/json", headers=headers
    )


def _prefers_minimal(prefer: str | None) -> bool:
    """Whether a ``Prefer`` header (RFC 7240) asks for ``return=minimal``."""
    if not prefer:
        return False
    tokens = (part.split(";", 1)[0].strip().lower() for part in prefer.split(","))
    return any(token.replace(" ", "") in ("return=minimal", 'return="minimal"') for token in tokens)


@router.get("/balance", operation_id="getBalance")
def get_balance(request: Request, tenant: TenantDep) -> Balance:
    """The balance: one across every environment."""
    return store_of(request).balance(tenant.id)


@router.get("/usage", operation_id="getUsage")
def get_usage(
    request: Request, tenant: TenantDep, query: Annotated[UsageQuery, Query()]
) -> UsageResponse:
    """Usage grouped by record fields (action, environment, ...) or tag keys."""
    if len(query.group_by) > 20:
        raise ApiError(422, "group_by: at most 20 names")
    rows = store_of(request).usage(
        tenant.id,
        [printable(name, "group_by") for name in query.group_by],
        environment=query.environment,
        since_ns=_ns(query.since, "since"),
        until_ns=_ns(query.until, "until"),
        bucket=query.bucket,
    )
    return UsageResponse(rows=rows)


@router.get("/records", operation_id="listRecords")
def get_records(
    request: Request, tenant: TenantDep, query: Annotated[RecordsQuery, Query()]
) -> RecordsResponse:
    """One page of booked records in time order, and the cursor of the next page."""
    try:
        after = None if query.cursor is None else decode_cursor(query.cursor)
    except ConfigurationError as exc:
        raise ApiError(422, f"cursor: {exc.reason}") from None
    selection = RecordQuery(
        action=query.action,
        environment=query.environment,
        conversation_id=query.conversation_id,
        since_ns=_ns(query.since, "since"),
        until_ns=_ns(query.until, "until"),
        tags=query.tags and {printable(k, "tags key"): v for k, v in query.tags.items()},
        after=after,
        limit=query.limit,
    )
    found = store_of(request).records(tenant.id, selection)
    more = len(found) == query.limit
    return RecordsResponse.model_validate(
        {
            "records": [r.to_dict() for r in found],
            "next_cursor": encode_cursor(time_order(found[-1])) if more else None,
        }
    )


@router.get("/grants", operation_id="listGrants")
def get_grants(request: Request, tenant: TenantDep) -> GrantsResponse:
    """Every grant with what is left of it, oldest first."""
    return GrantsResponse(grants=store_of(request).grants(tenant.id))


@router.post("/grants", operation_id="addGrant", dependencies=[Depends(admin_only)])
def post_grant(
    request: Request,
    grant: GrantRequest,
    tenant: Annotated[str, Query(description="The tenant's name")],
) -> GrantInfo:
    """Add credits to a tenant's wallet (admin key)."""
    store = store_of(request)
    return store.grant(
        store.tenant(tenant).id,
        grant.credits,
        source=grant.source,
        priority=grant.priority,
        expires_ns=_ns(grant.expires_at, "expires_at"),
    )


@router.get("/alerts", operation_id="listAlerts")
def get_alerts(
    request: Request, tenant: TenantDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> AlertsResponse:
    """The latest alerts, newest first."""
    return AlertsResponse(alerts=store_of(request).alerts(tenant.id, limit))


@router.post("/watches", operation_id="addWatch")
def post_watch(request: Request, tenant: TenantDep, watch: WatchRequest) -> WatchResponse:
    """Alert when the balance falls below credits or a percentage of unexpired grants."""
    if (watch.credits is None) == (watch.percent is None):
        raise ApiError(422, "give exactly one of credits and percent")
    watch_id = store_of(request).watch_low_balance(
        tenant.id, credits=watch.credits, percent=watch.percent
    )
    return WatchResponse(id=watch_id)


@router.put("/webhook", operation_id="setWebhook")
def put_webhook(request: Request, tenant: TenantDep, webhook: WebhookRequest) -> WebhookResponse:
    """Send alerts to `url`, signed with a new secret (shown only here).

    The URL's host must resolve to public addresses only, unless the service allows others.
    """
    url = str(webhook.url)
    if not request.app.state.settings.allow_private_webhooks:
        check_destination(url)
    secret = "whsec_" + secrets.token_urlsafe(32)
    store_of(request).set_webhook(tenant.id, url, secret)
    return WebhookResponse(url=url, secret=secret)


@router.delete("/webhook", operation_id="deleteWebhook", status_code=204)
def delete_webhook(request: Request, tenant: TenantDep) -> Response:
    """Stop sending alerts."""
    store_of(request).set_webhook(tenant.id, None, None)
    return Response(status_code=204)


@router.post("/tenants", operation_id="createTenant", dependencies=[Depends(admin_only)])
def post_tenant(request: Request, body: TenantRequest) -> TenantResponse:
    """Create a tenant (admin key); the answer holds its API key, shown only here."""
    key = store_of(request).create_tenant(
        body.name, overdraft=body.overdraft, time_zone=body.time_zone
    )
    return TenantResponse(name=body.name, api_key=key)


@router.patch(
    "/tenants/{name}",
    operation_id="updateTenant",
    dependencies=[Depends(admin_only)],
    responses={404: {"model": ErrorResponse, "description": "No tenant has this name"}},
)
def patch_tenant(request: Request, name: str, body: TenantUpdate) -> TenantSettings:
    """Change a tenant's settings (admin key).

    A new time zone starts each day and month budget period from the next one on.
    """
    store = store_of(request)
    try:
        store.tenant(name)
    except ConfigurationError:
        raise ApiError(404, f"name: no tenant {name!r}") from None
    store.set_time_zone(name, body.time_zone)
    return TenantSettings(name=name, time_zone=store.time_zone(name))


@router.post("/tenants/{name}/keys", operation_id="createKey", dependencies=[Depends(admin_only)])
def post_key(request: Request, name: str) -> TenantResponse:
    """Add an API key to a tenant (admin key); shown only in this answer."""
    return TenantResponse(name=name, api_key=store_of(request).new_key(name))
