"""Storing a batch of records, each id once per tenant, and learning which ids were new.

The unique (tenant, id) key decides, in the database, which records are new, whatever other
transactions or processes do at the same time. Rows go in sorted by id, so concurrent batches
lock ids in the same order and never deadlock.

The ids already stored are looked up first and the others written in bulk: on PostgreSQL with
``COPY`` inside a savepoint, so that when a concurrent transaction has stored some of the same
ids meanwhile, the unique key refuses the copy and the batch goes again through
``INSERT ... SELECT FROM unnest(...) ON CONFLICT DO NOTHING RETURNING id``, which lets the key
decide record by record. On SQLite, whose writers take turns, one ``executemany`` follows the
look-up.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import psycopg
from sqlalchemy.engine import Connection

from .._records import UsageRecord, model_usage_json
from ._schema import to_nano

__all__ = ["copy_or_upsert", "insert_records"]

_COLUMNS = (
    "id, action, action_type, units, nano_credits, environment, tags, conversation_id, "
    "start_ns, duration_ns, outcome, error_type, trace_id, span_id, model_usage"
)
_UPSERT = (
    f"INSERT INTO records (tenant_id, {_COLUMNS}) "
    "SELECT %s, * FROM unnest(%s::text[], %s::text[], %s::text[], %s::int[], %s::bigint[], "
    "%s::text[], %s::json[], %s::text[], %s::bigint[], %s::bigint[], %s::text[], %s::text[], "
    "%s::text[], %s::text[], %s::text[]) ON CONFLICT DO NOTHING RETURNING id"
)
_CHUNK = 1000


def _sorted(batch: Sequence[UsageRecord]) -> list[UsageRecord]:
    return sorted(batch, key=lambda r: r.id)


def _row(tenant_id: int, r: UsageRecord) -> tuple[Any, ...]:
    return (
        tenant_id,
        r.id,
        r.action,
        r.action_type,
        r.units,
        to_nano(r.credits),
        r.environment,
        json.dumps(dict(r.tags)),
        r.conversation_id,
        r.start_time_ns,
        r.duration_ns,
        r.outcome,
        r.error_type,
        r.trace_id,
        r.span_id,
        model_usage_json(r.model_usage),
    )


def _unknown(batch: list[UsageRecord], known: set[str]) -> list[UsageRecord]:
    """Return the records of `batch` whose ids are not in `known`, each id once."""
    fresh = []
    for r in batch:
        if r.id not in known:
            known.add(r.id)
            fresh.append(r)
    return fresh


def _postgresql(conn: Connection, tenant_id: int, batch: list[UsageRecord]) -> set[str]:
    query = "SELECT id FROM records WHERE tenant_id = %s AND id = ANY(%s)"
    known = {row[0] for row in conn.exec_driver_sql(query, (tenant_id, [r.id for r in batch]))}
    fresh = _unknown(batch, known)
    return copy_or_upsert(conn, tenant_id, fresh) if fresh else set()


def copy_or_upsert(conn: Connection, tenant_id: int, fresh: list[UsageRecord]) -> set[str]:
    """Store `fresh` records (believed new) on PostgreSQL; return the ids that were new."""
    try:
        with conn.begin_nested():
            cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            with cursor.copy(f"COPY records (tenant_id, {_COLUMNS}) FROM STDIN") as copy:
                for r in fresh:
                    copy.write_row(_row(tenant_id, r))
    except psycopg.errors.UniqueViolation:
        # Another transaction stored some of these ids since the look-up: let the unique key
        # decide, record by record.
        return _postgresql_upsert(conn, tenant_id, fresh)
    return {r.id for r in fresh}


def _postgresql_upsert(conn: Connection, tenant_id: int, batch: list[UsageRecord]) -> set[str]:
    columns: list[list[Any]] = [[] for _ in range(15)]
    for r in batch:
        for column, value in zip(columns, _row(tenant_id, r)[1:], strict=True):
            column.append(value)
    result = conn.exec_driver_sql(_UPSERT, (tenant_id, *columns))
    return {row[0] for row in result}


def _sqlite(conn: Connection, tenant_id: int, batch: list[UsageRecord]) -> set[str]:
    # A writing transaction on SQLite holds the database's write lock from its first statement
    # (BEGIN IMMEDIATE): no other transaction can insert between this look-up and the insert.
    ids = [r.id for r in batch]
    known: set[str] = set()
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        marks = ",".join("?" * len(chunk))
        query = f"SELECT id FROM records WHERE tenant_id = ? AND id IN ({marks})"
        known.update(row[0] for row in conn.exec_driver_sql(query, (tenant_id, *chunk)))
    rows = [_row(tenant_id, r) for r in _unknown(batch, known)]
    if rows:
        marks = ",".join("?" * 16)
        conn.exec_driver_sql(f"INSERT INTO records (tenant_id, {_COLUMNS}) VALUES ({marks})", rows)
    return {row[1] for row in rows}


def insert_records(conn: Connection, tenant_id: int, batch: Sequence[UsageRecord]) -> set[str]:
    """Store the records of `batch` whose ids the tenant lacks; return those ids.

    Raises:
        ConfigurationError: A record's credits have more than nine decimal places.
    """
    ordered = _sorted(batch)
    if conn.dialect.name == "postgresql":
        return _postgresql(conn, tenant_id, ordered)
    return _sqlite(conn, tenant_id, ordered)
