"""Booked records: idempotency by id, selection, and usage reports grouped by any field or tag."""

from __future__ import annotations

import datetime as _dt
import itertools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from decimal import Decimal
from operator import itemgetter
from typing import Any, Literal

from ._exceptions import ConfigurationError
from ._models import UsageRow
from ._pricing import RateCard
from ._records import UsageRecord, datetime_to_ns, ns_to_datetime
from ._validate import check_aware

__all__ = ["RECORD_FIELDS", "Bucket", "RecordFilter", "RecordLog", "group_usage", "usage_rows"]

#: Fields of a record that `group_by` names directly; any other name is a tag key.
RECORD_FIELDS = ("action", "action_type", "environment", "conversation_id", "outcome")
Bucket = Literal["hour", "day", "month"]
_BUCKETS = ("hour", "day", "month")


def _check_group_by(group_by: Any) -> tuple[str, ...]:
    if isinstance(group_by, str) or not isinstance(group_by, Sequence):
        raise ConfigurationError(
            "group_by", group_by, "must be a list of field or tag names, e.g. ['department']"
        )
    for name in group_by:
        if not isinstance(name, str) or not name:
            raise ConfigurationError("group_by", group_by, f"{name!r} is not a field or tag name")
    return tuple(group_by)


def _bucket_key(start_ns: int, bucket: Bucket) -> str:
    when = ns_to_datetime(start_ns)
    if bucket == "hour":
        return when.strftime("%Y-%m-%dT%H:00Z")
    if bucket == "day":
        return when.strftime("%Y-%m-%d")
    return when.strftime("%Y-%m")


class RecordFilter:
    """Which records a query selects; built once from the caller's arguments, validated.

    Raises:
        ConfigurationError: A datetime is naive, tags are not str to str, or a field is wrong.
    """

    __slots__ = ("action", "conversation_id", "environment", "since_ns", "tags", "until_ns")

    def __init__(
        self,
        *,
        action: str | None = None,
        tags: Mapping[str, str] | None = None,
        environment: str | None = None,
        conversation_id: str | None = None,
        since: _dt.datetime | None = None,
        until: _dt.datetime | None = None,
    ) -> None:
        if tags is not None and not isinstance(tags, Mapping):
            raise ConfigurationError("tags", tags, "must be a mapping of str to str")
        self.action = action
        self.tags = dict(tags) if tags else None
        self.environment = environment
        self.conversation_id = conversation_id
        self.since_ns = None if since is None else datetime_to_ns(check_aware(since, "since"))
        self.until_ns = None if until is None else datetime_to_ns(check_aware(until, "until"))

    def __call__(self, record: UsageRecord) -> bool:
        if self.action is not None and record.action != self.action:
            return False
        if self.environment is not None and record.environment != self.environment:
            return False
        if self.conversation_id is not None and record.conversation_id != self.conversation_id:
            return False
        if self.since_ns is not None and record.start_time_ns < self.since_ns:
            return False
        if self.until_ns is not None and record.start_time_ns >= self.until_ns:
            return False
        if self.tags:
            tags = record.tags
            return all(tags.get(k) == v for k, v in self.tags.items())
        return True


def group_usage(
    records: Iterable[UsageRecord],
    group_by: Sequence[str],
    rate_card: RateCard,
    *,
    bucket: Bucket | None = None,
) -> list[UsageRow]:
    """Sum records into usage rows, one per distinct value of the `group_by` fields.

    Args:
        records: The records to sum.
        group_by: Record fields (`RECORD_FIELDS`) or tag keys.
        rate_card: Prices the credits in money.
        bucket: Also group by the hour, day or month (UTC) the action started in; the row key
            then has a ``"bucket"`` entry.

    Returns:
        Rows with the most credits first; ties in key order.
    """
    names = _check_group_by(group_by)
    if bucket is not None and bucket not in _BUCKETS:
        raise ConfigurationError("bucket", bucket, f"must be one of {list(_BUCKETS)} or None")
    totals: dict[tuple[str | None, ...], list[Any]] = {}
    for record in records:
        parts: list[str | None] = [
            getattr(record, name) if name in RECORD_FIELDS else record.tags.get(name)
            for name in names
        ]
        if bucket is not None:
            parts.append(_bucket_key(record.start_time_ns, bucket))
        key = tuple(parts)
        row = totals.get(key)
        if row is None:
            totals[key] = [record.units, 1, record.credits]
        else:
            row[0] += record.units
            row[1] += 1
            row[2] += record.credits
    return usage_rows(totals, (*names, "bucket") if bucket is not None else names, rate_card)


