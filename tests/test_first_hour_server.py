"""A new user's first hour with the wallet service: its database, its errors, its metrics.

The commands run as a user runs them, in real subprocesses, each in a working directory of its
own; the platform's data directory is a temporary one (``XDG_DATA_HOME``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from server_fixtures import ADMIN_KEY, ServerProcess, pg_cluster, server

from flexcredits_sdk.server._config import DB_VARIABLE

__all__ = ["pg_cluster", "server"]


@pytest.fixture
def home(tmp_path: Path) -> dict[str, str]:
    """The environment of a user whose data directory is under `tmp_path`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEXCREDITS_")}
    env["XDG_DATA_HOME"] = str(tmp_path / "data")
    return env


def wallet(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``flexcredits wallet ARGS`` in `cwd`."""
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        [sys.executable, "-m", "flexcredits_sdk.server", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


# --- item 5: one database, wherever the command runs -------------------------------------------


def test_a_command_that_only_reads_creates_no_database(
    tmp_path: Path, home: dict[str, str]
) -> None:
    default = tmp_path / "data" / "flexcredits" / "wallet.db"
    for args in (["tenants"], ["new-key", "acme"], ["revoke-keys", "acme"], ["grant", "acme", "5"]):
        result = wallet(tmp_path / "work", home, *args)
        assert result.returncode != 0, result
        assert "Traceback" not in result.stderr
        assert f"{default}: no wallet database there" in result.stderr
        assert f"wallet database: {default} (the default)" in result.stderr
    assert _files(tmp_path) == []


def test_every_command_uses_the_same_database_from_any_directory(
    tmp_path: Path, home: dict[str, str]
) -> None:
    default = tmp_path / "data" / "flexcredits" / "wallet.db"
    created = wallet(tmp_path / "a", home, "create-tenant", "acme")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip().splitlines()[-1]
    assert created.stderr == f"wallet database: {default} (the default)\n"
    granted = wallet(tmp_path / "b", home, "grant", "acme", "1000")
    assert granted.returncode == 0, granted.stderr
    listed = wallet(tmp_path / "c", home, "tenants")
    assert (listed.returncode, listed.stdout) == (0, "acme\n")
    assert not list((tmp_path / "a").iterdir())
    assert not list((tmp_path / "c").iterdir())

    # The server, started elsewhere, knows the key that create-tenant printed.
    (tmp_path / "d").mkdir()
    server = ServerProcess(None, env=home, cwd=tmp_path / "d")
    try:
        with server.client(key) as client:
            response = client.get("/v1/balance")
            assert response.status_code == 200, response.text
            assert response.json()["credits"] == 1000
        assert any(f"wallet database: {default}" in e.get("message", "") for e in server.logs)
    finally:
        server.close()
    assert not list((tmp_path / "d").iterdir())


def test_the_variable_and_the_option_choose_the_database(
    tmp_path: Path, home: dict[str, str]
) -> None:
    chosen = tmp_path / "chosen.db"
    created = wallet(tmp_path / "a", {**home, DB_VARIABLE: str(chosen)}, "create-tenant", "acme")
    assert created.returncode == 0, created.stderr
    assert created.stderr == f"wallet database: {chosen} (from ${DB_VARIABLE})\n"
    listed = wallet(tmp_path / "b", home, "tenants", "--db", str(chosen))
    assert (listed.returncode, listed.stdout) == (0, "acme\n")
    assert listed.stderr == f"wallet database: {chosen}\n"
    assert not (tmp_path / "data").exists()


# --- item 7: a database that cannot be opened is one line, not a traceback ----------------------


@pytest.mark.parametrize("args", [["tenants"], ["create-tenant", "acme"], ["serve", "--port", "1"]])
def test_a_database_in_a_missing_directory_is_one_clear_line(
    tmp_path: Path, home: dict[str, str], args: list[str]
) -> None:
    db = "/nonexistent/dir/w.db"
    result = wallet(tmp_path / "work", home, *args, "--db", db)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) <= 2, result.stderr
    assert lines[-1].startswith(f"Error: --db {db}: "), result.stderr
    assert "Traceback" not in result.stderr
    assert not Path(db).parent.exists()


def test_a_file_that_is_no_database_is_one_clear_line(tmp_path: Path, home: dict[str, str]) -> None:
    bogus = tmp_path / "notes.txt"
    bogus.write_text("not a database, but long enough to look like a header " * 10)
    result = wallet(tmp_path / "work", home, "tenants", "--db", str(bogus))
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1] == (
        f"Error: --db {bogus}: cannot open the database: file is not a database"
    )


def test_an_unknown_kind_of_database_is_one_clear_line(
    tmp_path: Path, home: dict[str, str]
) -> None:
    result = wallet(tmp_path / "work", {**home, DB_VARIABLE: "mysql://x/y"}, "tenants")
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        f"Error: ${DB_VARIABLE} 'mysql://x/y': must be a SQLite file path or a postgresql:// URL"
    ]


# --- item 15: a JSON float is never an amount of credits --------------------------------------


FLOATS = [
    ("/v1/budgets", {"credits": 5000.5}, "credits", "5000.5"),
    ("/v1/budgets", {"credits": 5000.0}, "credits", "5000.0"),
    ("/v1/watches", {"credits": 1e3}, "credits", "1000.0"),
    ("/v1/watches", {"percent": 20.5}, "percent", "20.5"),
    ("/v1/watches", {"percent": 20.0}, "percent", "20.0"),
    ("/v1/grants?tenant={tenant}", {"credits": 100.0}, "credits", "100.0"),
]


def test_json_floats_are_refused_in_every_amount(server: ServerProcess) -> None:
    tenant = f"floats-{len(server.logs)}-{os.getpid()}"
    key = server.tenant(tenant)
    with server.client(key) as client, server.client(ADMIN_KEY) as admin:
        for path, body, field, shown in FLOATS:
            caller = admin if path.startswith("/v1/grants") else client
            response = caller.post(path.format(tenant=tenant), json=body)
            assert response.status_code == 422, (path, body, response.text)
            message = response.json()["error"]["message"]
            assert f"{field}={shown}: floats are not exact" in message, message
        # Nothing was set: no budget, no watch (the next watch is the first), no grant.
        assert client.get("/v1/budgets").json() == {"budgets": []}
        assert client.get("/v1/grants").json() == {"grants": []}
        assert client.post("/v1/watches", json={"percent": "20.5"}).json() == {"id": "watch-1"}
