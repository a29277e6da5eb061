"""Booked records: idempotency by id, selection, and usage reports grouped by any field or tag."""

from __future__ import annotations

import datetime as _dt
import itertools
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from decimal import Decimal
from itertools import groupby, repeat
from operator import floordiv, itemgetter
from typing import Any, Literal

from ._exceptions import ConfigurationError
from ._models import UsageRow
from ._pricing import RateCard
from ._records import UsageRecord, datetime_to_ns, ns_to_datetime
from ._validate import check_aware

__all__ = [
    "DEFAULT_KEEP_RECORDS",
    "RECORD_FIELDS",
    "Bucket",
    "DayTotals",
    "RecordFilter",
    "RecordLog",
    "UsageReport",
    "check_group_by",
    "check_keep_records",
    "from_columns",
    "group_usage",
    "new_records",
    "to_columns",
    "usage_rows",
]

#: How many recent records an in-memory wallet keeps by default (about 27 MiB of them).
DEFAULT_KEEP_RECORDS = 100_000

#: Fields of a record that `group_by` names directly; any other name is a tag key.
RECORD_FIELDS = ("action", "action_type", "environment", "conversation_id", "outcome")
Bucket = Literal["hour", "day", "month"]
_BUCKETS = ("hour", "day", "month")
_DAY_NS = 86_400 * 1_000_000_000


class UsageReport(list[UsageRow]):
    """Usage rows, the most credits first, and whether they count every record they should.

    A list of `UsageRow`; `complete` is ``False`` when a wallet that keeps only its recent
    records could not place some older ones in the answer: grouped by ``conversation_id`` or by
    the hour, or a `since`/`until` inside a day whose records were dropped. Running totals of
    every record by day, action, type, environment, outcome and tags answer everything else.
    """

    complete: bool

    def __init__(self, rows: Iterable[UsageRow] = (), *, complete: bool = True) -> None:
        super().__init__(rows)
        self.complete = complete

    def __repr__(self) -> str:
        return f"UsageReport({list.__repr__(self)}, complete={self.complete})"


def check_keep_records(keep: Any) -> int | None:
    """Return `keep` checked: a non-negative int, or ``None`` for every record.

    Raises:
        ConfigurationError: Anything else.
    """
    if keep is not None and (isinstance(keep, bool) or not isinstance(keep, int) or keep < 0):
        raise ConfigurationError("keep_records", keep, "must be a non-negative int or None")
    return keep


def check_group_by(group_by: Any) -> tuple[str, ...]:
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
    earlier: DayTotals | None = None,
    where: RecordFilter | None = None,
) -> UsageReport:
    """Sum records into usage rows, one per distinct value of the `group_by` fields.

    Args:
        records: The records to sum.
        group_by: Record fields (`RECORD_FIELDS`) or tag keys.
        rate_card: Prices the credits in money.
        bucket: Also group by the hour, day or month (UTC) the action started in; the row key
            then has a ``"bucket"`` entry.
        earlier: Totals of records no longer held, added where they can be placed exactly.
        where: The environment and time range of the query, for `earlier`.

    Returns:
        Rows with the most credits first; ties in key order.
    """
    names = check_group_by(group_by)
    if bucket is not None and bucket not in _BUCKETS:
        raise ConfigurationError("bucket", bucket, f"must be one of {list(_BUCKETS)} or None")
    totals: dict[tuple[str | None, ...], list[Any]] = {}
    complete = True
    if earlier is not None:
        complete = earlier.add_to(totals, names, bucket, where or RecordFilter())
    for record in records:
        parts: list[str | None] = [
            getattr(record, name) if name in RECORD_FIELDS else record.tags.get(name)
            for name in names
        ]
        if bucket is not None:
            parts.append(_bucket_key(record.start_time_ns, bucket))
        _accumulate(totals, tuple(parts), record.units, 1, record.credits)
    key_names = (*names, "bucket") if bucket is not None else names
    return UsageReport(usage_rows(totals, key_names, rate_card), complete=complete)


