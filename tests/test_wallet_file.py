"""`OfflineWallet(path=...)`: the file is the wallet, across restarts, crashes and releases."""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from contextlib import closing
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from fixtures import meter_varied_actions

import flexcredits_sdk as fc
from flexcredits_sdk.testing import FakeClock

DATA = Path(__file__).parent / "data"
START = _dt.datetime(2026, 3, 1, 21, 0, tzinfo=_dt.UTC)


def _v1_card() -> fc.RateCard:
    """The rate card `tests/data/wallet-v1.db` was written with."""
    return fc.RateCard(
        name="t",
        action_types={
            "standard": {"production": 20, "sandbox": 16},
            "custom": {"production": Decimal("2.5")},
        },
    )


def _answers(wallet: fc.OfflineWallet) -> dict[str, Any]:
    return {
        "balance": wallet.balance().model_dump(mode="json"),
        "grants": [g.model_dump(mode="json") for g in wallet.grants()],
        "budgets": [b.model_dump(mode="json") for b in wallet.budgets()],
        "usage_by_department": [r.model_dump(mode="json") for r in wallet.usage(["department"])],
        "records": [r.to_dict() for r in wallet.records()],
    }


def test_a_file_of_the_previous_release_is_migrated_with_the_same_answers(
    tmp_path: Path,
) -> None:
    path = tmp_path / "wallet.db"
    shutil.copy(DATA / "wallet-v1.db", path)
    expected = json.loads((DATA / "wallet-v1.json").read_text())
    expected["records"].sort(key=lambda r: (r["start_time_ns"], r["id"]))  # now in time order
    for record in expected["records"]:
        record["model_usage"] = []  # a field records have had since
    clock = FakeClock(expected.pop("now_ns"))
    for _ in range(2):  # migrated, then opened as it is
        wallet = fc.OfflineWallet(path=path, clock=clock, rate_card=_v1_card())
        try:
            assert _answers(wallet) == expected
            assert len(expected["records"]) == 57
        finally:
            wallet.shutdown()
        with closing(sqlite3.connect(path)) as db:
            assert db.execute("PRAGMA user_version").fetchone()[0] == 3
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
        assert "events" not in tables


def test_a_version_2_file_is_migrated_and_then_keeps_model_usage(tmp_path: Path) -> None:
    """`wallet-v2.db` was written by the release before records carried model usage."""
    path = tmp_path / "wallet.db"
    shutil.copy(DATA / "wallet-v2.db", path)
    expected = json.loads((DATA / "wallet-v2.json").read_text())
    for record in expected["records"]:
        record["model_usage"] = []
    clock = FakeClock(expected.pop("now_ns"))
    card = fc.RateCard(**{**_v1_card().model_dump(), "models": {"m": {"input": 3, "output": 15}}})
    wallet = fc.OfflineWallet(path=path, clock=clock, rate_card=card)
    try:
        assert _answers(wallet) == expected
        assert len(expected["records"]) == 60
        meter = fc.Meter(wallet=wallet, clock=clock, rate_card=card)
        with meter.action("answer") as act:
            act.add_model_usage("m", input_tokens=2_000, output_tokens=100)
    finally:
        wallet.shutdown()
    with closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 3
    wallet = fc.OfflineWallet(path=path, clock=clock, rate_card=card)
    try:
        records = list(wallet.records())
        assert [r.model_usage for r in records[-1:]] == [
            (fc.ModelUsage("m", 2_000, 100, Decimal("0.0075")),)
        ]
        assert all(r.model_usage == () for r in records[:-1])
    finally:
        wallet.shutdown()


def _without_ids(records: Any) -> list[fc.UsageRecord]:
    """The records with their ids blanked: two wallets fed alike differ only in those."""
    return [r._replace(id="") for r in records]


QUERIES: list[dict[str, Any]] = [
    {},
    {"group_by": ["department"]},
    {"group_by": ["action", "outcome", "department"], "bucket": "day"},
    {"group_by": ["conversation_id"]},
    {"group_by": ["action"], "bucket": "hour"},
    {"group_by": ["department"], "environment": "sandbox"},
    {"since": _dt.datetime(2026, 3, 1, 22, 30, tzinfo=_dt.UTC)},
    {"group_by": ["action"], "until": _dt.datetime(2026, 3, 3, tzinfo=_dt.UTC)},
]


