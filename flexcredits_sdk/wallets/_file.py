"""The wallet file: one SQLite database (WAL) that is the offline wallet's source of truth.

It holds the ledger's state (grants, budgets, watches, holds, alerts: `Ledger.to_state`), every
record booked, and usage totals by day (`DayTotals`), each change in one transaction with the
state it led to. Opening reads the state and the totals, never the records; `records()` and the
usage questions that need single records are SQL queries on the time index.

Schema versions (``PRAGMA user_version``): 1 was an event log replayed on open; 2 had no
``model_usage`` column; 3 is the layout below. Older files are migrated on first open.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .._exceptions import ConfigurationError
from .._ledger import Ledger
from .._paging import Position, time_order
from .._pricing import RateCard, to_exact
from .._records import UsageRecord, model_usage_from_json, model_usage_json
from .._usage import DayTotals, RecordFilter, RecordLog, new_records, to_columns

__all__ = ["DURABILITIES", "Batch", "Durability", "WalletFile"]

#: ``"batch"``: records are written in group commits by a background thread (see
#: `OfflineWallet`); ``"each"``: every record is committed, and synced, before the call that
#: booked it returns.
Durability = Literal["batch", "each"]
DURABILITIES = ("batch", "each")

_VERSION = 3
_SCHEMA = """
CREATE TABLE records (
    id TEXT PRIMARY KEY,
    action TEXT NOT NULL,
    action_type TEXT NOT NULL,
    units INTEGER NOT NULL,
    credits TEXT NOT NULL,
    environment TEXT NOT NULL,
    tags TEXT NOT NULL,
    conversation_id TEXT,
    start_ns INTEGER NOT NULL,
    duration_ns INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    error_type TEXT,
    trace_id TEXT,
    span_id TEXT,
    model_usage TEXT
) WITHOUT ROWID;
CREATE INDEX records_by_time ON records (start_ns, id);
CREATE TABLE day_totals (
    day INTEGER NOT NULL,
    action TEXT NOT NULL,
    action_type TEXT NOT NULL,
    environment TEXT NOT NULL,
    outcome TEXT NOT NULL,
    tags TEXT NOT NULL,
    units INTEGER NOT NULL,
    records INTEGER NOT NULL,
    credits TEXT NOT NULL,
    PRIMARY KEY (day, action, action_type, environment, outcome, tags)
) WITHOUT ROWID;
CREATE TABLE ledger (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    state TEXT NOT NULL
);
"""
_COLUMNS = (
    "id, action, action_type, units, credits, environment, tags, conversation_id, start_ns,"
    " duration_ns, outcome, error_type, trace_id, span_id, model_usage"
)
_INSERT = f"INSERT INTO records ({_COLUMNS}) VALUES ({', '.join('?' * 15)})"
_PUT_TOTAL = "INSERT OR REPLACE INTO day_totals VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
_PUT_STATE = "INSERT OR REPLACE INTO ledger (id, state) VALUES (1, ?)"
#: Records per query when `scan` reads through the file.
_SCAN_PAGE = 10_000


@dataclass(frozen=True, slots=True)
class Batch:
    """What one write puts in the file: records, the day totals they changed, the ledger."""

    records: list[UsageRecord]
    ids: set[str]
    totals: list[tuple[Any, ...]]
    state: str


def _rows(records: Sequence[UsageRecord]) -> Iterator[tuple[Any, ...]]:
    """The rows of `records`; each distinct set of tags is written as JSON once."""
    texts: dict[tuple[tuple[str, str], ...], str] = {}
    for record in records:
        fields: list[Any] = list(record)
        fields[4] = str(fields[4])
        tags = tuple(record.tags.items())
        text = texts.get(tags)
        if text is None:
            text = texts[tags] = json.dumps(dict(tags), sort_keys=True, separators=(",", ":"))
        fields[6] = text
        fields[14] = model_usage_json(fields[14])
        yield tuple(fields)


def _escaped_text(value: Any) -> Any:
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value


def _escaped(record: UsageRecord) -> UsageRecord:
    """`record` with what UTF-8 cannot encode in its text written as escapes."""
    tags = {_escaped_text(k): _escaped_text(v) for k, v in record.tags.items()}
    return UsageRecord._make(_escaped_text(v) if i != 6 else tags for i, v in enumerate(record))


def _record(row: Sequence[Any]) -> UsageRecord:
    fields = list(row)
    fields[4] = to_exact(fields[4], "credits")
    fields[6] = json.loads(fields[6])
    fields[14] = model_usage_from_json(fields[14])
    return UsageRecord._make(fields)


def _writable(path: Path) -> bool:
    """Whether this process may write the file and make files beside it (WAL needs both)."""
    try:
        with path.open("r+b"):
            pass
    except FileNotFoundError:
        pass
    except OSError:
        return False
    probe = path.with_name(path.name + ".probe")
    try:
        probe.touch()
        probe.unlink()
    except OSError:
        return False
    return True


def _refuse(path: Path, reason: str) -> ConfigurationError:
    error = ConfigurationError("path", str(path), reason)
    error.args = (f"path={str(path)!r}: {reason}",)  # the whole path, however long
    return error


class WalletFile:
    """One wallet file, opened by one process at a time.

    Raises:
        ConfigurationError: The file is not a wallet file, is of a newer schema, cannot be
            opened or written, or another process has it open; the error names the path.
    """

    def __init__(self, path: Path, rate_card: RateCard, durability: Durability) -> None:
        self.path = path
        try:
            db = sqlite3.connect(path, timeout=1.0, check_same_thread=False, isolation_level=None)
        except sqlite3.Error as exc:
            raise _refuse(path, f"cannot be opened: {exc}") from None
        try:
            self._db = db
            self._open(rate_card, durability)
        except BaseException:
            db.close()  # a refused file is closed, not left to the garbage collector
            raise
        self._pending: list[UsageRecord] = []  # booked, not yet written
        self._pending_ids: set[str] = set()
        self._writing: Batch | None = None  # taken, being written
        self.top = ""  # the greatest record id in the file or waiting (set from `load`)
        self.closed = False
        self.written_at = time.monotonic()  # when the last write ended
        #: Held while the file is written or read: one write at a time, in the order taken.
        self.write_lock = threading.Lock()

    def _open(self, rate_card: RateCard, durability: Durability) -> None:
        db, path = self._db, self.path
        try:
            # One process at a time: the first read takes a lock kept until close.
            db.execute("PRAGMA locking_mode=EXCLUSIVE")
            version = db.execute("PRAGMA user_version").fetchone()[0]
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc):
                raise _refuse(
                    path,
                    "is open in another process (one process at a time; share a wallet "
                    "through the wallet service)",
                ) from None
            if not _writable(path):
                raise _refuse(path, "is read-only (or its directory is)") from None
            raise _refuse(path, f"cannot be used: {exc}") from None
        except sqlite3.DatabaseError as exc:
            raise _refuse(path, f"is not a wallet file: {exc}") from None
        if version == 0 and tables:
            raise _refuse(path, "is a SQLite file of another program, not a wallet file")
        if version > _VERSION:
            raise _refuse(
                path, f"has schema version {version}, newer than this release's {_VERSION}"
            )
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={'FULL' if durability == 'each' else 'NORMAL'}")
            db.execute("BEGIN IMMEDIATE")
            if version == 2:
                db.execute("ALTER TABLE records ADD COLUMN model_usage TEXT")
            elif version == 1:
                ledger, log = self._read_version_1(rate_card)
                db.execute("DROP TABLE events")
                self._create()
                self._write_all(ledger, log)
            elif version == 0:
                self._create()
                self._write_state(Ledger(rate_card))
            db.execute(f"PRAGMA user_version = {_VERSION}")
            db.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            if db.in_transaction:
                db.execute("ROLLBACK")
            if not _writable(path):
                raise _refuse(path, "is read-only (or its directory is)") from None
            raise _refuse(path, f"is not a usable wallet file: {exc}") from None
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def _create(self) -> None:
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                self._db.execute(statement)

    # --- reading --------------------------------------------------------------------------------

    def load(self, rate_card: RateCard) -> tuple[Ledger, DayTotals, str]:
        """Return the ledger, the day totals and the greatest record id in the file."""
        try:
            (state,) = self._db.execute("SELECT state FROM ledger WHERE id = 1").fetchone()
            ledger = Ledger.from_state(json.loads(state), rate_card)
            totals = DayTotals()
            for (
                day,
                action,
                action_type,
                env,
                outcome,
                tags,
                units,
                count,
                credits,
            ) in self._db.execute("SELECT * FROM day_totals"):
                key = (day, action, action_type, env, outcome, frozenset(json.loads(tags).items()))
                totals.put(key, units, count, to_exact(credits, "credits"))
            top = self._db.execute("SELECT max(id) FROM records").fetchone()[0] or ""
        except (sqlite3.DatabaseError, ValueError, KeyError, TypeError) as exc:
            raise _refuse(self.path, f"holds a ledger this release cannot read: {exc}") from None
        return ledger, totals, top

    def contains(self, record_id: str) -> bool:
        """Whether the file, or the records waiting to be written, have this id."""
        writing = self._writing
        if record_id in self._pending_ids or (writing is not None and record_id in writing.ids):
            return True
        with self.write_lock:
            query = "SELECT 1 FROM records WHERE id = ?"
            return self._db.execute(query, (record_id,)).fetchone() is not None

    def page(self, where: RecordFilter, after: Position | None, size: int) -> list[UsageRecord]:
        """Return the `size` records `where` selects after `after`, in time order."""
        sql, args = _select(where)
        if after is not None:
            sql += " AND start_ns >= ? AND (start_ns > ? OR id > ?)"
            args += [after[0], after[0], after[1]]
        sql += " ORDER BY start_ns, id LIMIT ?"
        return [_record(row) for row in self._db.execute(sql, [*args, size])]

    def scan(self, where: RecordFilter) -> Iterator[UsageRecord]:
        """Yield every record `where` selects, in time order, a page at a time."""
        after: Position | None = None
        while True:
            records = self.page(where, after, _SCAN_PAGE)
            yield from records
            if len(records) < _SCAN_PAGE:
                return
            after = time_order(records[-1])

    # --- writing --------------------------------------------------------------------------------

    def add_many(self, records: Sequence[UsageRecord]) -> Sequence[UsageRecord]:
        """Take the records whose ids are new (`new_records`; those it looks up are looked up
        among the records waiting and in the file), to be written with a later `write`; return
        them."""
        added, self.top = new_records(records, self.top, self.contains)
        self._pending_ids.update(record.id for record in added)
        self._pending.extend(added)
        return added

    @property
    def pending(self) -> int:
        """How many booked records wait to be written."""
        return len(self._pending)

    def take(self, ledger: Ledger, totals: DayTotals, touched: DayTotals) -> Batch:
        """Take the records waiting, with the totals they `touched` (as `totals` has them now)
        and the ledger's state: what one `write` puts in the file. The caller holds the
        wallet's lock, so that the three agree."""
        batch = Batch(
            self._pending,
            self._pending_ids,
            list(_total_rows(totals, touched)),
            json.dumps(ledger.to_state(), separators=(",", ":")),
        )
        self._pending, self._pending_ids = [], set()
        self._writing = batch
        return batch

    def write(self, batch: Batch) -> None:
        """Write a taken batch in one transaction; the caller holds `write_lock`.

        Raises:
            ConfigurationError: The file cannot be written (read-only, disk full); nothing of
                the batch is in the file, and its records wait again, for the next write.
        """
        try:
            try:
                self._put(batch, escape=False)
            except UnicodeEncodeError:
                # A record made by hand holds text UTF-8 cannot encode (a lone surrogate):
                # it is stored with that text escaped rather than holding the others back.
                self._put(batch, escape=True)
            self.written_at = time.monotonic()
        except sqlite3.Error as exc:
            self._pending[:0] = batch.records
            self._pending_ids |= batch.ids
            raise _refuse(self.path, f"cannot be written: {exc}") from None
        finally:
            self._writing = None

    def _put(self, batch: Batch, *, escape: bool) -> None:
        """Write `batch` in one transaction, or nothing of it."""
        db = self._db
        records: Any = map(_escaped, batch.records) if escape else batch.records
        totals: Any = (
            [tuple(map(_escaped_text, row)) for row in batch.totals] if escape else batch.totals
        )
        try:
            db.execute("BEGIN IMMEDIATE")
            db.executemany(_INSERT, _rows(records))
            db.executemany(_PUT_TOTAL, totals)
            db.execute(_PUT_STATE, (batch.state,))
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def _write_state(self, ledger: Ledger) -> None:
        text = json.dumps(ledger.to_state(), separators=(",", ":"))
        self._db.execute(_PUT_STATE, (text,))

    def _write_all(self, ledger: Ledger, log: RecordLog) -> None:
        records = list(log)
        totals = DayTotals()
        for start in range(0, len(records), 128):
            totals.add_columns(to_columns(records[start : start + 128]))
        self._db.executemany(_INSERT, _rows(records))
        self._db.executemany(_PUT_TOTAL, _total_rows(totals, totals))
        self._write_state(ledger)

    def _read_version_1(self, rate_card: RateCard) -> tuple[Ledger, RecordLog]:
        """Replay a version 1 file (an event log) through a ledger."""
        ledger, log = Ledger(rate_card), RecordLog()
        rows = self._db.execute("SELECT kind, at_ns, data FROM events ORDER BY seq")
        for kind, at_ns, text in rows:
            data = json.loads(text)
            if kind == "record":
                record = _record_from_json(data)
                if log.add(record):
                    ledger.book(record, at_ns)
            elif kind == "grant":
                ledger.grant(
                    to_exact(data["credits"]),
                    now_ns=at_ns,
                    source=data["source"],
                    priority=data["priority"],
                    expires_ns=data["expires_ns"],
                    grant_id=data["id"],
                )
            elif kind == "budget":
                ledger.set_budget(
                    to_exact(data["credits"]),
                    now_ns=at_ns,
                    tags=data["tags"],
                    period=data["period"],
                    hard=data["hard"],
                    name=data["name"],
                )
            elif kind == "remove_budget":
                ledger.remove_budget(data["id"])
        ledger.alerts.clear()
        return ledger, log

    def close(self) -> None:
        self.closed = True
        self._db.close()