def _accumulate(
    totals: dict[tuple[str | None, ...], list[Any]],
    key: tuple[str | None, ...],
    units: int,
    count: int,
    credits: int | Decimal,
) -> None:
    row = totals.get(key)
    if row is None:
        totals[key] = [units, count, credits]
    else:
        row[0] += units
        row[1] += count
        row[2] += credits


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
_CHUNK = 128
_FIELD = UsageRecord._fields.index
_ACTION, _TYPE, _UNITS, _CREDITS = (
    _FIELD("action"),
    _FIELD("action_type"),
    _FIELD("units"),
    _FIELD("credits"),
)
_ENVIRONMENT, _TAGS, _START, _OUTCOME = (
    _FIELD("environment"),
    _FIELD("tags"),
    _FIELD("start_time_ns"),
    _FIELD("outcome"),
)
_NO_TAGS: dict[str, str] = {}  # shared by the rows of a column block without tags: read only
_first = itemgetter(0)


def to_columns(rows: Sequence[tuple[Any, ...]]) -> tuple[Any, ...]:
    """Return records (`UsageRecord` or plain tuples of its fields) as a block of columns.

    A block of columns is a tuple per field: the garbage collector stops scanning those of
    strings and numbers, where it would scan every record. A block without any tags has
    ``None`` for its tags column, so that its empty dicts can go at once.
    """
    columns: list[Any] = list(zip(*rows, strict=True))
    if not any(columns[_TAGS]):
        columns[_TAGS] = None
    return tuple(columns)


