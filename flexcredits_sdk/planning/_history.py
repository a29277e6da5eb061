"""Reading history files: one row per action, from JSONL, CSV or the SDK's own usage records.

Rows are read one at a time (the file is never loaded whole). A row that cannot be read raises
`HistoryError` with its line number, or, when the caller skips bad rows, is handed to a callback
and left out.
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any, Literal, NamedTuple

from .._exceptions import ConfigurationError
from .._records import UsageRecord
from ._errors import HistoryError

__all__ = ["COLUMNS", "HistoryFormat", "HistoryRow", "read_history", "rows_from_records"]

HistoryFormat = Literal["jsonl", "csv", "records"]
#: The columns of a history file, in CSV order; only the first four are required.
COLUMNS = (
    "conversation_id",
    "action",
    "action_type",
    "timestamp",
    "environment",
    "tags",
    "resolved",
    "units",
)
_UTC = _dt.UTC
_TRUE = frozenset({"true", "1", "yes", "y", "t"})
_FALSE = frozenset({"false", "0", "no", "n", "f", ""})
#: Distinct tag sets remembered before the cache starts afresh (keeps memory bounded).
_MAX_REMEMBERED = 100_000


class HistoryRow(NamedTuple):
    """One action read from a history.

    Attributes:
        line: The row's 1-based line number in its file (0 for rows not read from a file).
        conversation_id: The conversation, or ``None`` (the action is a conversation alone).
        action: The action's name.
        action_type: The action's type (the name when the row gives no type).
        environment: Where it ran; ``"production"`` when the row does not say.
        tags: Tag keys and values (shared between rows: do not change it).
        units: Billable actions the row stands for (1 unless the row says).
        resolved: Whether the row marks its conversation resolved.
        time_s: When the action started, in Unix seconds.
        day: The UTC day it started, ``"YYYY-MM-DD"``.
    """

    line: int
    conversation_id: str | None
    action: str
    action_type: str
    environment: str
    tags: Mapping[str, str]
    units: int
    resolved: bool
    time_s: int
    day: str


_new_row = tuple.__new__


class _Bad(Exception):
    def __init__(self, field: str, value: Any, reason: str) -> None:
        self.args = (field, value, reason)


class _Times:
    """Parses ISO 8601 timestamps, remembering the last one (logs repeat them)."""

    __slots__ = ("last", "parsed")

    def __init__(self) -> None:
        self.last = ""
        self.parsed = (0, "")

    def __call__(self, value: Any) -> tuple[int, str]:
        if value == self.last:
            return self.parsed
        if not isinstance(value, str):
            raise _Bad("timestamp", value, "must be an ISO 8601 string with a timezone")
        try:
            when = _dt.datetime.fromisoformat(value)
        except ValueError:
            raise _Bad("timestamp", value, "is not an ISO 8601 date and time") from None
        if when.tzinfo is None:
            raise _Bad("timestamp", value, "must include a timezone, e.g. 'Z' or '+02:00'")
        seconds = int(when.timestamp())
        day = when.astimezone(_UTC).strftime("%Y-%m-%d") if when.utcoffset() else value[:10]
        self.last = value
        self.parsed = (seconds, day)
        return self.parsed


def _from_ns(value: Any) -> tuple[int, str]:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _Bad("start_time_ns", value, "must be a non-negative int")
    seconds = value // 1_000_000_000
    return seconds, _dt.datetime.fromtimestamp(seconds, _UTC).strftime("%Y-%m-%d")


def _text(value: Any, field: str, *, required: bool) -> str | None:
    if value is None or value == "":
        if required:
            raise _Bad(field, value, "is required")
        return None
    if not isinstance(value, str):
        raise _Bad(field, value, "must be a string")
    return value


def _resolved(value: Any) -> bool:
    if value is None or value is True or value is False:
        return bool(value)
    if isinstance(value, str):
        low = value.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
    raise _Bad("resolved", value, "must be true or false")


def _units(value: Any) -> int:
    if value is None or value == "":
        return 1
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _Bad("units", value, "must be a whole number of at least 1")
    return value


class _Tags:
    """Parses tags, remembering each distinct set (rows repeat them; memory stays bounded).

    Tags come as a mapping (JSON) or as ``key=value;key=value`` (CSV). Rows with the same tags
    share one dict.
    """

    __slots__ = ("items", "seen")

    def __init__(self) -> None:
        self.seen: dict[str, Mapping[str, str]] = {"": {}}
        self.items: dict[tuple[tuple[Any, Any], ...], Mapping[str, str]] = {(): {}}

    def __call__(self, value: Any) -> Mapping[str, str]:
        if type(value) is dict:
            try:
                key = tuple(value.items())
                tags = self.items.get(key)
            except TypeError:  # an unhashable value: a list or an object
                raise _Bad("tags", value, "must map strings to strings") from None
            if tags is None:
                if not all(type(k) is str and type(v) is str for k, v in key):
                    raise _Bad("tags", value, "must map strings to strings")
                if len(self.items) > _MAX_REMEMBERED:
                    self.items.clear()
                tags = self.items[key] = value
            return tags
        if isinstance(value, str):
            tags = self.seen.get(value)
            if tags is None:
                if len(self.seen) > _MAX_REMEMBERED:
                    self.seen.clear()
                tags = self.seen[value] = self._parse(value)
            return tags
        if value is None:
            return {}
        raise _Bad("tags", value, "must map strings to strings")

    @staticmethod
    def _parse(text: str) -> Mapping[str, str]:
        tags: dict[str, str] = {}
        for part in text.split(";"):
            key, sep, value = part.partition("=")
            if not sep or not key.strip():
                raise _Bad("tags", text, "must read key=value;key=value")
            tags[key.strip()] = value.strip()
        return tags


def _conversation(value: Any) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return _text(value, "conversation_id", required=False)


class _Reader:
    """Turns the fields of one row into a `HistoryRow` (checks ordered for the common case)."""

    def __init__(self) -> None:
        self.times = _Times()
        self.tags = _Tags()

    def row(self, line: int, get: Callable[[str], Any]) -> HistoryRow:
        conversation = get("conversation_id")
        if type(conversation) is not str or not conversation:
            conversation = _conversation(conversation)
        action = get("action")
        if type(action) is not str or not action:
            action = _text(action, "action", required=False)
        action_type = get("action_type")
        if type(action_type) is not str or not action_type:
            action_type = _text(action_type, "action_type", required=action is None)
        if action is None:
            action = action_type
        elif action_type is None:
            action_type = action
        stamp = get("timestamp")
        times = self.times
        if stamp is not None and stamp == times.last:
            time_s, day = times.parsed
        else:
            if stamp is None:
                stamp = get("started_at")
            if stamp is None and get("start_time_ns") is not None:
                time_s, day = _from_ns(get("start_time_ns"))
            elif stamp is None or stamp == "":
                raise _Bad("timestamp", stamp, "is required")
            else:
                time_s, day = times(stamp)
        environment = get("environment")
        if type(environment) is not str or not environment:
            environment = _text(environment, "environment", required=False) or "production"
        units = get("units")
        resolved = get("resolved")
        return _new_row(  # tuple.__new__: a third of the cost of HistoryRow(...)
            HistoryRow,
            (
                line,
                conversation,
                action,
                action_type,
                environment,
                self.tags(get("tags")),
                1 if units is None else _units(units),
                resolved if resolved is True or resolved is False else _resolved(resolved),
                time_s,
                day,
            ),
        )


def _fail(
    exc: _Bad, line: int, source: str, on_bad_row: Callable[[HistoryError], None] | None
) -> None:
    error = HistoryError(*exc.args, line=line, source=source)
    if on_bad_row is None:
        raise error
    on_bad_row(error)


def _jsonl(
    stream: IO[str], source: str, on_bad_row: Callable[[HistoryError], None] | None
) -> Iterator[HistoryRow]:
    reader = _Reader()
    row = reader.row
    scan = _DECODER.scan_once  # type: ignore[attr-defined]
    for line, text in enumerate(stream, 1):
        try:
            try:
                data, end = scan(text, 0)  # the C scanner, without json.loads' wrapping
                if end != len(text) and text[end:].strip():
                    raise ValueError(f"extra data at column {end + 1}")
            except StopIteration:
                if not text.strip():
                    continue
                data = _loads(text)
            except ValueError as exc:
                raise _Bad("row", text.strip()[:60], f"is not JSON: {exc.args[0]}") from None
            if type(data) is not dict:
                raise _Bad("row", data, "must be a JSON object")
            yield row(line, data.get)
        except _Bad as exc:
            _fail(exc, line, source, on_bad_row)


_DECODER = json.JSONDecoder()


def _loads(text: str) -> Any:
    """Parse a line the scanner refused: JSON after spaces, or else the parser's message."""
    try:
        return json.loads(text)
    except ValueError as exc:
        raise _Bad("row", text.strip()[:60], f"is not JSON: {exc.args[0]}") from None


