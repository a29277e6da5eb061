"""The outbox: record encoding, chunks, claims shared between processes, quarantine."""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from fixtures import new_record

from flexcredits_sdk import UsageRecord
from flexcredits_sdk._export._outbox import (
    MemoryOutbox,
    OutboxUnavailable,
    chunked,
    default_outbox_dir,
    encode,
)
from flexcredits_sdk._export._sqlite import SqliteOutbox, open_outbox


@pytest.mark.parametrize(
    "record",
    [
        new_record(),
        new_record(credits=Decimal("16.5"), environment="sandbox", units=2),
        new_record(tags={"team": "süd", "quote": 'a "b"\nc'}, conversation_id="conv-1"),
        new_record(outcome="error", error_type="ValueError", trace_id="a" * 32, span_id="b" * 16),
    ],
)
def test_encode_is_the_wire_form_of_the_record(record: UsageRecord) -> None:
    text = encode(record)
    assert "\n" not in text
    assert UsageRecord.from_dict(json.loads(text)) == record
    assert encode(tuple(record)) == text  # the meter hands exporters plain tuples


def test_chunks_respect_both_limits() -> None:
    ids, bodies = [str(i) for i in range(25)], ["x" * 10] * 25
    assert [len(part) for part, _ in chunked(ids, bodies, 10, 10_000)] == [10, 10, 5]
    assert [len(part) for part, _ in chunked(ids, bodies, 100, 55)] == [5, 5, 5, 5, 5]


def test_default_outbox_dir_is_a_per_user_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", "/somewhere/cache")
    assert default_outbox_dir() == Path("/somewhere/cache/flexcredits/outbox")


def _rows(n: int, start: int = 0) -> tuple[list[str], list[str]]:
    ids = [f"id-{i}" for i in range(start, start + n)]
    return ids, [json.dumps({"id": record_id}) for record_id in ids]


MakeOutbox = Callable[..., SqliteOutbox]


@pytest.fixture
def make_outbox() -> Iterator[MakeOutbox]:
    """Open `SqliteOutbox`es (same arguments); each is closed after the test."""
    made: list[SqliteOutbox] = []

    def make(path: Path, **options: Any) -> SqliteOutbox:
        made.append(SqliteOutbox(path, **options))
        return made[-1]

    yield make
    for outbox in made:
        outbox.close()


@pytest.fixture(params=["memory", "sqlite"])
def outbox(
    request: pytest.FixtureRequest, tmp_path: Path, make_outbox: MakeOutbox
) -> MemoryOutbox | SqliteOutbox:
    if request.param == "memory":
        return MemoryOutbox(max_records=10)
    return make_outbox(tmp_path / "o.sqlite3", owner="a", max_records=10)


def test_claim_ack_shrink_and_release(outbox: MemoryOutbox | SqliteOutbox) -> None:
    outbox.add(*_rows(25))
    assert outbox.count() == 25
    first = outbox.claim(20, 10**6, outbox.last_seq())
    assert [len(chunk.ids) for chunk in first] == [10, 10]
    second = outbox.claim(20, 10**6, outbox.last_seq())
    assert [chunk.ids[0] for chunk in second] == ["id-20"]
    assert outbox.claim(20, 10**6, outbox.last_seq()) == []  # everything is claimed
    outbox.ack(first[:1])
    outbox.shrink(first[1], [0, 9])
    assert outbox.count() == 25 - 10 - 8
    outbox.release(first[1:] + second)
    again = outbox.claim(20, 10**6, outbox.last_seq())
    assert [chunk.ids for chunk in again] == [
        ["id-10", "id-19"],
        [f"id-{i}" for i in range(20, 25)],
    ]


def test_claims_stop_at_upto(outbox: MemoryOutbox | SqliteOutbox) -> None:
    outbox.add(*_rows(10))
    upto = outbox.last_seq()
    outbox.add(*_rows(10, 10))
    claimed = outbox.claim(100, 10**6, upto)
    assert [chunk.ids[0] for chunk in claimed] == ["id-0"]


