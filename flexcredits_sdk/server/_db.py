"""Engines for SQLite and PostgreSQL, set up the same way for the wallet's store.

SQLite runs in WAL mode; a writing transaction starts with ``BEGIN IMMEDIATE``, so writers
queue for the database lock up front instead of failing halfway, while readers never block.
PostgreSQL runs at READ COMMITTED; writers lock the tenant's row (``SELECT ... FOR UPDATE``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event

from .._exceptions import ConfigurationError

__all__ = ["WRITE", "make_engine", "normalize_url", "shown", "sqlite_path"]

#: Execution options of a connection that writes.
WRITE = {"flexcredits_write": True}


def normalize_url(db: str) -> str:
    """Return an SQLAlchemy URL for `db`: a URL, or the path of a SQLite file.

    Raises:
        ConfigurationError: `db` is empty or names an unsupported database.
    """
    if not isinstance(db, str) or not db.strip():
        raise ConfigurationError("db", db, "must be a SQLite file path or a postgresql:// URL")
    if "://" not in db:
        return "sqlite+pysqlite:///" + str(Path(db).expanduser().resolve())
    scheme, rest = db.split("://", 1)
    if scheme in ("postgresql", "postgres", "postgresql+psycopg"):
        return "postgresql+psycopg://" + rest
    if scheme in ("sqlite", "sqlite+pysqlite"):
        return "sqlite+pysqlite://" + rest
    raise ConfigurationError("db", db, "must be a SQLite file path or a postgresql:// URL")


def sqlite_path(db: str) -> Path | None:
    """Return the file of a SQLite database `db`, or ``None`` (PostgreSQL, or in memory).

    Raises:
        ConfigurationError: `db` is not a usable database name (see `normalize_url`).
    """
    url = sa.make_url(normalize_url(db))
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database)


def shown(db: str) -> str:
    """Return `db` as it may be shown to a person: a file's full path, a URL without password."""
    path = sqlite_path(db)
    if path is not None:
        return str(path)
    return sa.make_url(db).render_as_string(hide_password=True)


def _sqlite_events(engine: sa.Engine) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # transactions are begun below, not by the driver
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: sa.Connection) -> None:
        write = conn.get_execution_options().get("flexcredits_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def make_engine(db: str, *, pool_size: int = 8) -> sa.Engine:
    """Return an engine for `db` (see `normalize_url`).

    Raises:
        ConfigurationError: `db` is not a usable database name.
    """
    url = normalize_url(db)
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, pool_size=pool_size, max_overflow=pool_size)
        _sqlite_events(engine)
        return engine
    return sa.create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)