def from_columns(columns: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    """Return the records of a `to_columns` block, as plain tuples of their fields.

    Rows of a block without tags share one empty dict: copy it before changing it.
    """
    if columns[_TAGS] is None:
        size = len(columns[0])
        columns = (*columns[:_TAGS], (_NO_TAGS,) * size, *columns[_TAGS + 1 :])
    return list(zip(*columns, strict=True))


def new_records(
    records: Sequence[UsageRecord],
    top: str,
    known: Callable[[str], bool],
    ids: Iterable[str] | None = None,
) -> tuple[Sequence[UsageRecord], str]:
    """The one rule that finds duplicates, for any id, in memory and in a wallet file.

    A record whose id is greater (as a string) than `top`, the greatest id seen before, is new
    with no lookup: a meter's ids are UUIDv7 strings that increase within its process, so that
    is the common case, decided at C speed for a whole batch. Only an id that is not greater is
    looked up with `known`. A record whose id an earlier one of `records` has is a duplicate too.

    `ids` are the records' ids, in order, when the caller has them already (the first column
    of a block of columns).

    Returns:
        The new records, in order, and the greatest id now seen.
    """
    if not records:
        return records, top
    ordered = sorted(map(_first, records) if ids is None else ids)  # nearly in order: cheap
    if ordered[0] > top and (len(ordered) == 1 or len(set(ordered)) == len(ordered)):
        return records, ordered[-1]  # every id is greater than any seen, and they differ
    added: list[UsageRecord] = []
    seen: set[str] = set()
    for record in records:
        record_id = record[0]
        if record_id in seen or (record_id <= top and known(record_id)):
            continue
        seen.add(record_id)
        added.append(record)
    return added, max(top, ordered[-1])


class DayTotals:
    """Exact totals of records by the UTC day they started, action, type, environment, outcome
    and tags: what a wallet keeps of the records it no longer holds.

    Its size grows with the distinct combinations of those per day, not with the records.
    """

    __slots__ = ("_totals", "count", "latest_ns")

    def __init__(self) -> None:
        self._totals: dict[tuple[Any, ...], list[Any]] = {}
        self.count = 0  # records added
        self.latest_ns: int | None = None  # the latest start time added

    def add_columns(self, columns: tuple[Any, ...]) -> None:
        """Add the records of a `to_columns` block."""
        starts = columns[_START]
        size = len(starts)
        latest = max(starts)
        first_day = min(starts) // _DAY_NS
        same_day = latest // _DAY_NS == first_day
        tags = columns[_TAGS]
        keyed = (columns[_ACTION], columns[_TYPE], columns[_ENVIRONMENT], columns[_OUTCOME])
        if (
            same_day
            and all(column.count(column[0]) == size for column in keyed)
            and (tags is None or tags.count(tags[0]) == size)
        ):
            # The common block: alike records of one day (one metered function, say), found
            # by counting in C. Its units and credits are summed whatever they are.
            key = (first_day, *(column[0] for column in keyed))
            tag_map = _NO_TAGS if tags is None else tags[0]
            self._add(key, tag_map, sum(columns[_UNITS]), size, sum(columns[_CREDITS]))
        else:
            self._add_rows(columns, first_day if same_day else None)
        self.count += size
        if self.latest_ns is None or latest > self.latest_ns:
            self.latest_ns = latest

    def _add_rows(self, columns: tuple[Any, ...], day: int | None) -> None:
        """Add a block's records run by run: `day` is the block's day if it has only one."""
        tags = columns[_TAGS]
        rows = zip(
            map(floordiv, columns[_START], repeat(_DAY_NS)) if day is None else repeat(day),
            columns[_ACTION],
            columns[_TYPE],
            columns[_ENVIRONMENT],
            columns[_OUTCOME],
            repeat(_NO_TAGS) if tags is None else tags,
            columns[_UNITS],
            columns[_CREDITS],
            strict=False,  # `repeat` has no end
        )
        # Neighbouring records are mostly alike: one step per run of equal ones, found by
        # comparing neighbours in C rather than hashing every record.
        for (*key, tag_map, units, credits), run in groupby(rows):
            count = len(list(run))
            self._add(tuple(key), tag_map, units * count, count, credits * count)

    def _add(
        self,
        key: tuple[Any, ...],
        tag_map: Mapping[str, str],
        units: int,
        count: int,
        credits: int | Decimal,
    ) -> None:
        """Add to the totals of `key` (day, action, type, environment, outcome) and tags."""
        key = (*key, frozenset(tag_map.items()))
        row = self._totals.get(key)
        if row is None:
            self._totals[key] = [units, count, credits]
        else:
            row[0] += units
            row[1] += count
            row[2] += credits

    def put(self, key: tuple[Any, ...], units: int, count: int, credits: int | Decimal) -> None:
        """Set the totals of one key (a wallet file loads its totals this way)."""
        self._totals[key] = [units, count, credits]
        self.count += count

    def get(self, key: tuple[Any, ...]) -> tuple[int, int, int | Decimal]:
        """Return the actions (units), records and credits of one key."""
        units, count, credits = self._totals[key]
        return units, count, credits

    def groups(self) -> Iterator[tuple[Any, ...]]:
        """Every key: (day, action, action type, environment, outcome, frozenset of tags)."""
        return iter(self._totals)

    @staticmethod
    def answers(names: Sequence[str], bucket: Bucket | None, where: RecordFilter) -> bool:
        """Whether totals alone answer a usage query exactly: no grouping by conversation or
        hour, and a time range on whole days."""
        return (
            bucket != "hour"
            and "conversation_id" not in names
            and all(ns is None or ns % _DAY_NS == 0 for ns in (where.since_ns, where.until_ns))
        )

    def add_to(
        self,
        totals: dict[tuple[str | None, ...], list[Any]],
        names: Sequence[str],
        bucket: Bucket | None,
        where: RecordFilter,
    ) -> bool:
        """Add the totals that `where` selects to `totals`, keyed as `group_usage` keys.

        Returns:
            Whether every total `where` selects could be placed: not when grouping by
            ``conversation_id`` or by the hour, nor for a day that `where`'s time range cuts.
        """
        exact = True
        whole_days = bucket != "hour" and "conversation_id" not in names
        since, until = where.since_ns, where.until_ns
        for key, (units, count, credits) in self._totals.items():
            day, action, action_type, environment, outcome, tags = key
            if where.environment is not None and environment != where.environment:
                continue
            start = day * _DAY_NS
            end = start + _DAY_NS
            if (since is not None and end <= since) or (until is not None and start >= until):
                continue
            cut = (since is not None and start < since) or (until is not None and end > until)
            if cut or not whole_days:
                exact = False
                continue
            fields = {
                "action": action,
                "action_type": action_type,
                "environment": environment,
                "outcome": outcome,
            }
            tag_values = dict(tags)
            parts: list[str | None] = [
                fields[name] if name in RECORD_FIELDS else tag_values.get(name) for name in names
            ]
            if bucket is not None:
                parts.append(_bucket_key(start, bucket))
            _accumulate(totals, tuple(parts), units, count, credits)
        return exact


class RecordLog:
    """Records in booking order, each id at most once, the most recent `keep` of them held.

    Records are kept in chunks of about `_CHUNK`, each a block of columns (`to_columns`): cheap to
    append in bulk, compact in memory, and nearly free for the garbage collector, which would
    otherwise scan every record in each full collection of the host process. When more than
    `keep` records are held, the oldest chunks are dropped into `earlier` (`DayTotals`), so
    that usage stays exact while memory stays bounded.

    Duplicates are found by `new_records`; the ids it looks up are checked against an index of
    the ids held, built when first needed and kept up to date from then on. An id whose record
    was dropped is no longer known: its record would be booked
    again (a wallet with a file keeps every id).

    Args:
        keep: How many recent records to hold, at least (up to two chunks, 255, more);
            ``None`` holds every record.
    """

    __slots__ = ("_chunks", "_held", "_index", "_keep", "_tail", "_top", "earlier")

    def __init__(self, keep: int | None = None) -> None:
        self._keep = check_keep_records(keep)
        self._chunks: deque[tuple[Any, ...]] = deque()  # each a tuple of columns
        self._tail: list[tuple[Any, ...]] = []
        self._held = 0
        self._top = ""  # the greatest id seen
        self._index: set[str] | None = None  # every id held, once first needed
        self.earlier = DayTotals()  # the records dropped

    @property
    def keep(self) -> int | None:
        """How many recent records the log holds at least; ``None``: every record."""
        return self._keep

    @property
    def dropped(self) -> int:
        """How many records were dropped to keep memory bounded."""
        return self.earlier.count

    def add(self, record: UsageRecord) -> bool:
        """Append `record` unless its id is already here; return whether it was added."""
        return bool(self.add_many((record,)))

    def add_many(self, records: Sequence[UsageRecord]) -> Sequence[UsageRecord]:
        """Append the records whose ids are not here yet; return those appended, in order.

        A record whose id an earlier one of `records` has is not appended either.
        """
        return self.add_block(records)[0]

    def add_block(
        self, records: Sequence[UsageRecord]
    ) -> tuple[Sequence[UsageRecord], tuple[Any, ...] | None]:
        """`add_many`, also returning the block of columns (`to_columns`) of the records
        appended (``None`` when none were), for the caller to read as well.

        A batch of about a chunk's size that finds no records waiting becomes a chunk as it
        is: the usual batch of the offline wallet is turned into columns once, here.
        """
        if not records:
            return records, None
        block = to_columns(records)
        added, self._top = new_records(records, self._top, self._known, block[0])
        if not added:
            return added, None
        if added is not records:  # some were here already
            block = to_columns(added)
        if self._index is not None:
            self._index.update(block[0])
        size = len(added)
        if self._tail or size < _CHUNK // 2:
            self._extend(added)
        elif size <= 2 * _CHUNK:
            self._chunks.append(block)
            self._held += size
            self._drop()
        else:  # a large batch: its block cut into chunks, the rest waits in the tail
            whole = size - size % _CHUNK
            self._chunks.extend(
                tuple(None if column is None else column[i : i + _CHUNK] for column in block)
                for i in range(0, whole, _CHUNK)
            )
            self._tail = list(added[whole:])
            self._held += size
            self._drop()
        return added, block

    def _known(self, record_id: str) -> bool:
        """Whether a held record has this id (the index is built the first time it is asked)."""
        if self._index is None:
            self._index = set(self._ids())
        return record_id in self._index

    def _ids(self) -> Iterator[str]:
        for chunk in self._chunks:
            yield from chunk[0]
        yield from map(_first, self._tail)

    def _extend(self, records: Sequence[tuple[Any, ...]]) -> None:
        tail = self._tail
        tail.extend(records)
        self._held += len(records)
        if len(tail) >= _CHUNK:
            self._seal()

    def _seal(self) -> None:
        tail = self._tail
        whole = len(tail) - len(tail) % _CHUNK
        self._chunks.extend(to_columns(tail[i : i + _CHUNK]) for i in range(0, whole, _CHUNK))
        self._tail = tail[whole:]
        self._drop()

    def _drop(self) -> None:
        """Let the oldest chunks go into `earlier` while the others hold `keep` records."""
        keep = self._keep
        if keep is None:
            return
        chunks = self._chunks
        while chunks and self._held - len(chunks[0][0]) >= keep:
            oldest = chunks.popleft()
            self._held -= len(oldest[0])
            self.earlier.add_columns(oldest)
            if self._index is not None:
                self._index.difference_update(oldest[0])

    def __contains__(self, record_id: object) -> bool:
        return isinstance(record_id, str) and record_id <= self._top and self._known(record_id)

    def __len__(self) -> int:
        """How many records are held."""
        return self._held

    def __iter__(self) -> Iterator[UsageRecord]:
        chunks = itertools.chain.from_iterable(map(from_columns, self._chunks))
        for row in itertools.chain(chunks, list(self._tail)):
            fields = list(row)
            fields[_TAGS] = dict(fields[_TAGS])  # a copy: callers may change theirs
            yield _as_record(fields)

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
