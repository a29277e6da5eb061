"""Budgets on the wallet service: hard, nested, changed only by an explicit update, and with day
and month periods in the tenant's time zone; on SQLite and on PostgreSQL."""

from __future__ import annotations

import contextlib
import datetime as _dt
import itertools
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from server_fixtures import ADMIN_KEY, ServerProcess, db_url, pg_cluster, server

from flexcredits_sdk import BudgetExceeded, ConfigurationError, Meter, OfflineWallet, RateCard
from flexcredits_sdk._ledger import Ledger
from flexcredits_sdk._records import UsageRecord, datetime_to_ns, new_id
from flexcredits_sdk.cli import main
from flexcredits_sdk.server._database import WalletStore
from flexcredits_sdk.server._schema import MIGRATIONS

__all__ = ["db_url", "pg_cluster", "server"]

_names = itertools.count(1)
SECOND = 10**9


def at(text: str) -> int:
    return datetime_to_ns(_dt.datetime.fromisoformat(text))


def record(start_ns: int, credits: int = 20, **tags: str) -> UsageRecord:
    return UsageRecord(
        new_id(), "answer", "standard", 1, credits, "production", tags, None, start_ns, 1_000
    )


def tenant(server: ServerProcess, **body: Any) -> tuple[str, httpx.Client]:
    name = f"b{next(_names)}"
    key = server.tenant(name, **body)
    server.grant(name, 100_000)
    return name, server.client(key)


def post_records(client: httpx.Client, *records: UsageRecord) -> None:
    response = client.post("/v1/records", json={"records": [r.to_dict() for r in records]})
    assert response.status_code == 200, response.text


def by_tags(client: httpx.Client) -> dict[tuple[tuple[str, str], ...], dict[str, Any]]:
    budgets = client.get("/v1/budgets").json()["budgets"]
    return {tuple(sorted(b["tags"].items())): b for b in budgets}


# --- the HTTP API ------------------------------------------------------------------------------


def test_budgets_nest_and_show_hard_spent_held_and_parent(server: ServerProcess) -> None:
    _, client = tenant(server)
    for body in (
        {"credits": 10_000},
        {"credits": 1_000, "tags": {"department": "service"}, "hard": True},
        {"credits": 100, "tags": {"department": "service", "agent": "triage"}, "hard": True},
        {"credits": 500, "tags": {"agent": "triage"}, "period": "day"},
    ):
        response = client.post("/v1/budgets", json=body)
        assert response.status_code == 200, response.text
    now = at(_dt.datetime.now(_dt.UTC).isoformat())
    post_records(client, record(now, department="service", agent="triage"))
    post_records(client, record(now, department="sales"))
    found = by_tags(client)
    whole = found[()]
    service = found[(("department", "service"),)]
    triage = found[(("agent", "triage"), ("department", "service"))]
    agent = found[(("agent", "triage"),)]
    assert [whole["hard"], service["hard"], triage["hard"], agent["hard"]] == [
        False,
        True,
        True,
        False,
    ]
    assert [whole["spent"], service["spent"], triage["spent"], agent["spent"]] == [40, 20, 20, 20]
    assert {b["held"] for b in found.values()} == {0}
    assert whole["parent"] is None
    assert service["parent"] == whole["id"]
    assert agent["parent"] == whole["id"]
    # Two budgets of one tag contain it: the one of its own period (month) is its parent.
    assert triage["parent"] == service["id"]
    page = client.get("/dashboard").text
    assert "<td>department=service</td><td>month</td><td>hard</td>" in page
    assert "<td>all actions</td><td>month</td><td>soft</td>" in page


def test_a_budget_is_soft_unless_asked_hard(server: ServerProcess) -> None:
    _, client = tenant(server)
    soft = client.post("/v1/budgets", json={"credits": 10}).json()["budgets"][0]
    assert soft["hard"] is False
    refused = client.post("/v1/budgets", json={"credits": 10, "period": "day", "hard": "maybe"})
    assert refused.status_code == 422
    assert "hard" in refused.json()["error"]["message"]


def test_a_second_post_for_the_same_tags_and_period_is_a_409_naming_the_budget(
    server: ServerProcess,
) -> None:
    _, client = tenant(server)
    body = {"credits": 100, "tags": {"team": "a"}, "period": "day"}
    first = client.post("/v1/budgets", json=body).json()["budgets"][0]
    again = client.post("/v1/budgets", json={**body, "credits": 5, "hard": True})
    assert again.status_code == 409, again.text
    error = again.json()["error"]
    assert error["code"] == "budget_exists"
    assert error["budget_id"] == first["id"]
    assert first["id"] in error["message"]
    (kept,) = client.get("/v1/budgets").json()["budgets"]
    assert (kept["limit"], kept["hard"]) == (100, False)  # not replaced
    other_period = client.post("/v1/budgets", json={**body, "period": "month"})
    assert other_period.status_code == 200
    assert len(other_period.json()["budgets"]) == 2