def test_dead_letters_keep_the_reason(outbox: MemoryOutbox | SqliteOutbox) -> None:
    outbox.dead_letter([("id-1", '{"id":"id-1","units":0}', "units: must be > 0")])
    (letter,) = outbox.dead_letters()
    assert (letter.id, letter.reason, letter.record["units"]) == ("id-1", "units: must be > 0", 0)


def test_two_processes_never_claim_the_same_chunk(tmp_path: Path, make_outbox: MakeOutbox) -> None:
    path = tmp_path / "shared.sqlite3"
    one = make_outbox(path, owner="one", max_records=10)
    two = make_outbox(path, owner="two", max_records=10)
    one.add(*_rows(30))
    two.refresh()
    a = one.claim(10, 10**6, 10**9)
    b = two.claim(10, 10**6, 10**9)
    c = one.claim(10, 10**6, 10**9)
    seen = [record_id for part in (a, b, c) for chunk in part for record_id in chunk.ids]
    assert sorted(seen) == sorted(_rows(30)[0])
    assert two.claim(10, 10**6, 10**9) == []


def test_a_dead_process_claim_expires(tmp_path: Path, make_outbox: MakeOutbox) -> None:
    now = [1000.0]
    path = tmp_path / "shared.sqlite3"
    dead = make_outbox(path, owner="dead", lease=30, clock=lambda: now[0])
    alive = make_outbox(path, owner="alive", lease=30, clock=lambda: now[0])
    dead.add(*_rows(5))
    assert dead.claim(10, 10**6, 10**9)
    assert alive.claim(10, 10**6, 10**9) == []
    now[0] += 31
    assert [len(chunk.ids) for chunk in alive.claim(10, 10**6, 10**9)] == [5]


def test_records_survive_reopening(tmp_path: Path, make_outbox: MakeOutbox) -> None:
    path = tmp_path / "o.sqlite3"
    first = make_outbox(path, owner="a")
    first.add(*_rows(7))
    first.close()
    second = make_outbox(path, owner="b")
    assert second.count() == 7
    assert len(second.claim(10, 10**6, second.last_seq())[0].ids) == 7


def test_a_corrupt_file_is_quarantined(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    outbox, moved = open_outbox(path, owner="a")
    with contextlib.closing(outbox):
        assert moved is not None
        assert moved.read_bytes().startswith(b"this is not")
        outbox.add(*_rows(1))
        assert outbox.count() == 1


def test_a_file_of_another_schema_is_quarantined(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Moved aside as it was, records and all, with an error in the log; a new outbox starts."""
    path = tmp_path / "o.sqlite3"
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        conn.execute("INSERT INTO meta VALUES ('schema', '999')")
        conn.execute("CREATE TABLE chunks (seq INTEGER PRIMARY KEY, ids TEXT, bodies TEXT)")
        conn.execute('INSERT INTO chunks VALUES (1, \'["old-1"]\', \'{"id":"old-1"}\')')
    original = path.read_bytes()
    outbox, moved = open_outbox(path, owner="a")
    with contextlib.closing(outbox):
        assert moved is not None
        assert moved.name.startswith("o.sqlite3.corrupt-")
        assert moved.read_bytes() == original  # nothing was written into it
        assert list(tmp_path.glob("*.corrupt-*")) == [moved]
        # Its records are kept, and the log says where.
        with contextlib.closing(sqlite3.connect(f"file:{moved}?mode=ro", uri=True)) as old:
            assert old.execute("SELECT ids FROM chunks").fetchall() == [('["old-1"]',)]
        (error,) = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert "unknown outbox schema version '999'" in error.getMessage()
        assert f"moved to {moved}" in error.getMessage()
        # The new outbox, in the old one's place, starts empty and works.
        assert outbox.path == path
        assert (outbox.count(), outbox.last_seq(), outbox.dead_letters()) == (0, 0, [])
        outbox.add(*_rows(3))
        (chunk,) = outbox.claim(10, 10**6, outbox.last_seq())
        assert chunk.ids == ["id-0", "id-1", "id-2"]
        outbox.ack([chunk])
        assert outbox.count() == 0


def test_an_unwritable_directory_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(OutboxUnavailable, match="cannot open outbox"):
        SqliteOutbox(blocker / "outbox" / "o.sqlite3", owner="a")
