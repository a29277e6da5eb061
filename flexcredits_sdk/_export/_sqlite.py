"""The outbox on disk: a SQLite file in WAL mode that several processes on one host may share.

A process *claims* the chunks it is about to send by writing its token and a lease expiry in
the ``claims`` table, in one transaction, so two processes never send the same records at the
same time; a claim whose lease ran out (its process died) is taken over by whoever comes next.

One file serves one wallet service (URL). Each chunk carries the fingerprint of the API key it
was metered with, and is sent with that key only, so tenants sharing a directory never book
each other's records; but once the service refused a key (401), the chunks of that key are
sent by whichever process has a key it accepts: records metered with a mistyped key are
delivered after the key is fixed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ._outbox import (
    Chunk,
    DeadLetter,
    OutboxUnavailable,
    batch_fit,
    body_size,
    chunked,
    letter,
)

__all__ = ["SqliteOutbox", "open_outbox"]

logger = logging.getLogger("flexcredits_sdk")

#: Schema version stored in the file; a file of version 4 is migrated, one of another version
#: is quarantined. Small columns come before the large ones, so scans never read the bodies'
#: overflow pages.
_SCHEMA = 5

_SCHEMA_SQL = (
    """CREATE TABLE IF NOT EXISTS chunks (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        records INTEGER NOT NULL,
        bytes INTEGER NOT NULL,
        key TEXT NOT NULL DEFAULT '',
        ids TEXT NOT NULL,
        bodies TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS claims (
        seq INTEGER PRIMARY KEY,
        owner TEXT NOT NULL,
        lease REAL NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS dead_letters (
        id TEXT PRIMARY KEY,
        body TEXT NOT NULL,
        reason TEXT NOT NULL,
        at REAL NOT NULL
    )""",
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS refused_keys (key TEXT PRIMARY KEY, at REAL NOT NULL)",
)

#: Version 4 files were kept per URL and API key: their chunks get the empty key, which only
#: a process with that URL and key opens.
_FROM_4 = (
    "ALTER TABLE chunks ADD COLUMN key TEXT NOT NULL DEFAULT ''",
    "UPDATE meta SET value = '5' WHERE key = 'schema'",
)

#: The chunks a process may send: its key's, those of keys the service refused, and those of
#: a file from before keys were stored.
_MINE = "(c.key IN (?, '') OR c.key IN (SELECT key FROM refused_keys))"


def _prepare(conn: sqlite3.Connection) -> None:
    """Create the tables of a new outbox, in one transaction; check an existing one's schema
    (migrating one of version 4).

    A file that holds tables but is not an outbox of this schema (another program's, an older
    version's) is refused before anything is written to it, so it can be moved aside intact.

    Raises:
        sqlite3.DatabaseError: The file is not an outbox of this schema.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        tables = {
            name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
        if tables:
            version = None
            if "meta" in tables:
                row = conn.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
                version = row[0] if row else None
            if version == "4":
                for statement in _FROM_4:
                    conn.execute(statement)
            elif version != str(_SCHEMA):
                raise sqlite3.DatabaseError(f"unknown outbox schema version {version!r}")
        for statement in _SCHEMA_SQL:
            conn.execute(statement)
        conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (str(_SCHEMA),))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        raise


class SqliteOutbox:
    """An outbox in a SQLite file (WAL mode) that survives the process and may be shared.

    Each group commit is stored as chunks of at most one batch's worth of records; a chunk is
    claimed, sent, and deleted as a whole (or shrunk when the service settled only part of it).

    Args:
        path: The file.
        owner: This process's claim token.
        key: The fingerprint of the API key records are sent with (see the module's docs).
        lease: Seconds a claim lasts before another process may take the chunks over.
        sync: Commit with ``synchronous=FULL`` (survives power loss) instead of ``NORMAL``
            (survives the process being killed).
        max_records: Most records per chunk.
        max_bytes: Most JSON bytes per chunk.
        clock: Wall-clock seconds, for leases.

    Raises:
        OutboxUnavailable: The file cannot be created or written.
        sqlite3.DatabaseError: The file is not a usable outbox (see `open_outbox`).
    """

    durable = True

    def __init__(
        self,
        path: Path,
        *,
        owner: str,
        key: str = "",
        lease: float = 30.0,
        sync: bool = False,
        max_records: int = 500,
        max_bytes: int = 512 * 1024,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.path = path
        self._owner = owner
        self.key = key
        self._refused = False
        self._lease = lease
        self._limits = max_records, max_bytes
        self._clock = clock or time.time
        #: Held by every use of the connection (and across a fork, so none is open in it).
        self.lock = threading.Lock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                path, timeout=30.0, isolation_level=None, check_same_thread=False
            )
        except (OSError, sqlite3.OperationalError) as exc:
            raise OutboxUnavailable(f"cannot open outbox {str(path)!r}: {exc}") from None
        try:
            _prepare(conn)
            conn.execute("PRAGMA journal_mode=WAL").fetchone()
            conn.execute(f"PRAGMA synchronous={'FULL' if sync else 'NORMAL'}")
        except sqlite3.OperationalError as exc:
            conn.close()
            text = str(exc)
            if any(word in text for word in ("readonly", "unable to open", "disk", "locked")):
                raise OutboxUnavailable(f"cannot write outbox {str(path)!r}: {exc}") from None
            raise
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        self._closed = False
        self._seq = self._count = 0
        self.refresh()
        with self.lock:
            found = conn.execute("SELECT 1 FROM refused_keys WHERE key = ?", (key,)).fetchone()
        self._refused = found is not None

    def __repr__(self) -> str:
        return f"SqliteOutbox({str(self.path)!r})"

    def add(self, ids: list[str], bodies: list[str]) -> None:
        values = [
            (
                json.dumps(chunk_ids),
                "\n".join(chunk_bodies),
                len(chunk_ids),
                body_size(chunk_bodies),
                self.key,
            )
            for chunk_ids, chunk_bodies in chunked(ids, bodies, *self._limits)
        ]
        with self.lock:
            conn = self._conn
            try:
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany(
                    "INSERT INTO chunks (ids, bodies, records, bytes, key) VALUES (?, ?, ?, ?, ?)",
                    values,
                )
                (seq,) = conn.execute("SELECT last_insert_rowid()").fetchone()
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise OutboxUnavailable(f"cannot write outbox {str(self.path)!r}: {exc}") from None
            except BaseException:  # e.g. a text SQLite cannot bind: the outbox stays usable
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            self._seq = max(self._seq, seq)
            self._count += len(ids)

    def claim(self, max_records: int, max_bytes: int, upto: int) -> list[Chunk]:
        now = self._clock()
        with self.lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                free = conn.execute(
                    "SELECT c.seq, c.records, c.bytes FROM chunks c LEFT JOIN claims k "
                    f"ON k.seq = c.seq WHERE c.seq <= ? AND {_MINE} "
                    "AND (k.lease IS NULL OR k.lease < ?) ORDER BY c.seq LIMIT 64",
                    (upto, self.key, now),
                ).fetchall()
                seqs = batch_fit(free, max_records, max_bytes)
                conn.executemany(
                    "INSERT OR REPLACE INTO claims VALUES (?, ?, ?)",
                    [(seq, self._owner, now + self._lease) for seq in seqs],
                )
                marks = ",".join("?" * len(seqs))
                found = conn.execute(
                    f"SELECT seq, ids, bodies FROM chunks WHERE seq IN ({marks}) ORDER BY seq",
                    seqs,
                ).fetchall()
            finally:
                conn.execute("COMMIT")
        return [Chunk(seq, json.loads(ids), bodies.split("\n")) for seq, ids, bodies in found]

    def _update(self, sql: str, chunks: list[Chunk], *params: Any) -> None:
        if not chunks:
            return
        marks = ",".join("?" * len(chunks))
        with self.lock:
            self._conn.execute(sql.format(marks), (*params, *(chunk.seq for chunk in chunks)))

    def renew(self, chunks: list[Chunk]) -> None:
        lease = self._clock() + self._lease
        self._update("UPDATE claims SET lease = ? WHERE seq IN ({})", chunks, lease)

    def ack(self, chunks: list[Chunk]) -> None:
        if not chunks:
            return
        seqs = [chunk.seq for chunk in chunks]
        marks = ",".join("?" * len(seqs))
        with self.lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(f"DELETE FROM chunks WHERE seq IN ({marks})", seqs)
                conn.execute(f"DELETE FROM claims WHERE seq IN ({marks})", seqs)
            finally:
                conn.execute("COMMIT")
        self._count = max(0, self._count - sum(len(chunk.ids) for chunk in chunks))

    def shrink(self, chunk: Chunk, keep: list[int]) -> None:
        removed = len(chunk.ids) - len(keep)
        chunk.ids = [chunk.ids[i] for i in keep]
        chunk.bodies = [chunk.bodies[i] for i in keep]
        with self.lock:
            self._conn.execute(
                "UPDATE chunks SET ids = ?, bodies = ?, records = ?, bytes = ? WHERE seq = ?",
                (
                    json.dumps(chunk.ids),
                    "\n".join(chunk.bodies),
                    len(chunk.ids),
                    body_size(chunk.bodies),
                    chunk.seq,
                ),
            )
        self._count = max(0, self._count - removed)

    def release(self, chunks: list[Chunk]) -> None:
        self._update("DELETE FROM claims WHERE seq IN ({})", chunks)

    def dead_letter(self, letters: list[tuple[str, str, str]]) -> None:
        now = self._clock()
        with self.lock:
            self._conn.executemany(
                "INSERT OR REPLACE INTO dead_letters VALUES (?, ?, ?, ?)",
                [(record_id, body, reason, now) for record_id, body, reason in letters],
            )

    def dead_letters(self) -> list[DeadLetter]:
        query = "SELECT id, body, reason FROM dead_letters ORDER BY at, id"
        with self.lock:
            if not self._closed:
                found = self._conn.execute(query).fetchall()
            else:  # after shutdown the letters are still there to read: open the file read-only
                uri = f"{self.path.resolve().as_uri()}?mode=ro"
                with contextlib.closing(sqlite3.connect(uri, uri=True)) as conn:
                    found = conn.execute(query).fetchall()
        return [letter(record_id, body, reason) for record_id, body, reason in found]

    def last_seq(self) -> int:
        return self._seq

    def count(self) -> int:
        return self._count

    def refresh(self) -> None:
        """Recount the records this process may send (other processes share the file)."""
        with self.lock:
            count, seq = self._conn.execute(
                f"SELECT coalesce(sum(records), 0), coalesce(max(seq), 0) FROM chunks c "
                f"WHERE {_MINE}",
                (self.key,),
            ).fetchone()
        self._count = int(count)
        self._seq = max(self._seq, int(seq))

    def left_upto(self, upto: int) -> int:
        with self.lock:
            (count,) = self._conn.execute(
                f"SELECT coalesce(sum(records), 0) FROM chunks c WHERE seq <= ? AND {_MINE}",
                (upto, self.key),
            ).fetchone()
        return int(count)

    def others(self) -> int:
        """Return how many records wait for a process with another API key."""
        with self.lock:
            (count,) = self._conn.execute(
                f"SELECT coalesce(sum(records), 0) FROM chunks c WHERE NOT {_MINE}", (self.key,)
            ).fetchone()
        return int(count)

    def key_refused(self, refused: bool) -> None:
        """Say whether the service refuses this process's key: while it does, any process
        whose key it accepts sends this key's chunks."""
        if refused == self._refused:
            return
        self._refused = refused
        with self.lock:
            if refused:
                self._conn.execute(
                    "INSERT OR REPLACE INTO refused_keys VALUES (?, ?)", (self.key, self._clock())
                )
            else:
                self._conn.execute("DELETE FROM refused_keys WHERE key = ?", (self.key,))

    def abandon(self) -> None:
        """Forget the connection without closing it (in a forked child: it is the parent's)."""
        _ABANDONED.append(self._conn)

    def close(self) -> None:
        with self.lock:
            self._conn.close()
            self._closed = True


#: Connections inherited across fork: never used and never closed in the child.
_ABANDONED: list[sqlite3.Connection] = []


def open_outbox(path: Path, **options: Any) -> tuple[SqliteOutbox, Path | None]:
    """Open the outbox at `path` (see `SqliteOutbox`), quarantining a corrupt file first.

    Returns:
        The outbox, and where a corrupt earlier file was moved (or ``None``).

    Raises:
        OutboxUnavailable: The directory or file cannot be written.
    """
    try:
        return SqliteOutbox(path, **options), None
    except sqlite3.DatabaseError as exc:
        quarantine = path.with_name(f"{path.name}.corrupt-{time.time_ns()}")
        logger.error(
            "flexcredits outbox %s is corrupt (%s); moved to %s and starting a new one",
            path,
            exc,
            quarantine,
        )
        try:
            path.rename(quarantine)
            for suffix in ("-wal", "-shm"):
                side = path.with_name(path.name + suffix)
                if side.exists():
                    side.rename(quarantine.with_name(quarantine.name + suffix))
        except OSError as move_error:
            raise OutboxUnavailable(
                f"cannot quarantine corrupt outbox {str(path)!r}: {move_error}"
            ) from None
        return SqliteOutbox(path, **options), quarantine