@pytest.mark.parametrize("durability", ["batch", "each"])
def test_a_file_wallet_answers_as_the_memory_wallet_before_and_after_a_restart(
    tmp_path: Path, durability: str
) -> None:
    path = tmp_path / "wallet.db"
    answers = []
    file_records: list[fc.UsageRecord] = []
    for kind in ("file", "memory"):
        clock = FakeClock(START)
        wallet = fc.OfflineWallet(
            clock=clock,
            keep_records=None,
            path=path if kind == "file" else None,
            durability=durability,  # type: ignore[arg-type]
        )
        wallet.buy_packs(1)
        wallet.set_budget(500, tags={"department": "hr"}, period="day", hard=False)
        meter_varied_actions(wallet, clock, 1_500)
        answers.append(
            (
                [wallet.usage(**q) for q in QUERIES],
                _without_ids(wallet.records()),
                _without_ids(wallet.records(tags={"department": "it"}, limit=50)),
                wallet.balance(),
                wallet.budgets(),
            )
        )
        assert all(report.complete for report in answers[-1][0])
        if kind == "file":
            file_records = list(wallet.records())
        wallet.shutdown()
    assert answers[0] == answers[1]
    assert len(answers[0][1]) == 1_500
    assert len(answers[0][2]) == 50

    again = fc.OfflineWallet(path=path, clock=FakeClock(START), keep_records=None)
    try:
        assert [again.usage(**q) for q in QUERIES] == answers[1][0]
        assert list(again.records()) == file_records
        assert again.book(file_records[0]) is False  # every id is known after the restart
        assert again.balance().model_dump(exclude={"as_of"}) == answers[1][3].model_dump(
            exclude={"as_of"}
        )
    finally:
        again.shutdown()


def test_a_second_process_is_refused_with_the_path(tmp_path: Path) -> None:
    path = tmp_path / "wallet.db"
    wallet = fc.OfflineWallet(path=path)
    try:
        code = textwrap.dedent(
            f"""
            import flexcredits_sdk as fc
            try:
                fc.OfflineWallet(path={str(path)!r})
            except fc.ConfigurationError as exc:
                print(exc)
            """
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
        ).stdout
        assert str(path) in out
        assert "open in another process" in out
    finally:
        wallet.shutdown()
    fc.OfflineWallet(path=path).shutdown()  # free again once the first one closed


def _another_program(path: Path) -> None:
    with closing(sqlite3.connect(path)) as db:
        db.execute("CREATE TABLE customers (name TEXT)")
        db.commit()


def _newer_release(path: Path) -> None:
    fc.OfflineWallet(path=path).shutdown()
    with closing(sqlite3.connect(path)) as db:
        db.execute("PRAGMA user_version = 4")


def _not_sqlite(path: Path) -> None:
    path.write_bytes(b"this is not a database file, only some text" * 100)


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (_another_program, "another program"),
        (_newer_release, "newer than this release"),
        (_not_sqlite, "not a wallet file"),
        (lambda path: None, "cannot be opened"),  # its directory does not exist
    ],
)
def test_an_unusable_file_is_refused_with_its_path(tmp_path: Path, make: Any, reason: str) -> None:
    path = tmp_path / "wallet.db"
    if reason == "cannot be opened":
        path = tmp_path / "missing" / "wallet.db"
    make(path)
    before = path.read_bytes() if path.exists() else None
    with pytest.raises(fc.ConfigurationError) as info:
        fc.OfflineWallet(path=path)
    assert info.value.field == "path"
    assert info.value.value == str(path)
    assert reason in str(info.value)
    assert (path.read_bytes() if path.exists() else None) == before  # left as it was


def test_a_long_path_is_named_whole(tmp_path: Path) -> None:
    path = tmp_path / ("a-directory-with-a-long-name-" * 4) / "wallet.db"
    path.parent.mkdir()
    path.write_bytes(b"not a wallet, not SQLite either" * 100)
    with pytest.raises(fc.ConfigurationError) as info:
        fc.OfflineWallet(path=path)
    assert f"path={str(path)!r}:" in str(info.value)


def test_durability_must_be_known() -> None:
    with pytest.raises(fc.ConfigurationError) as info:
        fc.OfflineWallet(durability="sometimes")  # type: ignore[arg-type]
    assert info.value.field == "durability"


_CHILD = """
import sys
import flexcredits_sdk as fc
wallet = fc.OfflineWallet(path=sys.argv[1], durability=sys.argv[2])
if wallet.balance().granted == 0:
    wallet.grant(1_000_000)
meter = fc.Meter(wallet=wallet)
print("ready", flush=True)
while True:
    with fc.tags(department="hr"), meter.action("answer") as act:
        pass
    if sys.argv[2] == "each":
        print(act.id, flush=True)
"""


