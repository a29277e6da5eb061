"""Usage reports and record listings computed by the database, scoped to one tenant.

Usage is summed in SQL (grouped by record fields, tag values and the hour an action started)
and finished in Python: hours become the core's hour, day or month buckets, and rows are priced
and ordered exactly as `flexcredits_sdk._usage.group_usage` orders them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .._models import UsageRow
from .._pricing import RateCard
from .._records import UsageRecord, model_usage_from_json
from .._usage import RECORD_FIELDS, Bucket, _bucket_key, check_group_by, usage_rows
from ._schema import from_nano, records

__all__ = ["RecordQuery", "select_records", "usage"]

_HOUR_NS = 3_600 * 1_000_000_000


def _where(
    tenant_id: int,
    *,
    environment: str | None = None,
    since_ns: int | None = None,
    until_ns: int | None = None,
    action: str | None = None,
    conversation_id: str | None = None,
) -> list[sa.ColumnElement[bool]]:
    c = records.c
    where = [c.tenant_id == tenant_id]
    if environment is not None:
        where.append(c.environment == environment)
    if action is not None:
        where.append(c.action == action)
    if conversation_id is not None:
        where.append(c.conversation_id == conversation_id)
    if since_ns is not None:
        where.append(c.start_ns >= since_ns)
    if until_ns is not None:
        where.append(c.start_ns < until_ns)
    return where


def _plain(key: str) -> bool:
    """Whether SQLite's JSON path ``$."key"`` finds `key`: printable ASCII, no quote or escape.

    SQLite stops a path at NUL, and compares a path's key with the stored key's escaped JSON
    text, so other keys are looked up by value instead.
    """
    return key.isascii() and key.isprintable() and '"' not in key and "\\" not in key


def _tag(key: str, dialect: str) -> sa.ColumnElement[Any]:
    """Return the value of tag `key` of a record (NULL where it has none)."""
    if dialect == "sqlite" and not _plain(key):  # a bound key, compared with each stored key
        each = sa.func.json_each(records.c.tags).table_valued("key", "value")
        return sa.select(each.c.value).where(each.c.key == key).scalar_subquery()
    value: sa.ColumnElement[Any] = records.c.tags[key].as_string()
    return value


def usage(
    conn: Connection,
    tenant_id: int,
    rate_card: RateCard,
    group_by: Sequence[str],
    *,
    environment: str | None = None,
    since_ns: int | None = None,
    until_ns: int | None = None,
    bucket: Bucket | None = None,
) -> list[UsageRow]:
    """Return the tenant's usage grouped by `group_by` (record fields or tag keys).

    Raises:
        ConfigurationError: A group name is empty or not a string.
    """
    names = check_group_by(list(group_by))
    dialect = conn.dialect.name
    keys: list[sa.ColumnElement[Any]] = [
        records.c[name] if name in RECORD_FIELDS else _tag(name, dialect) for name in names
    ]
    if bucket is not None:
        keys.append(records.c.start_ns // _HOUR_NS)
    labelled = [key.label(f"k{i}") for i, key in enumerate(keys)]
    query = (
        sa.select(
            *labelled,
            sa.func.sum(records.c.units),
            sa.func.count(),
            sa.func.sum(records.c.nano_credits),
        )
        .where(*_where(tenant_id, environment=environment, since_ns=since_ns, until_ns=until_ns))
        .group_by(*labelled)
    )
    totals: dict[tuple[str | None, ...], list[int]] = {}
    for row in conn.execute(query):
        parts: list[str | None] = list(row[: len(names)])
        if bucket is not None:
            parts.append(_bucket_key(int(row[len(names)]) * _HOUR_NS, bucket))
        actions, count, nano = row[-3:]
        if count == 0:
            continue
        total = totals.setdefault(tuple(parts), [0, 0, 0])
        total[0] += int(actions)
        total[1] += int(count)
        total[2] += int(nano)
    exact = {
        key: (actions, count, from_nano(nano)) for key, (actions, count, nano) in totals.items()
    }
    return usage_rows(exact, (*names, "bucket") if bucket is not None else names, rate_card)


class RecordQuery:
    """Which records `select_records` returns (every field optional)."""

    __slots__ = (
        "action",
        "after",
        "conversation_id",
        "environment",
        "limit",
        "newest_first",
        "since_ns",
        "tags",
        "until_ns",
    )

    def __init__(
        self,
        *,
        action: str | None = None,
        environment: str | None = None,
        conversation_id: str | None = None,
        since_ns: int | None = None,
        until_ns: int | None = None,
        tags: dict[str, str] | None = None,
        after: tuple[int, str] | None = None,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> None:
        self.action = action
        self.after = after  # the (start time, id) that the records come after, in time order
        self.environment = environment
        self.conversation_id = conversation_id
        self.since_ns = since_ns
        self.until_ns = until_ns
        self.tags = tags or {}
        self.limit = limit
        self.newest_first = newest_first


def select_records(conn: Connection, tenant_id: int, query: RecordQuery) -> list[UsageRecord]:
    """Return the tenant's records that `query` selects, in time order (start time, then id)."""
    where = _where(
        tenant_id,
        environment=query.environment,
        since_ns=query.since_ns,
        until_ns=query.until_ns,
        action=query.action,
        conversation_id=query.conversation_id,
    )
    for key, value in query.tags.items():
        where.append(_tag(key, conn.dialect.name) == value)
    c = records.c
    if query.after is not None:
        start_ns, record_id = query.after
        # The first condition alone lets the time index bound the scan.
        where.append(c.start_ns >= start_ns)
        where.append(sa.or_(c.start_ns > start_ns, c.id > record_id))
    order = (c.start_ns.desc(), c.id.desc()) if query.newest_first else (c.start_ns, c.id)
    statement = sa.select(records).where(*where).order_by(*order)
    if query.limit is not None:
        statement = statement.limit(query.limit)
    rows = conn.execute(statement)
    return [
        UsageRecord(
            row.id,
            row.action,
            row.action_type,
            row.units,
            from_nano(row.nano_credits),
            row.environment,
            row.tags,
            row.conversation_id,
            row.start_ns,
            row.duration_ns,
            row.outcome,
            row.error_type,
            row.trace_id,
            row.span_id,
            model_usage_from_json(row.model_usage),
        )
        for row in rows
    ]
