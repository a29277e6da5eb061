"""A new user's first hour with the wallet service: its database, its errors, its metrics.

The commands run as a user runs them, in real subprocesses, each in a working directory of its
own; the platform's data directory is a temporary one (``XDG_DATA_HOME``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from server_fixtures import ADMIN_KEY, ServerProcess, pg_cluster, running_server, server
from test_server_webhooks import ALLOW_LOOPBACK, Receiver, receiver, spend

from flexcredits_sdk._records import UsageRecord, new_id
from flexcredits_sdk.server._config import DB_VARIABLE, METRICS_TENANT_LABEL_VARIABLE

__all__ = ["pg_cluster", "receiver", "server"]


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


# --- item 18: Prometheus metrics at /metrics ----------------------------------------------------


def scrape(server: ServerProcess) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Return every sample at ``/metrics``, by name and labels, on a connection of its own."""
    with httpx.Client(base_url=server.url, timeout=60) as client:
        response = client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def records(*credits: int) -> dict[str, Any]:
    """Records of `credits` each, at the default card's price (20 per unit in production)."""
    now = time.time_ns()
    made = [
        UsageRecord(new_id(), "answer", "standard", c // 20, c, "production", {}, None, now, 1)
        for c in credits
    ]
    return {"records": [r.to_dict() for r in made]}


def test_the_metrics_move_as_records_are_ingested(server: ServerProcess) -> None:
    tenant = f"metrics-{os.getpid()}-{time.monotonic_ns()}"
    key = server.tenant(tenant)
    before = scrape(server)
    server.grant(tenant, 1000)
    batch = records(20, 40)
    with server.client(key) as client:
        assert client.post("/v1/records", json=batch).status_code == 200
        again = {"records": [*batch["records"], *records(20)["records"]]}
        assert client.post("/v1/records", json=again).status_code == 200
        bad = {"records": [*records(20)["records"], {**records(20)["records"][0], "units": 0}]}
        assert client.post("/v1/records", json=bad).status_code == 422
        assert client.get("/v1/balance").json()["credits"] == 1000 - 80
    after = scrape(server)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    records_total = "flexcredits_wallet_records_total"
    assert moved(records_total, result="accepted") == 3
    assert moved(records_total, result="duplicate") == 2
    assert moved(records_total, result="rejected") == 1
    assert moved(records_total, result="not_booked") == 1
    assert moved("flexcredits_wallet_ingest_seconds_count") == 3
    assert moved("flexcredits_wallet_ingest_seconds_sum") > 0
    assert moved("flexcredits_wallet_ingest_seconds_bucket", le="+Inf") == 3
    requests = "flexcredits_wallet_requests_total"
    assert moved(requests, method="POST", route="/v1/records", status="200") == 2
    assert moved(requests, method="POST", route="/v1/records", status="422") == 1
    assert moved(requests, method="POST", route="/v1/grants", status="200") == 1
    assert moved(requests, method="GET", route="/metrics", status="200") == 1
    # Totals over every tenant: this one's grant less what it spent; nothing is held.
    assert moved("flexcredits_wallet_balance_credits") == 1000 - 80
    assert value(after, "flexcredits_wallet_held_credits") == 0
    assert moved("flexcredits_wallet_tenants") == 0
    assert not any(("tenant", tenant) in labels for _, labels in after)


def test_routes_are_templates_and_unknown_paths_are_one_label(server: ServerProcess) -> None:
    before = scrape(server)
    with server.client() as client:
        assert client.post("/v1/tenants/someone/keys").status_code == 403
        assert client.get("/no/such/page").status_code == 404
    after = scrape(server)
    requests = "flexcredits_wallet_requests_total"
    keys = {"method": "POST", "route": "/v1/tenants/{name}/keys", "status": "403"}
    assert value(after, requests, **keys) - value(before, requests, **keys) == 1
    unmatched = {"method": "GET", "route": "unmatched", "status": "404"}
    assert value(after, requests, **unmatched) - value(before, requests, **unmatched) == 1
    assert not any("/no/such/page" in str(labels) for _, labels in after)


def test_balances_per_tenant_and_webhooks_when_the_operator_asks(
    tmp_path: Path, receiver: Receiver
) -> None:
    env = {METRICS_TENANT_LABEL_VARIABLE: "1", **ALLOW_LOOPBACK}
    with running_server(str(tmp_path / "w.db"), env=env) as server:
        key = server.tenant("acme")
        server.tenant("globex")
        server.grant("acme", 1000)
        with server.client(key) as client:
            assert client.put("/v1/webhook", json={"url": receiver.url}).status_code == 200
            assert client.post("/v1/watches", json={"credits": 500}).status_code == 200
        spend(server, key, 600)
        assert receiver.accepted.wait(30)  # two 503s, then delivered
        server.wait_for(lambda logs: any(e.get("message") == "webhook delivered" for e in logs))
        samples = scrape(server)
    balance = "flexcredits_wallet_balance_credits"
    assert value(samples, balance, tenant="acme") == 400
    assert value(samples, balance, tenant="globex") == 0
    assert value(samples, "flexcredits_wallet_held_credits", tenant="acme") == 0
    assert value(samples, "flexcredits_wallet_tenants") == 2
    deliveries = "flexcredits_wallet_webhook_deliveries_total"
    assert value(samples, deliveries, result="retry") == 2
    assert value(samples, deliveries, result="delivered") == 1
    assert value(samples, deliveries, result="failed") == 0


def test_every_worker_answers_for_all_of_them(tmp_path: Path) -> None:
    with running_server(str(tmp_path / "w.db"), workers=2) as server:
        key = server.tenant("acme")
        server.grant("acme", 10_000)
        for _ in range(12):  # each on a connection of its own, so both workers take some
            with server.client(key) as client:
                assert client.post("/v1/records", json=records(20)).status_code == 200
        accepted = set()
        for _ in range(8):
            samples = scrape(server)
            accepted.add(value(samples, "flexcredits_wallet_records_total", result="accepted"))
            assert value(samples, "flexcredits_wallet_balance_credits") == 10_000 - 240
        assert accepted == {12}


def test_a_grant_that_would_expire_before_it_is_made_is_refused(
    tmp_path: Path, home: dict[str, str]
) -> None:
    assert wallet(tmp_path, home, "create-tenant", "acme").returncode == 0
    past = wallet(tmp_path, home, "grant", "acme", "100", "--expires", "2020-01-01")
    assert past.returncode != 0
    assert "expires_at='2020-01-01T00:00:00+00:00': must be in the future" in past.stderr
    assert "Traceback" not in past.stderr
    later = wallet(tmp_path, home, "grant", "acme", "100", "--expires", "2999-01-01")
    assert later.returncode == 0, later.stderr
    assert later.stdout.rstrip().endswith("balance 100")  # the refused grant added nothing


def test_the_api_refuses_a_grant_that_would_expire_before_it_is_made(
    server: ServerProcess,
) -> None:
    key = server.tenant("expiring")
    with server.client(ADMIN_KEY) as admin:
        refused = admin.post(
            "/v1/grants",
            params={"tenant": "expiring"},
            json={"credits": 100, "expires_at": "2020-01-01T00:00:00Z"},
        )
    with server.client(key) as client:
        balance = client.get("/v1/balance")
    assert refused.status_code == 422
    assert "expires_at='2020-01-01T00:00:00+00:00': must be in the future" in refused.text
    assert balance.status_code == 200, balance.text
    assert balance.json()["credits"] in (0, "0")
