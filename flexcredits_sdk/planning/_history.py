"""Reading history files: one row per action, from JSONL, CSV or the SDK's own usage records.

Rows are read one at a time (the file is never loaded whole). A row that cannot be read raises
`HistoryError` with its line number, or, when the caller skips bad rows, is handed to a callback
and left out.

JSONL files are read in binary and parsed with `orjson` when it is installed (the ``planning``
extra installs it). The standard library's parser has the last word on any line `orjson` refuses
or whose row is bad, so both give the same rows and the same errors.

Files saved by spreadsheets are read as they mean: a UTF-8 byte order mark is not part of the
first header or row, line ends may be CRLF, and a CSV file's delimiter (``,`` ``;`` tab or ``|``)
is the one that splits its header into known columns.
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import itertools
import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any, Literal

from .._exceptions import ConfigurationError, HistoryError
from .._records import UsageRecord
from ._rows import HistoryRow, _Bad, _Reader

_fast_loads: Callable[[bytes], Any] | None
try:
    import orjson

    _fast_loads = orjson.loads
except ImportError:  # pragma: no cover - exercised by forcing the fallback in the tests
    _fast_loads = None

__all__ = [
    "COLUMNS",
    "DELIMITERS",
    "HistoryFormat",
    "HistoryRow",
    "delimiter_of",
    "detect_format",
    "read_history",
    "rows_from_records",
]

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
_BLANK = object()
_REQUIRED = "is required"
_BOM = "\ufeff"
_BOM_BYTES = _BOM.encode()
#: The CSV delimiters tried on a header, most common first.
DELIMITERS = (",", ";", "\t", "|")


def _fail(
    exc: _Bad, line: int, source: str, on_bad_row: Callable[[HistoryError], None] | None
) -> None:
    error = HistoryError(*exc.args, line=line, source=source)
    if exc.args[2] == _REQUIRED:  # nothing was given: name the field alone
        error.args = (f"{exc.args[0]}: {_REQUIRED} ({source}, line {line})",)
    if on_bad_row is None:
        raise error
    on_bad_row(error)


def _decode(text: str) -> Any:
    """Parse one line of text; `_BLANK` for a blank line.

    Raises:
        _Bad: The line is not JSON.
    """
    try:
        data, end = _SCAN(text, 0)  # the C scanner, without json.loads' wrapping
        if end != len(text) and text[end:].strip():
            raise ValueError(f"extra data at column {end + 1}")
    except StopIteration:
        if not text.strip():
            return _BLANK
        try:  # JSON after spaces, or else the parser's message
            return json.loads(text)
        except ValueError as exc:
            raise _Bad("row", text.strip()[:60], f"is not JSON: {exc.args[0]}") from None
    except ValueError as exc:
        raise _Bad("row", text.strip()[:60], f"is not JSON: {exc.args[0]}") from None
    return data


_SCAN = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def _text_row(reader: _Reader, line: int, text: str) -> HistoryRow | None:
    """Return the row of one line of text (``None`` when blank); `_Bad` when it is bad."""
    data = _decode(text)
    if data is _BLANK:
        return None
    if type(data) is not dict:
        raise _Bad("row", data, "must be a JSON object")
    return reader.row(line, data)


def _jsonl(
    stream: IO[str], source: str, on_bad_row: Callable[[HistoryError], None] | None
) -> Iterator[HistoryRow]:
    reader = _Reader()
    for line, text in enumerate(stream, 1):
        if line == 1 and text.startswith(_BOM):
            text = text[1:]
        try:
            row = _text_row(reader, line, text)
        except _Bad as exc:
            _fail(exc, line, source, on_bad_row)
            continue
        if row is not None:
            yield row


def _lines(raw: bytes) -> list[str]:
    """Split a binary line as text mode would: a lone carriage return also ends a line.

    Raises:
        UnicodeDecodeError: The line is not UTF-8 (as reading the file as text would).
    """
    text = raw.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")
    lines = [piece + "\n" for piece in text.split("\n")]
    lines[-1] = lines[-1][:-1]
    if not lines[-1]:
        lines.pop()
    return lines


def _jsonl_binary(
    stream: IO[bytes],
    source: str,
    on_bad_row: Callable[[HistoryError], None] | None,
    loads: Callable[[bytes], Any],
) -> Iterator[HistoryRow]:
    """Read JSONL with `loads`; the standard library redoes any line it refuses or finds bad.

    Only rows whose fields all check out come from `loads`: then they hold strings, booleans,
    ``null``, objects of strings and integers below 2**64, which both parsers read alike.
    """
    reader = _Reader()
    row_of = reader.row
    line = 0
    for raw in stream:
        line += 1
        if line == 1 and raw.startswith(_BOM_BYTES):
            raw = raw[len(_BOM_BYTES) :]
        if b"\r" in raw and (raw.count(b"\r") > 1 or not raw.endswith(b"\r\n")):
            texts = _lines(raw)  # carriage returns that end lines: rare, so read as text
        else:
            try:
                data = loads(raw)
                fast = row_of(line, data) if type(data) is dict else None
            except (ValueError, _Bad):
                fast = None
            if fast is not None:
                yield fast
                continue
            texts = _lines(raw)
        line -= 1
        for text in texts:
            line += 1
            try:
                row = _text_row(reader, line, text)
            except _Bad as exc:
                _fail(exc, line, source, on_bad_row)
                continue
            if row is not None:
                yield row


def _header_names(text: str, delimiter: str) -> list[str]:
    return [name.strip() for name in next(csv.reader([text], delimiter=delimiter), [])]


def _is_header(names: Iterable[str]) -> bool:
    present = set(names)
    return "timestamp" in present and bool(present & {"action", "action_type"})


def delimiter_of(header: str) -> str:
    """Return the delimiter of a CSV header line.

    It is the one of `DELIMITERS` that splits the header into known columns, else the one
    `csv.Sniffer` detects among them, else a comma.
    """
    for delimiter in DELIMITERS:
        if _is_header(_header_names(header, delimiter)):
            return delimiter
    try:
        return csv.Sniffer().sniff(header, delimiters="".join(DELIMITERS)).delimiter
    except csv.Error:
        return ","


def _csv(
    stream: IO[str], source: str, on_bad_row: Callable[[HistoryError], None] | None
) -> Iterator[HistoryRow]:
    first = stream.readline()
    if first.startswith(_BOM):
        first = first[1:]
    if not first:
        return
    rows = csv.reader(itertools.chain((first,), stream), delimiter=delimiter_of(first))
    header = next(rows, None)
    if header is None:
        return
    names = [name.strip() for name in header]
    missing = {"action", "timestamp"}.difference(names)
    if missing and not ("action_type" in names and "timestamp" in names):
        raise HistoryError("header", header, f"lacks {sorted(missing)}", line=1, source=source)
    width = len(names)
    reader = _Reader()
    for values in rows:
        line = rows.line_num
        if not values:
            continue
        try:
            if len(values) != width:
                raise _Bad("row", values, f"has {len(values)} fields; the header has {width}")
            yield reader.row(line, dict(zip(names, values, strict=True)))
        except _Bad as exc:
            _fail(exc, line, source, on_bad_row)


def _records(
    stream: IO[str], source: str, on_bad_row: Callable[[HistoryError], None] | None
) -> Iterator[HistoryRow]:
    for line, text in enumerate(stream, 1):
        if line == 1 and text.startswith(_BOM):
            text = text[1:]
        if not text.strip():
            continue
        try:
            try:
                record = UsageRecord.from_dict(json.loads(text))
            except ValueError as exc:
                if isinstance(exc, ConfigurationError):
                    missing = exc.reason == "Field required"
                    raise _Bad(
                        exc.field,
                        None if missing else exc.value,
                        _REQUIRED if missing else exc.reason,
                    ) from None
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


_SUFFIXES: dict[str, HistoryFormat] = {
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
}
_HEAD = 65_536


def detect_format(path: str | Path) -> HistoryFormat:
    """Return a history file's format: by its suffix, else by its first line.

    ``.csv`` is CSV and ``.jsonl``, ``.ndjson`` and ``.json`` are JSON Lines; a file with
    another suffix is JSON Lines when its first line is a JSON object and CSV when it is a
    header naming ``timestamp`` and ``action`` or ``action_type`` (split by any of
    `DELIMITERS`). A byte order mark is skipped.

    Raises:
        ConfigurationError: Neither the suffix nor the first line tells (give the format).
        OSError: The file cannot be read.
    """
    path = Path(path)
    known = _SUFFIXES.get(path.suffix.lower())
    if known is not None:
        return known
    with path.open("rb") as binary:
        head = binary.read(_HEAD)
    if head.startswith(_BOM_BYTES):
        head = head[len(_BOM_BYTES) :]
    first = next((line.strip() for line in head.splitlines() if line.strip()), b"")
    if first.startswith(b"{"):
        return "jsonl"
    text = first.decode("utf-8", "replace")
    if _is_header(_header_names(text, delimiter_of(text))):
        return "csv"
    shown = "it is empty" if not first else "its first line is neither a JSON object nor a header"
    raise ConfigurationError(
        "history",
        str(path),
        f"cannot tell the format: the suffix {path.suffix or '(none)'} is not .csv or .jsonl and "
        f"{shown}; give the format (jsonl, csv or records)",
    )


def read_history(
    source: str | Path | IO[str] | IO[bytes],
    *,
    format: HistoryFormat | None = None,
    on_bad_row: Callable[[HistoryError], None] | None = None,
) -> Iterator[HistoryRow]:
    """Read a history one row at a time.

    Args:
        source: A path, or an open stream, binary (fastest: JSONL is decoded by `orjson` when
            it is installed) or text.
        format: ``"jsonl"``, ``"csv"`` or ``"records"`` (``UsageRecord.to_dict()`` lines,
            validated in full); for a path, `detect_format` decides when omitted (a stream
            is read as JSONL).
        on_bad_row: Called with the error for each row that cannot be read, which is then
            skipped; without it the first such row raises.

    Raises:
        HistoryError: A row cannot be read (and `on_bad_row` is not given).
        ConfigurationError: The format is unknown, or not given and `detect_format` cannot tell.
        OSError: The file cannot be read.
    """
    if format is not None and format not in ("jsonl", "csv", "records"):
        raise ConfigurationError("format", format, "must be 'jsonl', 'csv' or 'records'")
    if isinstance(source, str | Path):
        path = Path(source)
        with path.open("rb") as binary:
            yield from _read_binary(binary, format or detect_format(path), path.name, on_bad_row)
        return
    if not isinstance(source, io.IOBase) and not hasattr(source, "read"):
        raise ConfigurationError("source", source, "must be a path or a stream")
    name = getattr(source, "name", None)
    label = Path(name).name if isinstance(name, str) else "<stream>"
    if isinstance(source, io.BufferedIOBase | io.RawIOBase):
        yield from _read_binary(source, format or "jsonl", label, on_bad_row)
        return
    yield from _READERS[format or "jsonl"](source, label, on_bad_row)  # type: ignore[arg-type]


def _read_binary(
    binary: IO[bytes],
    format: HistoryFormat,
    label: str,
    on_bad_row: Callable[[HistoryError], None] | None,
) -> Iterator[HistoryRow]:
    if format == "jsonl" and _fast_loads is not None:
        yield from _jsonl_binary(binary, label, on_bad_row, _fast_loads)
        return
    text = io.TextIOWrapper(
        binary,
        encoding="utf-8-sig",
        newline="" if format == "csv" else None,
    )
    try:
        yield from _READERS[format](text, label, on_bad_row)
    finally:
        if not binary.closed:  # closed: the wrapper has nothing to flush or close
            text.detach()  # the caller closes the binary stream


_READERS = {"jsonl": _jsonl, "csv": _csv, "records": _records}
