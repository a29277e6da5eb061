"""The service's parts without a server: the ledger document, settings, keys, CLI and storage."""

from __future__ import annotations

import contextlib
import socket
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from server_fixtures import PostgresCluster, db_url, pg_cluster

from flexcredits_sdk import ConfigurationError
from flexcredits_sdk._records import UsageRecord
from flexcredits_sdk.cli import main
from flexcredits_sdk.server import ServerSettings, WalletStore
from flexcredits_sdk.server._db import normalize_url
from flexcredits_sdk.server._insert import copy_or_upsert
from flexcredits_sdk.server._keys import KEY_PREFIX, digest, new_key, same_key
from flexcredits_sdk.server._schema import MIGRATIONS, from_nano, to_nano

__all__ = ["db_url", "pg_cluster"]

T0 = 1_780_000_000 * 10**9

# --- values --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("credits", "nano"), [(20, 20 * 10**9), (Decimal("0.5"), 5 * 10**8), (Decimal("1e-9"), 1)]
)
def test_credits_are_stored_exactly(credits: int | Decimal, nano: int) -> None:
    assert to_nano(credits) == nano
    assert from_nano(nano) == credits


def test_credits_finer_than_nano_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="9 decimal places") as info:
        to_nano(Decimal("0.0000000001"))
    assert info.value.field == "credits"


def test_keys_are_random_and_stored_as_digests() -> None:
    a, b = new_key(), new_key()
    assert a != b
    assert a.startswith(KEY_PREFIX)
    assert len(digest(a)) == 64
    assert a not in digest(a)
    assert same_key(a, a)
    assert not same_key(a, b)


@pytest.mark.parametrize(
    ("db", "url"),
    [
        ("postgresql://u@h/w", "postgresql+psycopg://u@h/w"),
        ("postgres://u@h/w", "postgresql+psycopg://u@h/w"),
        ("sqlite:////tmp/x.db", "sqlite+pysqlite:////tmp/x.db"),
    ],
)
def test_database_names(db: str, url: str) -> None:
    assert normalize_url(db) == url


@pytest.mark.parametrize("db", ["", "mysql://u@h/w", 5])
def test_unsupported_databases_are_refused(db: Any) -> None:
    with pytest.raises(ConfigurationError) as info:
        normalize_url(db)
    assert info.value.field == "db"


# --- settings ------------------------------------------------------------------------------


def test_settings_come_from_arguments_then_the_environment() -> None:
    env = {"FLEXCREDITS_WALLET_DB": "env.db", "FLEXCREDITS_WALLET_MAX_BODY": "4096"}
    chosen = ServerSettings.from_env(env, db="arg.db")
    assert (chosen.db, chosen.max_body_bytes) == ("arg.db", 4096)
    assert ServerSettings.from_env(chosen.to_env()) == chosen
    assert not chosen.allow_private_webhooks
    allowed = ServerSettings.from_env({"FLEXCREDITS_WEBHOOK_ALLOW_PRIVATE": "true"})
    assert allowed.allow_private_webhooks
    assert ServerSettings.from_env(allowed.to_env()) == allowed