def _getter(values: list[str], index: dict[str, int]) -> Callable[[str], str | None]:
    def get(name: str) -> str | None:
        at = index.get(name)
        return None if at is None else values[at]

    return get


def _csv(
    stream: IO[str], source: str, on_bad_row: Callable[[HistoryError], None] | None
) -> Iterator[HistoryRow]:
    rows = csv.reader(stream)
    header = next(rows, None)
    if header is None:
        return
    names = [name.strip() for name in header]
    missing = {"action", "timestamp"}.difference(names)
    if missing and not ("action_type" in names and "timestamp" in names):
        raise HistoryError("header", header, f"lacks {sorted(missing)}", line=1, source=source)
    index = {name: i for i, name in enumerate(names)}
    width = len(names)
    reader = _Reader()
    for values in rows:
        line = rows.line_num
        if not values:
            continue
        try:
            if len(values) != width:
                raise _Bad("row", values, f"has {len(values)} fields; the header has {width}")
            yield reader.row(line, _getter(values, index))
        except _Bad as exc:
            _fail(exc, line, source, on_bad_row)


def _records(
    stream: IO[str], source: str, on_bad_row: Callable[[HistoryError], None] | None
) -> Iterator[HistoryRow]:
    for line, text in enumerate(stream, 1):
        if not text.strip():
            continue
        try:
            try:
                record = UsageRecord.from_dict(json.loads(text))
            except ValueError as exc:
                if isinstance(exc, ConfigurationError):
                    raise _Bad(exc.field, exc.value, exc.reason) from None
                raise _Bad("row", text.strip()[:60], f"is not JSON: {exc.args[0]}") from None
            yield from rows_from_records((record,), line=line)
        except (_Bad, TypeError) as exc:
            if isinstance(exc, TypeError):
                exc = _Bad("row", text.strip()[:60], "must be a JSON object")
            _fail(exc, line, source, on_bad_row)