@pytest.mark.parametrize("durability", ["batch", "each"])
def test_sigkill_never_leaves_a_half_booked_file(tmp_path: Path, durability: str) -> None:
    """Killed while booking, again and again: after each reopen the balance is what the grant
    less the records in the file says; with "each", every action that returned is there."""
    path = tmp_path / "wallet.db"
    script = tmp_path / "child.py"
    script.write_text(_CHILD)
    booked = 0
    for round_ in range(4):
        with subprocess.Popen(
            [sys.executable, str(script), str(path), durability],
            stdout=subprocess.PIPE,
            text=True,
        ) as child:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "ready"
            time.sleep(0.6 + 0.15 * round_)
            os.kill(child.pid, signal.SIGKILL)
            returned = child.stdout.read().split()
        wallet = fc.OfflineWallet(path=path)
        try:
            records = list(wallet.records())
            balance = wallet.balance()
            assert balance.granted == 1_000_000
            assert balance.used == sum(r.credits for r in records) == 20 * len(records)
            assert balance.credits == 1_000_000 - balance.used
            [row] = wallet.usage(["department"])
            assert row.records == len(records)
            assert len(records) > booked  # each round booked more
            booked = len(records)
            if durability == "each":
                ids = {r.id for r in records}
                assert set(returned[:-1]) <= ids  # the last line may be cut by the kill
        finally:
            wallet.shutdown()


def test_a_full_disk_keeps_the_records_waiting_until_a_write_succeeds(tmp_path: Path) -> None:
    path = tmp_path / "wallet.db"
    wallet = fc.OfflineWallet(path=path, durability="batch")
    wallet.grant(1_000_000)
    meter = fc.Meter(wallet=wallet)
    for _ in range(50):
        meter.metered_action(lambda: None)()
    wallet.flush()
    db = wallet._file._db  # type: ignore[union-attr]
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    db.execute(f"PRAGMA max_page_count = {pages}")  # SQLite answers "database or disk is full"
    with fc.tags(department="hr"):
        for _ in range(2_000):
            meter.metered_action(lambda: None)()
    with pytest.raises(fc.ConfigurationError) as info:
        wallet.flush()
    assert info.value.value == str(path)
    assert "cannot be written" in str(info.value)
    assert wallet.balance().used == 20 * 2_050  # booked, waiting to be written
    db.execute("PRAGMA max_page_count = 1073741823")  # space again
    wallet.shutdown()

    again = fc.OfflineWallet(path=path)
    try:
        assert again.balance().used == 20 * 2_050
        assert len(list(again.records(tags={"department": "hr"}))) == 2_000
    finally:
        again.shutdown()


def _make_read_only(target: Path) -> Callable[[], None]:
    """Make `target` read-only, for root too (the immutable attribute), and return the undo."""
    if os.geteuid() != 0:
        mode = target.stat().st_mode
        target.chmod(0o555 if target.is_dir() else 0o444)
        return lambda: target.chmod(mode)
    subprocess.run(["chattr", "+i", str(target)], check=True)
    return lambda: subprocess.run(["chattr", "-i", str(target)], check=True)


@pytest.mark.parametrize("what", ["file", "directory"])
def test_a_read_only_file_or_directory_is_refused_with_the_path(tmp_path: Path, what: str) -> None:
    folder = tmp_path / "wallets"
    folder.mkdir()
    path = folder / "wallet.db"
    fc.OfflineWallet(path=path).shutdown()
    before = path.read_bytes()
    undo = _make_read_only(path if what == "file" else folder)
    try:
        with pytest.raises(fc.ConfigurationError) as info:
            fc.OfflineWallet(path=path)
    finally:
        undo()
    assert info.value.value == str(path)
    assert "read-only" in str(info.value)
    assert path.read_bytes() == before


def test_a_record_made_by_hand_with_text_utf8_cannot_encode_holds_no_other_back(
    tmp_path: Path,
) -> None:
    """Such text (a lone surrogate) is stored escaped; the records around it are stored as they
    are, and the balance still matches the records in the file."""
    path = tmp_path / "wallet.db"
    wallet = fc.OfflineWallet(path=path, keep_records=None)
    wallet.grant(1_000)
    good = [
        fc.UsageRecord(f"r-{i}", "answer", "standard", 1, 20, "production", {}, None, i, 1)
        for i in range(5)
    ]
    bad = fc.UsageRecord(
        "r-bad", "caf\udce9", "standard", 1, 20, "production", {"f": "\udce9"}, "c\udce9", 9, 1
    )
    assert wallet.book_many([*good, bad]) == 6
    assert wallet.flush()
    wallet.shutdown()
    again = fc.OfflineWallet(path=path)
    try:
        stored = {r.id: r for r in again.records()}
        assert set(stored) == {r.id for r in good} | {"r-bad"}
        assert [stored[r.id] for r in good] == good
        assert stored["r-bad"].action == "caf\\udce9"
        assert again.balance().used == 120
    finally:
        again.shutdown()