def test_put_changes_limit_hard_and_name_and_keeps_what_was_spent(server: ServerProcess) -> None:
    _, client = tenant(server)
    first = client.post("/v1/budgets", json={"credits": 100, "tags": {"team": "a"}})
    budget = first.json()["budgets"][0]
    now = at(_dt.datetime.now(_dt.UTC).isoformat())
    post_records(client, record(now, team="a"), record(now + 1, team="a"), record(now + 2))
    changed = client.put(f"/v1/budgets/{budget['id']}", json={"credits": "250.5", "hard": True})
    assert changed.status_code == 200, changed.text
    after = changed.json()
    assert (after["id"], after["limit"], after["hard"], after["spent"]) == (
        budget["id"],
        "250.5",
        True,
        40,
    )
    assert after["name"] == budget["name"]
    renamed = client.put(f"/v1/budgets/{budget['id']}", json={"credits": 300, "name": "Team A"})
    assert (renamed.json()["name"], renamed.json()["hard"]) == ("Team A", True)  # hard kept
    assert client.get("/v1/budgets").json()["budgets"] == [renamed.json()]
    missing = client.put("/v1/budgets/budget-99", json={"credits": 1})
    assert missing.status_code == 404
    assert "budget-99" in missing.json()["error"]["message"]
    bad = client.put(f"/v1/budgets/{budget['id']}", json={"credits": -1})
    assert bad.status_code == 422
    assert "credits" in bad.json()["error"]["message"]


def test_a_tenant_has_a_time_zone_set_at_creation_and_by_an_admin(server: ServerProcess) -> None:
    name, _ = tenant(server, time_zone="Asia/Tokyo")
    with server.client(ADMIN_KEY) as admin:
        bad = admin.post("/v1/tenants", json={"name": "tz-bad", "time_zone": "Mars/Olympus"})
        assert bad.status_code == 422, bad.text
        assert "time_zone" in bad.json()["error"]["message"]
        assert "Mars/Olympus" in bad.json()["error"]["message"]
        changed = admin.patch(f"/v1/tenants/{name}", json={"time_zone": "America/New_York"})
        assert changed.status_code == 200, changed.text
        assert changed.json() == {"name": name, "time_zone": "America/New_York"}
        wrong = admin.patch(f"/v1/tenants/{name}", json={"time_zone": "Not/AZone"})
        assert wrong.status_code == 422
        assert "time_zone" in wrong.json()["error"]["message"]
        unknown = admin.patch("/v1/tenants/nobody", json={"time_zone": "UTC"})
        assert unknown.status_code == 404
    with server.client() as anon:
        assert anon.patch(f"/v1/tenants/{name}", json={"time_zone": "UTC"}).status_code == 403


# --- time zones, on the store with a clock ------------------------------------------------------


@contextlib.contextmanager
def store_at(db: str, clock: list[int]) -> Iterator[WalletStore]:
    store = WalletStore(db, clock=lambda: clock[0])
    store.migrate()
    try:
        yield store
    finally:
        store.close()


def spent(store: WalletStore, tenant_id: int) -> list[Any]:
    return [b.spent for b in store.budgets(tenant_id)]


@pytest.mark.parametrize(
    ("day", "midnight"),
    [("2026-01-15", "05:00:00"), ("2026-07-15", "04:00:00")],
    ids=["winter", "summer"],
)
def test_a_day_budget_in_new_york_resets_at_local_midnight(
    db_url: str, day: str, midnight: str
) -> None:
    reset = at(f"{day}T{midnight}+00:00")
    clock = [reset - 2 * SECOND]
    with store_at(db_url, clock) as store:
        store.create_tenant("ny", time_zone="America/New_York")
        store.create_tenant("utc")
        ny, utc = store.tenant("ny").id, store.tenant("utc").id
        for tenant_id in (ny, utc):
            store.add_budget(tenant_id, 100, tags={}, period="day", hard=True, name=None)
            store.ingest(tenant_id, [record(reset - 2 * SECOND)])
        clock[0] = reset - 1
        assert spent(store, ny) == spent(store, utc) == [20]
        clock[0] = reset
        assert spent(store, ny) == [0]  # a new day in New York
        assert spent(store, utc) == [20]  # the UTC day goes on until 00:00 UTC