def _select(where: RecordFilter) -> tuple[str, list[Any]]:
    sql = f"SELECT {_COLUMNS} FROM records WHERE 1"
    args: list[Any] = []
    for column, value in (
        ("action", where.action),
        ("environment", where.environment),
        ("conversation_id", where.conversation_id),
    ):
        if value is not None:
            sql += f" AND {column} = ?"
            args.append(value)
    if where.since_ns is not None:
        sql += " AND start_ns >= ?"
        args.append(where.since_ns)
    if where.until_ns is not None:
        sql += " AND start_ns < ?"
        args.append(where.until_ns)
    for key, value in (where.tags or {}).items():
        sql += " AND EXISTS (SELECT 1 FROM json_each(records.tags) WHERE key = ? AND value = ?)"
        args += [key, value]
    return sql, args


def _total_rows(totals: DayTotals, touched: DayTotals) -> Iterator[tuple[Any, ...]]:
    for key in touched.groups():
        units, count, credits = totals.get(key)
        day, action, action_type, env, outcome, tags = key
        tag_text = json.dumps(dict(tags), sort_keys=True, separators=(",", ":"))
        yield day, action, action_type, env, outcome, tag_text, units, count, str(credits)


def _record_from_json(data: dict[str, Any]) -> UsageRecord:
    return UsageRecord(
        data["id"],
        data["action"],
        data["action_type"],
        data["units"],
        to_exact(data["credits"], "credits"),
        data["environment"],
        data["tags"],
        data["conversation_id"],
        data["start_time_ns"],
        data["duration_ns"],
        data["outcome"],
        data["error_type"],
        data["trace_id"],
        data["span_id"],
    )
