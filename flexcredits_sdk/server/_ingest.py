"""``POST /v1/records``: validate and price a batch whole, then book its new records at once.

The service books its own price of every record: the tenant's rate card in force at the
record's start time prices it (see `RateCardStore`), whatever ``credits`` the client claimed.
A record the card does not price is rejected, and with it (not booked) the whole batch.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from pydantic import ValidationError

from .._exceptions import ConfigurationError
from .._models import UsageRecordModel
from .._records import UsageRecord
from .._wire import IngestRequest
from ._database import Tenant, WalletStore
from ._plumbing import ApiError
from ._rate_cards import Pricer, wire_credits
from ._schema import to_nano

__all__ = ["ingest_batch"]

logger = logging.getLogger("flexcredits_sdk.server")


def _answer(results: list[dict[str, Any]]) -> dict[str, Any]:
    counts = {"accepted": 0, "duplicate": 0, "rejected": 0, "not_booked": 0}
    for result in results:
        counts[result["status"]] += 1
    return {
        "results": results,
        "accepted": counts["accepted"],
        "duplicates": counts["duplicate"],
        "rejected": counts["rejected"],
    }


def _reason(error: Any) -> str:
    field = ".".join(str(part) for part in error["loc"][2:]) or "record"
    return f"{field}: {error['msg']}"


def _rejection(
    body: bytes, exc: ValidationError, pricer: Pricer, now_ns: int
) -> tuple[int, dict[str, Any]]:
    """Return the 422 answer naming each invalid record, or raise 400 for a malformed batch."""
    reasons: dict[int, str] = {}
    for error in exc.errors(include_url=False):
        loc = error["loc"]
        if len(loc) < 2 or loc[0] != "records" or not isinstance(loc[1], int):
            where = ".".join(str(part) for part in loc) or "body"
            raise ApiError(400, f"malformed batch: {where}: {error['msg']}", "malformed_batch")
        reasons.setdefault(loc[1], _reason(error))
    raw = json.loads(body)["records"]
    results: list[dict[str, Any]] = []
    for index, item in enumerate(raw):
        rid = item.get("id") if isinstance(item, dict) else None
        rid = rid if isinstance(rid, str) else f"#{index}"
        if index not in reasons:
            checked = _check(UsageRecordModel.model_validate(item))
            priced = checked if isinstance(checked, str) else _price(checked, pricer, now_ns)
            if isinstance(priced, str):
                reasons[index] = priced
        if index in reasons:
            results.append({"id": rid, "status": "rejected", "reason": reasons[index]})
        else:
            results.append({"id": rid, "status": "not_booked", "reason": None})
    return 422, _answer(results)


_INT64 = 2**63
_INT32 = 2**31
#: How far in the future (by the service's clock) a record may start: clocks disagree a little.
FUTURE_SLACK_NS = 3600 * 10**9


def _check(model: UsageRecordModel, nul: bool = True) -> UsageRecord | str:
    """Return the record of a valid model, or why the service cannot book it."""
    try:
        record = UsageRecord.from_model(model)
        nano = to_nano(record.credits)
    except ConfigurationError as exc:
        return f"{exc.field}: {exc.reason}"
    if nano >= _INT64:
        return "credits: too large"
    if record.units >= _INT32:
        return "units: too large"
    if record.start_time_ns < 0:  # only a started_at can say so; start_time_ns is >= 0
        return f"started_at: {model.started_at} is before 1970-01-01T00:00:00Z"
    if record.start_time_ns + record.duration_ns >= _INT64:
        return "start_time_ns: the action must end before the year 2262"
    if not nul:
        return record
    texts = [v for v in record if isinstance(v, str)]
    texts += [*record.tags.keys(), *record.tags.values()]
    if any("\x00" in text for text in texts):
        return "record: text must not contain NUL characters"
    return record


def _price(record: UsageRecord, pricer: Pricer, now_ns: int) -> tuple[UsageRecord, Any] | str:
    """Return `record` at the service's price and the credits it claimed (``None`` when the
    two agree), or why the service cannot price it."""
    if record.start_time_ns > now_ns + FUTURE_SLACK_NS:
        return (
            f"started_at: {record.started_at.isoformat()} is in the future "
            "(more than an hour after the service's clock)"
        )
    priced = pricer.price(record)
    if isinstance(priced, str):
        return priced
    if record.model_usage:
        record = record._replace(model_usage=pricer.model_usage(record))
    claimed = record.credits
    if priced == claimed:
        return record, None
    return record._replace(credits=priced), claimed


def ingest_batch(store: WalletStore, tenant: Tenant, body: bytes) -> tuple[int, dict[str, Any]]:
    """Validate and book one batch; return the status code and the `IngestResponse` data.

    Raises:
        ApiError: 400 when the body is not a batch at all (not JSON, no records, too many).
    """
    now = store.clock()
    try:
        batch = IngestRequest.model_validate_json(body)
    except ValidationError as exc:
        return _rejection(body, exc, store.cards.pricer(tenant.id), now)
    pricer = store.cards.pricer(tenant.id)
    records: list[UsageRecord] = []
    claims: dict[str, Any] = {}  # id -> the credits claimed, where the service's price differs
    reasons: dict[int, str] = {}
    nul = b"\\u0000" in body  # JSON can carry a NUL only escaped
    hold_ids: dict[str, str] = {}  # record id -> the hold it settles against
    for index, model in enumerate(batch.records):
        checked = _check(model, nul)
        priced = checked if isinstance(checked, str) else _price(checked, pricer, now)
        if isinstance(priced, str):
            reasons[index] = priced
        else:
            record, claimed = priced
            records.append(record)
            if claimed is not None:
                claims.setdefault(record.id, (record.credits, claimed))
            if model.hold_id is not None:
                hold_ids.setdefault(record.id, model.hold_id)
    if hold_ids:
        unknown = store.unknown_holds(tenant.id, set(hold_ids.values()))
        for index, model in enumerate(batch.records):
            if model.hold_id in unknown and index not in reasons:
                reasons[index] = f"hold_id: the tenant has no hold {model.hold_id!r}"
    if reasons:
        return 422, _answer(
            [
                {"id": m.id, "status": "rejected", "reason": reasons[i]}
                if i in reasons
                else {"id": m.id, "status": "not_booked", "reason": None}
                for i, m in enumerate(batch.records)
            ]
        )
    logger.debug(
        "batch received",
        extra={"event": "ingest.start", "tenant": tenant.name, "records": len(records)},
    )
    inserted = store.ingest(tenant.id, records, hold_ids)
    results: list[dict[str, Any]] = []
    fresh = set(inserted)
    for record in records:
        rid = record.id
        if rid in fresh:
            fresh.discard(rid)  # a later copy of the same id in this batch is a duplicate
            result: dict[str, Any] = {"id": rid, "status": "accepted", "reason": None}
            if rid in claims:
                booked, claimed = claims[rid]
                result["priced"] = wire_credits(booked)
                result["claimed"] = wire_credits(claimed)
            results.append(result)
        else:
            results.append({"id": rid, "status": "duplicate", "reason": None})
    logger.info(
        "batch booked",
        extra={
            "event": "ingest.done",
            "tenant": tenant.name,
            "records": len(records),
            "accepted": len(inserted),
            "repriced": len(claims),
        },
    )
    return 200, _answer(results)
