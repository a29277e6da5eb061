"""A SQLite file that keeps an offline wallet's ledger across restarts.

The file is an append-only event log (grants, budgets, records) replayed through the ledger on
open, so the restored wallet computes exactly what the original did.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from .._exceptions import ConfigurationError
from .._ledger import Ledger
from .._pricing import to_exact
from .._records import UsageRecord
from .._usage import RecordLog

__all__ = ["SqliteStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    at_ns INTEGER NOT NULL,
    record_id TEXT UNIQUE,
    data TEXT NOT NULL
);
PRAGMA user_version = 1;
"""


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


class SqliteStore:
    """An append-only event log in one SQLite file (WAL mode)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            try:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                version = db.execute("PRAGMA user_version").fetchone()[0]
                if version not in (0, 1):
                    raise ConfigurationError(
                        "path", str(path), f"has unknown schema version {version}"
                    )
                db.executescript(_SCHEMA)
            except BaseException:
                db.close()  # a refused file is closed, not left to the garbage collector
                raise
        except sqlite3.DatabaseError as exc:
            raise ConfigurationError(
                "path", str(path), f"is not a usable wallet file: {exc}"
            ) from None
        self._db = db

    def add_event(self, kind: str, at_ns: int, data: dict[str, Any]) -> None:
        self._db.execute(
            "INSERT INTO events (kind, at_ns, data) VALUES (?, ?, ?)",
            (kind, at_ns, json.dumps(data)),
        )

    def add_record(self, record: UsageRecord, at_ns: int) -> None:
        data = record.to_dict()
        del data["started_at"]
        self._db.execute(
            "INSERT INTO events (kind, at_ns, record_id, data) VALUES ('record', ?, ?, ?)",
            (at_ns, record.id, json.dumps(data)),
        )

    def replay(self, ledger: Ledger, log: RecordLog) -> None:
        """Rebuild `ledger` and `log` from the file; close the file if that fails."""
        try:
            self._replay(ledger, log)
        except BaseException:
            self._db.close()
            raise

    def _replay(self, ledger: Ledger, log: RecordLog) -> None:
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

    def close(self) -> None:
        self._db.close()