@pytest.mark.parametrize(
    ("env", "field"),
    [
        ({"FLEXCREDITS_WALLET_MAX_BODY": "big"}, "FLEXCREDITS_WALLET_MAX_BODY"),
        ({"FLEXCREDITS_WALLET_MAX_BODY": "10"}, "max_body_bytes"),
        ({"FLEXCREDITS_ADMIN_KEY": "short"}, "admin_key"),
        ({"FLEXCREDITS_WEBHOOK_BACKOFF": "-1"}, "webhook_backoff_s"),
        ({"FLEXCREDITS_WEBHOOK_INTERVAL": "soon"}, "webhook_interval_s"),
        ({"FLEXCREDITS_WALLET_LOG_LEVEL": "LOUD"}, "log_level"),
        ({"FLEXCREDITS_WEBHOOK_ALLOW_PRIVATE": "maybe"}, "allow_private_webhooks"),
    ],
)
def test_bad_settings_name_their_field(env: dict[str, str], field: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        ServerSettings.from_env(env)
    assert info.value.field == field


# --- storage -------------------------------------------------------------------------------


def test_tenant_names_are_checked_and_unique(tmp_path: Path) -> None:
    store = WalletStore(str(tmp_path / "w.db"))
    store.migrate()
    try:
        store.create_tenant("acme")
        for name in ("acme", "", "x" * 65, "bad name"):
            with pytest.raises(ConfigurationError) as info:
                store.create_tenant(name)
            assert info.value.field == "name"
        with pytest.raises(ConfigurationError) as unknown:
            store.tenant("nobody")
        assert unknown.value.field == "tenant"
        assert store.revoke_keys("acme") == 1
        assert store.migrate() == MIGRATIONS[-1][0]  # migrating twice changes nothing
    finally:
        store.close()


def test_version_2_moves_watch_ids_of_stored_alerts_to_watch_id(db_url: str) -> None:
    """A database written at version 1 kept the watch id of a low-balance alert in budget_id."""
    store = WalletStore(db_url)
    try:
        assert store.migrate() == MIGRATIONS[-1][0]
        store.create_tenant("acme")
        tenant = store.tenant("acme").id
        with store.engine.begin() as conn:  # back to version 1's table and rows
            conn.execute(sa.text("ALTER TABLE alerts DROP COLUMN watch_id"))
            conn.execute(sa.text("DELETE FROM schema_migrations WHERE version >= 2"))
            for kind, source in (("low_balance", "watch-1"), ("budget", "budget-1")):
                conn.execute(
                    sa.text(
                        "INSERT INTO alerts (tenant_id, kind, message, threshold, value,"
                        " budget_id, at_ns) VALUES (:t, :kind, 'm', '5', '4', :source, 1)"
                    ),
                    {"t": tenant, "kind": kind, "source": source},
                )
        assert store.migrate() == MIGRATIONS[-1][0]
        found = {(a.kind, a.budget_id, a.watch_id) for a in store.alerts(tenant, limit=10)}
        assert found == {("low_balance", None, "watch-1"), ("budget", "budget-1", None)}
    finally:
        store.close()


# --- the command ---------------------------------------------------------------------------


def test_the_wallet_commands_manage_tenants(tmp_path: Path) -> None:
    db = str(tmp_path / "w.db")
    runner = CliRunner()
    created = runner.invoke(main, ["wallet", "create-tenant", "acme", "--db", db])
    assert created.exit_code == 0, created.output
    key = created.stdout.strip().splitlines()[-1]
    assert key.startswith(KEY_PREFIX)
    granted = runner.invoke(
        main, ["wallet", "grant", "acme", "100000", "--source", "purchase", "--db", db]
    )
    assert granted.exit_code == 0, granted.output
    assert "balance 100000" in granted.output
    assert runner.invoke(main, ["wallet", "tenants", "--db", db]).stdout == "acme\n"
    other = runner.invoke(main, ["wallet", "new-key", "acme", "--db", db]).stdout.strip()
    assert other.startswith(KEY_PREFIX)
    assert other != key
    store = WalletStore(db)
    try:
        assert store.authenticate(key) == store.authenticate(other) == store.tenant("acme")
        assert store.authenticate("fck_unknown") is None
        revoked = runner.invoke(main, ["wallet", "revoke-keys", "acme", "--db", db])
        assert revoked.stdout == "revoked 2 key(s) of acme\n"
        assert store.authenticate(key) is None
    finally:
        store.close()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["grant", "nobody", "5"], "no such tenant"),
        (["grant", "acme", "1.5.2"], "not a decimal number"),
        (["grant", "acme", "0"], "must be positive"),
        (["create-tenant", "acme"], "exists"),
    ],
)
def test_the_wallet_commands_explain_bad_input(
    tmp_path: Path, args: list[str], message: str
) -> None:
    db = str(tmp_path / "w.db")
    runner = CliRunner()
    runner.invoke(main, ["wallet", "create-tenant", "acme", "--db", db])
    result = runner.invoke(main, ["wallet", *args, "--db", db])
    assert result.exit_code == 2
    assert message in result.output


def test_the_server_package_exports_its_public_names() -> None:
    import flexcredits_sdk.server as server

    exported = server.__all__
    assert exported == sorted(exported, key=lambda n: (not n.isupper(), n[0].islower(), n))
    assert dir(server) == sorted(exported)
    for name in exported:
        assert getattr(server, name) is not None
    with pytest.raises(AttributeError):
        server.nothing_here  # noqa: B018


def test_records_copied_after_a_concurrent_commit_are_booked_once(
    pg_cluster: PostgresCluster,
) -> None:
    """The look-up missed ids another transaction committed since: the unique key decides."""
    store = WalletStore(pg_cluster.create_database())
    store.migrate()
    try:
        store.create_tenant("acme")
        tenant = store.tenant("acme").id
        batch = [
            UsageRecord(f"id-{i:03}", "a", "standard", 1, 20, "production", {}, None, T0, 1)
            for i in range(10)
        ]
        assert store.ingest(tenant, batch[:6]) == {r.id for r in batch[:6]}
        with store.engine.connect() as conn, conn.begin():
            assert copy_or_upsert(conn, tenant, batch) == {r.id for r in batch[6:]}
        assert store.ingest(tenant, batch) == set()
    finally:
        store.close()


def test_connections_of_a_socket_handed_over_by_descriptor_do_without_nagle() -> None:
    """``serve --fd``: uvicorn sees the listening socket as a Unix socket, so asyncio would
    leave Nagle's algorithm on (every small answer then waits ~40 ms for a delayed ACK)."""
    from flexcredits_sdk.server._protocol import NoDelayHTTPProtocol

    class Transport:
        def __init__(self, sock: socket.socket) -> None:
            self.sock = sock

        def get_extra_info(self, name: str, default: object = None) -> object:
            return self.sock if name == "socket" else default

    with socket.create_server(("127.0.0.1", 0)) as server:
        as_uvicorn_sees_it = socket.fromfd(server.fileno(), socket.AF_UNIX, socket.SOCK_STREAM)
        with (
            as_uvicorn_sees_it,
            socket.create_connection(server.getsockname()),
            as_uvicorn_sees_it.accept()[0] as accepted,
        ):
            assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0
            protocol = NoDelayHTTPProtocol.__new__(NoDelayHTTPProtocol)
            with contextlib.suppress(Exception):  # only the socket option matters here
                protocol.connection_made(Transport(accepted))  # type: ignore[arg-type]
            assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