def usage_rows(
    totals: Mapping[tuple[str | None, ...], Sequence[Any]],
    key_names: Sequence[str],
    rate_card: RateCard,
) -> list[UsageRow]:
    """Turn group totals into usage rows, the most credits first and ties in key order.

    Args:
        totals: For each group key, its actions (units), record count and credits.
        key_names: The names of the key's parts, in order.
        rate_card: Prices the credits in money.
    """
    rows = [
        UsageRow(
            key=dict(zip(key_names, key, strict=True)),
            actions=actions,
            records=count,
            credits=credits,
            usd=rate_card.usd(credits),
        )
        for key, (actions, count, credits) in totals.items()
    ]
    rows.sort(
        key=lambda r: (-Decimal(r.credits), tuple((v is None, v or "") for v in r.key.values()))
    )
    return rows


_as_record = UsageRecord._make
_chain = itertools.chain.from_iterable
_CHUNK = 128
_WIDTH = len(UsageRecord._fields)
_TAGS = UsageRecord._fields.index("tags")
_first = itemgetter(0)


class RecordLog:
    """Records in booking order, each id at most once.

    Records are kept in chunks of `_CHUNK`, each one flat tuple of their fields with the tags as
    pairs: cheap to append in bulk, compact in memory, and untracked by the garbage collector,
    which would otherwise scan millions of records in every full collection of the host process.
    """

    __slots__ = ("_chunks", "_ids", "_tail")

    def __init__(self) -> None:
        self._chunks: list[tuple[Any, ...]] = []
        self._tail: list[UsageRecord] = []
        self._ids: set[str] = set()

    def add(self, record: UsageRecord) -> bool:
        """Append `record` unless its id is already here; return whether it was added."""
        ids = self._ids
        if record[0] in ids:
            return False
        ids.add(record[0])
        self._tail.append(record)
        if len(self._tail) >= _CHUNK:
            self._seal()
        return True

    def add_many(self, records: list[UsageRecord]) -> list[UsageRecord]:
        """Append each record whose id is new here; return those appended, in order."""
        ids = self._ids
        batch_ids = set(map(_first, records))
        if len(batch_ids) != len(records) or not ids.isdisjoint(batch_ids):
            return [r for r in records if self.add(r)]  # some ids repeat: one by one
        ids |= batch_ids
        tail = self._tail
        tail.extend(records)
        if len(tail) >= _CHUNK:
            self._seal()
        return records

    def _seal(self) -> None:
        fields: list[Any] = list(_chain(self._tail))
        # Tags become tuples of pairs: the garbage collector stops tracking a tuple that holds
        # only strings, numbers, None and such tuples, so full collections skip sealed chunks.
        fields[_TAGS::_WIDTH] = [tuple(t.items()) if t else None for t in fields[_TAGS::_WIDTH]]
        self._chunks.append(tuple(fields))
        self._tail = []

    def __contains__(self, record_id: object) -> bool:
        return record_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def __iter__(self) -> Iterator[UsageRecord]:
        width = _WIDTH
        for chunk in self._chunks:
            for start in range(0, len(chunk), width):
                row = list(chunk[start : start + width])
                row[_TAGS] = dict(row[_TAGS]) if row[_TAGS] else {}
                yield _as_record(row)
        yield from list(self._tail)

    def select(self, where: RecordFilter, limit: int | None = None) -> list[UsageRecord]:
        """Return the records `where` selects, oldest first, at most `limit`."""
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, int) or limit < 0
        ):
            raise ConfigurationError("limit", limit, "must be a non-negative int or None")
        out: list[UsageRecord] = []
        if limit == 0:
            return out
        for record in self:
            if where(record):
                out.append(record)
                if limit is not None and len(out) >= limit:
                    break
        return out
