"""Where records wait, by wallet service and API key, against a real wallet service: records
metered with a mistyped key are delivered once it is fixed, and tenants sharing an outbox
directory never book each other's records."""

from __future__ import annotations

import contextlib
import hashlib
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from server_fixtures import ServerProcess, running_server

import flexcredits_sdk as fc
from flexcredits_sdk.wallets import HttpWallet


@pytest.fixture(scope="module")
def wallet_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(str(tmp_path_factory.mktemp("wallet") / "wallet.db")) as server:
        yield server


def meter(wallet: HttpWallet, count: int, agent: str) -> None:
    metering = fc.Meter(wallet=wallet)
    for _ in range(count):
        with metering.action("answer", tags={"agent": agent}):
            pass


def booked(server: ServerProcess, key: str) -> dict[str, int]:
    with server.client(key) as client:
        rows = client.get("/v1/usage", params={"group_by": "agent"}).json()["rows"]
    return {row["key"]["agent"]: row["records"] for row in rows}


def test_records_metered_with_a_mistyped_key_are_delivered_once_it_is_fixed(
    wallet_service: ServerProcess, tmp_path: Path
) -> None:
    key = wallet_service.tenant("typo")
    outbox = tmp_path / "outbox"
    typo = HttpWallet(wallet_service.url, key + "x", outbox_dir=outbox, initial_backoff=0.01)
    meter(typo, 50, "before")
    assert not typo.flush(timeout=2)
    assert "401" in str(typo.stats()["last_error"])
    assert not typo.shutdown(timeout=1)

    fixed = HttpWallet(wallet_service.url, key, outbox_dir=outbox)
    try:
        assert fixed.stats()["in_outbox"] == 50  # they are this wallet's to send
        meter(fixed, 20, "after")
        assert fixed.flush(timeout=10)
        assert (fixed.stats()["sent"], fixed.stats()["in_outbox"]) == (70, 0)
    finally:
        fixed.shutdown(timeout=5)
    assert booked(wallet_service, key) == {"before": 50, "after": 20}


def test_tenants_sharing_an_outbox_directory_never_book_each_others_records(
    wallet_service: ServerProcess, tmp_path: Path
) -> None:
    alice, bob = wallet_service.tenant("alice"), wallet_service.tenant("bob")
    outbox = tmp_path / "outbox"
    wallet_service.stop()  # alice meters while the service is down
    down = HttpWallet(wallet_service.url, alice, outbox_dir=outbox, timeout=0.2)
    meter(down, 30, "alice")
    assert not down.shutdown(timeout=5)  # its threads end within the deadline
    wallet_service.start()

    second = HttpWallet(wallet_service.url, bob, outbox_dir=outbox)
    try:
        assert second.outbox_path == down.outbox_path  # one file per wallet service
        assert second.stats()["in_outbox"] == 0  # alice's records are not bob's to send
        meter(second, 10, "bob")
        assert second.flush(timeout=10)
    finally:
        second.shutdown(timeout=5)
    assert booked(wallet_service, bob) == {"bob": 10}

    again = HttpWallet(wallet_service.url, alice, outbox_dir=outbox)
    try:
        assert again.flush(timeout=10)
    finally:
        again.shutdown(timeout=5)
    assert booked(wallet_service, alice) == {"alice": 30}


def test_an_outbox_kept_per_key_by_an_earlier_version_is_delivered(
    wallet_service: ServerProcess, tmp_path: Path
) -> None:
    key = wallet_service.tenant("upgrade")
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    digest = hashlib.sha256(f"{wallet_service.url}\n{key}".encode()).hexdigest()[:16]
    earlier = outbox / f"outbox-{digest}.sqlite3"
    # the version 4 schema, with one chunk waiting
    with contextlib.closing(sqlite3.connect(earlier)) as conn, conn:
        conn.executescript(
            """
            CREATE TABLE chunks (seq INTEGER PRIMARY KEY AUTOINCREMENT, records INTEGER NOT NULL,
                bytes INTEGER NOT NULL, ids TEXT NOT NULL, bodies TEXT NOT NULL);
            CREATE TABLE claims (seq INTEGER PRIMARY KEY, owner TEXT NOT NULL, lease REAL NOT NULL);
            CREATE TABLE dead_letters (id TEXT PRIMARY KEY, body TEXT NOT NULL,
                reason TEXT NOT NULL, at REAL NOT NULL);
            CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
            INSERT INTO meta VALUES ('schema', '4');
            """
        )
        ids = [f"0190c5d8-0000-7000-8000-{n:012d}" for n in range(5)]
        bodies = [
            json.dumps(
                {
                    "id": record_id,
                    "action": "answer",
                    "action_type": "standard",
                    "units": 1,
                    "credits": 20,
                    "environment": "production",
                    "outcome": "ok",
                    "tags": {"agent": "earlier"},
                    "start_time_ns": 1_790_000_000_000_000_000,
                    "duration_ns": 1000,
                },
                separators=(",", ":"),
            )
            for record_id in ids
        ]
        conn.execute(
            "INSERT INTO chunks (records, bytes, ids, bodies) VALUES (?, ?, ?, ?)",
            (5, sum(map(len, bodies)) + 5, json.dumps(ids), "\n".join(bodies)),
        )
    wallet = HttpWallet(wallet_service.url, key, outbox_dir=outbox)
    try:
        assert wallet.outbox_path != earlier
        assert wallet.stats()["in_outbox"] == 5
        assert wallet.flush(timeout=10)
    finally:
        wallet.shutdown(timeout=5)
    assert booked(wallet_service, key) == {"earlier": 5}