def test_a_month_budget_in_tokyo_starts_on_the_local_1st(db_url: str) -> None:
    first = at("2026-01-31T15:00:00+00:00")  # 2026-02-01 00:00 in Tokyo
    clock = [first - 60 * SECOND]
    with store_at(db_url, clock) as store:
        store.create_tenant("tokyo", time_zone="Asia/Tokyo")
        tokyo = store.tenant("tokyo").id
        store.add_budget(tokyo, 100, tags={"team": "a"}, period="month", hard=False, name=None)
        store.ingest(tokyo, [record(clock[0], team="a")])
        assert spent(store, tokyo) == [20]
        clock[0] = first
        assert spent(store, tokyo) == [0]
        store.ingest(tokyo, [record(first, team="a")])
        clock[0] = at("2026-02-28T14:59:59+00:00")  # still February in Tokyo
        assert spent(store, tokyo) == [20]
        clock[0] = at("2026-02-28T15:00:00+00:00")
        assert spent(store, tokyo) == [0]


def test_a_changed_time_zone_is_stored_and_starts_the_next_period(db_url: str) -> None:
    clock = [at("2026-01-15T12:00:00+00:00")]
    with store_at(db_url, clock) as store:
        store.create_tenant("acme")
        assert store.time_zone("acme") == "UTC"
        acme = store.tenant("acme").id
        store.add_budget(acme, 100, tags={}, period="day", hard=True, name=None)
        store.set_time_zone("acme", "America/New_York")
        with pytest.raises(ConfigurationError) as info:
            store.set_time_zone("acme", "Nowhere/Land")
        assert info.value.field == "time_zone"
        with pytest.raises(ConfigurationError):
            store.create_tenant("bad", time_zone="")
    with store_at(db_url, clock) as fresh:  # no cached ledger: read from the database
        assert fresh.time_zone("acme") == "America/New_York"
        clock[0] = at("2026-01-16T00:00:00+00:00")  # the UTC day ends: the next is New York's
        fresh.ingest(acme, [record(clock[0])])
        clock[0] = at("2026-01-16T04:59:59+00:00")
        assert spent(fresh, acme) == [20]
        clock[0] = at("2026-01-16T05:00:00+00:00")
        assert spent(fresh, acme) == [0]


def test_a_hard_budget_is_stored_hard_and_its_ledger_refuses_past_it(db_url: str) -> None:
    clock = [at("2026-03-01T12:00:00+00:00")]
    with store_at(db_url, clock) as store:
        store.create_tenant("acme")
        acme = store.tenant("acme").id
        parent, added = store.add_budget(
            acme, 50, tags={"department": "service"}, period="month", hard=True, name=None
        )
        assert added
        assert parent.hard
        child, _ = store.add_budget(
            acme,
            1_000,
            tags={"department": "service", "agent": "triage"},
            period="month",
            hard=True,
            name=None,
        )
        store.ingest(acme, [record(clock[0], department="service", agent="triage")])
        assert store.update_budget(acme, "budget-99", 5) is None
        changed = store.update_budget(acme, parent.id, 60)
        assert changed is not None
        assert (changed.spent, changed.hard) == (20, True)
        with store.engine.connect() as conn:
            text = conn.execute(sa.text("SELECT ledger FROM tenants WHERE id = :id"), {"id": acme})
            state = json.loads(text.scalar_one())
    ledger = Ledger.from_state(state, RateCard.agentforce())
    tags = {"department": "service", "agent": "triage"}
    hold = ledger.authorize("answer", 40, tags, clock[0])  # 20 + 40 fits 60
    with pytest.raises(BudgetExceeded) as info:
        ledger.authorize("answer", 1, tags, clock[0])  # the child has room; its parent not
    assert info.value.budget.id == parent.id
    ledger.release(hold)
    assert ledger.budget_holds() == {parent.id: 0, child.id: 0}


def test_a_version_3_database_gives_its_tenants_utc(db_url: str) -> None:
    with store_at(db_url, [at("2026-01-15T12:00:00+00:00")]) as store:
        latest = MIGRATIONS[-1][0]
        store.create_tenant("old")
        with store.engine.begin() as conn:  # back to version 3's table
            conn.execute(sa.text("ALTER TABLE tenants DROP COLUMN time_zone"))
            conn.execute(sa.text("DELETE FROM schema_migrations WHERE version >= 4"))
        assert store.migrate() == latest
        assert store.time_zone("old") == "UTC"
        store.create_tenant("new", time_zone="Europe/Paris")
        assert store.time_zone("new") == "Europe/Paris"


# --- the ledger ---------------------------------------------------------------------------------