def rows_from_records(records: Iterable[UsageRecord], *, line: int = 0) -> Iterator[HistoryRow]:
    """Return history rows for usage records, e.g. those of a wallet's ``records()``.

    A record's outcome has no bearing on the row: whether failed actions are billed is the
    pricing model's business, and the history says what ran.
    """
    for record in records:
        seconds = record.start_time_ns // 1_000_000_000
        day = _dt.datetime.fromtimestamp(seconds, _UTC).strftime("%Y-%m-%d")
        yield HistoryRow(
            line,
            record.conversation_id,
            record.action,
            record.action_type,
            record.environment,
            record.tags,
            record.units,
            record.tags.get("resolved") == "true",
            seconds,
            day,
        )


def read_history(
    source: str | Path | IO[str],
    *,
    format: HistoryFormat | None = None,
    on_bad_row: Callable[[HistoryError], None] | None = None,
) -> Iterator[HistoryRow]:
    """Read a history one row at a time.

    Args:
        source: A path, or an open text stream.
        format: ``"jsonl"``, ``"csv"`` or ``"records"`` (``UsageRecord.to_dict()`` lines,
            validated in full); by the file's suffix when omitted (``.csv`` is CSV, anything
            else JSONL).
        on_bad_row: Called with the error for each row that cannot be read, which is then
            skipped; without it the first such row raises.

    Raises:
        HistoryError: A row cannot be read (and `on_bad_row` is not given).
        ConfigurationError: The format is unknown.
        OSError: The file cannot be read.
    """
    if format is not None and format not in ("jsonl", "csv", "records"):
        raise ConfigurationError("format", format, "must be 'jsonl', 'csv' or 'records'")
    if isinstance(source, str | Path):
        path = Path(source)
        if format is None:
            format = "csv" if path.suffix.lower() == ".csv" else "jsonl"
        with path.open(encoding="utf-8", newline="" if format == "csv" else None) as stream:
            yield from _READERS[format](stream, path.name, on_bad_row)
        return
    if not isinstance(source, io.IOBase | io.TextIOBase) and not hasattr(source, "read"):
        raise ConfigurationError("source", source, "must be a path or a text stream")
    name = getattr(source, "name", None)
    label = Path(name).name if isinstance(name, str) else "<stream>"
    yield from _READERS[format or "jsonl"](source, label, on_bad_row)


_READERS = {"jsonl": _jsonl, "csv": _csv, "records": _records}