def test_the_ledger_keeps_its_time_zone_in_its_state() -> None:
    card = RateCard.agentforce()
    ledger = Ledger(card, time_zone="Asia/Tokyo")
    state = ledger.to_state()
    assert state["time_zone"] == "Asia/Tokyo"
    assert Ledger.from_state(state, card).time_zone == "Asia/Tokyo"
    del state["time_zone"]  # a state written before time zones
    assert Ledger.from_state(state, card).time_zone == "UTC"
    with pytest.raises(ConfigurationError) as info:
        Ledger(card, time_zone="Asia/Atlantis")
    assert (info.value.field, info.value.value) == ("time_zone", "Asia/Atlantis")
    with pytest.raises(ConfigurationError):
        ledger.time_zone = "../etc/passwd"
    assert ledger.time_zone == "Asia/Tokyo"


@pytest.mark.parametrize(
    ("now", "start", "end", "hours"),
    [
        ("2026-03-08T12:00:00+00:00", "2026-03-08T05:00:00+00:00", "2026-03-09T04:00:00+00:00", 23),
        ("2026-11-01T12:00:00+00:00", "2026-11-01T04:00:00+00:00", "2026-11-02T05:00:00+00:00", 25),
    ],
    ids=["spring-forward", "fall-back"],
)
def test_a_day_budget_on_a_dst_change_lasts_23_or_25_hours(
    now: str, start: str, end: str, hours: int
) -> None:
    ledger = Ledger(RateCard.agentforce(), time_zone="America/New_York")
    ledger.set_budget(10, now_ns=at(now), period="day")
    hold = ledger.authorize("answer", 10, {}, at(start))
    ledger.book(record(at(start), credits=10), at(start), hold)
    with pytest.raises(BudgetExceeded):
        ledger.authorize("answer", 1, {}, at(end) - 1)
    ledger.release(ledger.authorize("answer", 10, {}, at(end)))  # a new day
    assert (at(end) - at(start)) // (3600 * SECOND) == hours


# --- the CLI ------------------------------------------------------------------------------------


def test_the_cli_sets_time_zones_and_adds_changes_and_lists_budgets(db_url: str) -> None:
    runner = CliRunner()

    def run(*args: str) -> Any:
        return runner.invoke(main, ["wallet", *args[:2], "--db", db_url, *args[2:]])

    created = run("create-tenant", "acme", "--time-zone", "Asia/Tokyo")
    assert created.exit_code == 0, created.output
    assert run("time-zone", "acme").stdout.strip() == "Asia/Tokyo"
    bad = run("create-tenant", "other", "--time-zone", "Mars/Olympus")
    assert bad.exit_code == 2
    assert "time_zone='Mars/Olympus'" in bad.output
    assert run("time-zone", "acme", "Europe/Paris").stdout.strip() == "Europe/Paris"
    assert run("time-zone", "acme", "Europe/Atlantis").exit_code == 2

    added = run("budget", "add", "acme", "1000", "--tag", "department=service", "--hard")
    assert added.exit_code == 0, added.output
    assert "budget-1" in added.stdout
    assert "hard" in added.stdout
    again = run("budget", "add", "acme", "5", "--tag", "department=service")
    assert again.exit_code == 1
    assert "budget budget-1 has these tags and period" in again.output
    assert run("budget", "add", "acme", "5", "--tag", "oops").exit_code == 2
    assert "must be positive" in run("budget", "add", "acme", "0").output
    day = run("budget", "add", "acme", "50", "--period", "day", "--name", "daily")
    assert day.exit_code == 0, day.output
    assert "soft" in day.stdout
    changed = run("budget", "update", "acme", "budget-1", "1500", "--soft")
    assert changed.exit_code == 0, changed.output
    assert "soft, 0 of 1500 credits per month" in changed.stdout
    assert run("budget", "update", "acme", "budget-9", "1").exit_code == 2
    listed = run("budget", "list", "acme").stdout.splitlines()
    assert [line.split(":")[0] for line in listed] == ["budget-1", "budget-2"]
    assert "'daily'" in listed[1]


def test_an_offline_wallet_starts_its_budget_days_in_its_time_zone() -> None:
    clock = [at("2026-01-15T04:59:00+00:00")]
    wallet = OfflineWallet(clock=lambda: clock[0], time_zone="America/New_York")
    try:
        wallet.buy_packs(1)
        wallet.set_budget(20, period="day", hard=True)
        meter = Meter(wallet=wallet, clock=lambda: clock[0])
        with meter.action("answer"):
            pass
        with pytest.raises(BudgetExceeded), meter.action("answer"):
            pytest.fail("the body ran past a hard budget")
        clock[0] = at("2026-01-15T05:00:00+00:00")  # midnight in New York
        with meter.action("answer"):
            pass
        assert [b.spent for b in wallet.budgets()] == [20]
    finally:
        wallet.shutdown()
    with pytest.raises(ConfigurationError) as info:
        OfflineWallet(time_zone="Moon/Base")
    assert info.value.field == "time_zone"
