"""The wallet service's HTTP API against a real server, on SQLite and on PostgreSQL."""

from __future__ import annotations

import datetime as _dt
import gzip
import itertools
import json
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from server_fixtures import ADMIN_KEY, ServerProcess, pg_cluster, server

from flexcredits_sdk import OfflineWallet, UsageRow
from flexcredits_sdk._records import UsageRecord, new_id

__all__ = ["pg_cluster", "server"]

T0 = 1_780_000_000 * 10**9
_names = itertools.count(1)


def record(
    credits: int | Decimal = 20,
    *,
    environment: str = "production",
    tags: dict[str, str] | None = None,
    action: str = "answer",
    start_ns: int = T0,
    rid: str | None = None,
    conversation_id: str | None = None,
    units: int = 1,
) -> UsageRecord:
    return UsageRecord(
        rid or new_id(),
        action,
        "standard",
        units,
        credits,
        environment,
        tags or {},
        conversation_id,
        start_ns,
        1_000_000,
    )


def post(client: httpx.Client, records: list[UsageRecord]) -> httpx.Response:
    return client.post("/v1/records", json={"records": [r.to_dict() for r in records]})


def tenant(server: ServerProcess, credits: int = 100_000) -> tuple[str, httpx.Client]:
    name = f"t{next(_names)}"
    key = server.tenant(name)
    if credits:
        server.grant(name, credits, source="purchase")
    return name, server.client(key)


def test_health_and_readiness(server: ServerProcess) -> None:
    with server.client() as anon:
        assert anon.get("/healthz").json() == {"status": "ok"}
        assert anon.get("/readyz").json() == {"status": "ready"}


def test_ingestion_books_each_id_once(server: ServerProcess) -> None:
    _, client = tenant(server)
    batch = [record() for _ in range(50)]
    first = post(client, batch).json()
    assert (first["accepted"], first["duplicates"]) == (50, 0)
    again = post(client, [*batch[:10], record(), batch[0]]).json()
    assert [r["status"] for r in again["results"]] == ["duplicate"] * 10 + ["accepted", "duplicate"]
    assert client.get("/v1/balance").json()["used"] == 51 * 20


def test_prefer_return_minimal_lists_only_what_was_not_settled(server: ServerProcess) -> None:
    _, client = tenant(server)
    batch = [record() for _ in range(20)]
    minimal = {"Prefer": "respond-async, return=minimal"}
    body = {"records": [r.to_dict() for r in batch]}
    first = client.post("/v1/records", json=body, headers=minimal)
    assert first.headers["Preference-Applied"] == "return=minimal"
    assert first.json() == {"results": [], "accepted": 20, "duplicates": 0, "rejected": 0}
    again = client.post("/v1/records", json={"records": body["records"][:5]}, headers=minimal)
    assert (again.json()["results"], again.json()["duplicates"]) == ([], 5)
    bad = record().to_dict()
    bad["units"] = 0
    refused = client.post(
        "/v1/records", json={"records": [bad, *body["records"][:2]]}, headers=minimal
    )
    assert refused.status_code == 422
    assert [r["status"] for r in refused.json()["results"]] == [
        "rejected",
        "not_booked",
        "not_booked",
    ]
    full = post(client, batch[:3])
    assert "Preference-Applied" not in full.headers
    assert [r["status"] for r in full.json()["results"]] == ["duplicate"] * 3
    assert client.get("/v1/balance").json()["used"] == 20 * 20


def test_invalid_records_are_named_and_nothing_is_booked(server: ServerProcess) -> None:
    _, client = tenant(server)
    good, bad = record(), record().to_dict()
    bad["units"] = 0
    fraction = record(Decimal("0.0000000001")).to_dict()
    response = client.post("/v1/records", json={"records": [good.to_dict(), bad, fraction]})
    assert response.status_code == 422
    results = response.json()["results"]
    assert [r["status"] for r in results] == ["not_booked", "rejected", "rejected"]
    assert results[1]["reason"].startswith("units:")
    assert "9 decimal places" in results[2]["reason"]
    assert response.json()["rejected"] == 2
    assert client.get("/v1/balance").json()["used"] == 0


@pytest.mark.parametrize(
    ("body", "code"),
    [(b"not json", "malformed_batch"), (b'{"records": []}', "malformed_batch")],
)
def test_malformed_batches_are_error_responses(
    server: ServerProcess, body: bytes, code: str
) -> None:
    _, client = tenant(server, 0)
    response = client.post("/v1/records", content=body)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code


def test_gzip_bodies_and_the_body_cap(server: ServerProcess) -> None:
    _, client = tenant(server)
    batch = [record() for _ in range(20)]
    raw = httpx.Request("POST", "/", json={"records": [r.to_dict() for r in batch]}).read()
    zipped = client.post(
        "/v1/records", content=gzip.compress(raw), headers={"Content-Encoding": "gzip"}
    )
    assert zipped.json()["accepted"] == 20
    huge = client.post("/v1/records", content=b"x" * (17 * 1024 * 1024))
    assert huge.status_code == 413
    assert huge.json()["error"]["code"] == "body_too_large"
    bomb = gzip.compress(b" " * (17 * 1024 * 1024))
    inflated = client.post("/v1/records", content=bomb, headers={"Content-Encoding": "gzip"})
    assert inflated.status_code == 413


def test_keys_are_required_and_scoped(server: ServerProcess) -> None:
    name_a, a = tenant(server)
    name_b, b = tenant(server)
    shared_id = new_id()
    assert post(a, [record(rid=shared_id, tags={"team": "a"})]).json()["accepted"] == 1
    # B books the same id in its own wallet: ids are unique per tenant, not across tenants.
    assert (
        post(b, [record(rid=shared_id, credits=16, environment="sandbox")]).json()["accepted"] == 1
    )
    assert a.get("/v1/balance").json()["used"] == 20
    assert b.get("/v1/balance").json()["used"] == 16
    assert [r["tags"] for r in a.get("/v1/records").json()["records"]] == [{"team": "a"}]
    assert [r["credits"] for r in b.get("/v1/records").json()["records"]] == [16]
    assert b.get("/v1/usage", params={"group_by": "team"}).json()["rows"][0]["key"] == {
        "team": None
    }
    # A tenant's key cannot grant, not even to itself, nor create tenants.
    denied = a.post("/v1/grants", params={"tenant": name_a}, json={"credits": 5})
    assert denied.status_code == 403
    assert a.post("/v1/tenants", json={"name": "x"}).status_code == 403
    with server.client() as anon, server.client("fck_" + "x" * 43) as forged:
        for c in (anon, forged):
            assert c.get("/v1/balance").status_code == 401
            assert post(c, [record()]).status_code == 401
            assert c.get("/v1/balance").json()["error"]["code"] == "unauthorized"
    assert name_b != name_a


def test_admin_creates_tenants_and_keys(server: ServerProcess) -> None:
    name, client = tenant(server, 0)
    with server.client(ADMIN_KEY) as admin:
        assert admin.post("/v1/tenants", json={"name": name}).status_code == 422
        assert admin.post("/v1/tenants", json={"name": "bad name!"}).status_code == 422
        second = admin.post(f"/v1/tenants/{name}/keys").json()["api_key"]
        assert admin.get("/v1/balance").status_code == 401  # the admin key is no tenant key
    with server.client(second) as other:
        assert other.get("/v1/balance").json()["credits"] == 0
    assert client.get("/v1/balance").json()["credits"] == 0


def test_grants_burn_by_priority_and_expiry(server: ServerProcess) -> None:
    name, client = tenant(server, 0)
    soon = (_dt.datetime.now(_dt.UTC) + _dt.timedelta(days=1)).isoformat()
    server.grant(name, 100, source="promotion", priority=0)
    server.grant(name, 100, source="seat", expires_at=soon)
    server.grant(name, 100, source="purchase")
    post(client, [record(160, start_ns=T0, units=8)])
    grants = {g["source"]: g["remaining"] for g in client.get("/v1/grants").json()["grants"]}
    assert grants == {"promotion": 0, "seat": 40, "purchase": 100}
    balance = client.get("/v1/balance").json()
    assert (balance["credits"], balance["granted"], balance["used"]) == (140, 300, 160)


def test_overdraft_is_owed_and_settled_by_the_next_grant(server: ServerProcess) -> None:
    name, client = tenant(server, 10)
    post(client, [record(20)])
    assert client.get("/v1/balance").json()["owed"] == 10
    server.grant(name, 100)
    balance = client.get("/v1/balance").json()
    assert (balance["credits"], balance["owed"]) == (90, 0)


def test_usage_matches_the_offline_wallet(server: ServerProcess) -> None:
    name, client = tenant(server)
    card = {"action_types": {"standard": {"production": 20, "sandbox": "16.5"}}}
    with server.client(ADMIN_KEY) as admin:
        set_card = admin.put(
            "/v1/rate-card",
            params={"tenant": name},
            json={**card, "effective_from": "1970-01-01T00:00:00Z"},
        )
        assert set_card.status_code == 200, set_card.text
    offline = OfflineWallet()
    offline.grant(100_000)
    hour = 3_600 * 10**9
    records = [
        record(
            Decimal("16.5") if i % 4 == 0 else 20,
            environment="sandbox" if i % 4 == 0 else "production",
            tags={"team": f"t{i % 3}"} if i % 5 else {},
            action=f"a{i % 2}",
            start_ns=T0 + i * 7 * hour,
            conversation_id=f"c{i % 4}",
        )
        for i in range(40)
    ]
    post(client, records)
    for r in records:
        offline.book(r)
    cases: list[dict[str, Any]] = [
        {},
        {"group_by": ["team"]},
        {"group_by": ["environment", "action"], "bucket": "day"},
        {"group_by": ["conversation_id"], "bucket": "month"},
        {"group_by": ["team"], "environment": "sandbox", "bucket": "hour"},
    ]
    for case in cases:
        remote = client.get("/v1/usage", params=case).json()["rows"]
        local = offline.usage(
            case.get("group_by", ()), environment=case.get("environment"), bucket=case.get("bucket")
        )
        assert [UsageRow.model_validate(row) for row in remote] == local, case
    balance = client.get("/v1/balance").json()
    assert Decimal(balance["used"]) == offline.balance().used


def test_any_printable_tag_key_can_be_grouped_and_filtered(server: ServerProcess) -> None:
    _, client = tenant(server)
    keys = ['say "hi"', "a.b", "$x", "[0]", "it's"]
    post(client, [record(tags={key: f"v{i}" for i, key in enumerate(keys)})])
    for i, key in enumerate(keys):
        rows = client.get("/v1/usage", params={"group_by": key}).json()["rows"]
        assert rows[0]["key"] == {key: f"v{i}"}
        found = client.get("/v1/records", params={"tags": json.dumps({key: f"v{i}"})})
        assert len(found.json()["records"]) == 1


def test_records_can_be_filtered(server: ServerProcess) -> None:
    _, client = tenant(server)
    batch = [record(tags={"team": "a" if i % 2 else "b"}, start_ns=T0 + i) for i in range(10)]
    post(client, batch)
    params = {"tags": '{"team":"a"}', "limit": 3}
    found = client.get("/v1/records", params=params).json()["records"]
    assert [r["id"] for r in found] == [r.id for r in batch[1::2][:3]]
    assert len(client.get("/v1/records").json()["records"]) == 10
    assert client.get("/v1/records").json()["next_cursor"] is None
    assert client.get("/v1/records", params={"tags": "nonsense"}).status_code == 422
    assert client.get("/v1/records", params={"colour": "red"}).status_code == 422


def test_records_page_in_time_order_with_a_cursor(server: ServerProcess, tmp_path: Path) -> None:
    _, client = tenant(server)
    # Out of time order, with ties of start time that the id breaks.
    batch = [record(start_ns=T0 + (i * 7919) % 25 * 1000, rid=f"r-{i:04}") for i in range(2_500)]
    for i in range(0, len(batch), 1000):
        assert post(client, batch[i : i + 1000]).status_code == 200
    expected = [r.id for r in sorted(batch, key=lambda r: (r.start_time_ns, r.id))]

    pages, cursor = [], None
    while True:
        params: dict[str, Any] = {"limit": 1000} | ({"cursor": cursor} if cursor else {})
        answer = client.get("/v1/records", params=params).json()
        pages.append([r["id"] for r in answer["records"]])
        cursor = answer["next_cursor"]
        if cursor is None:
            break
    assert [len(p) for p in pages] == [1000, 1000, 500]
    assert [rid for p in pages for rid in p] == expected

    # Without a limit: one page of the default size, never everything.
    first = client.get("/v1/records").json()
    assert len(first["records"]) == 1000
    assert first["next_cursor"] is not None
    for bad in ({"limit": 10_001}, {"limit": 0}, {"cursor": "not-a-cursor"}, {"cursor": ""}):
        answer = client.get("/v1/records", params=bad)
        assert answer.status_code == 422, bad
        assert next(iter(bad)) in answer.json()["error"]["message"]

    # The HTTP wallet follows the pages, and goes on from where a stream stood.
    from flexcredits_sdk import HttpWallet

    key = client.headers["Authorization"].split()[1]
    wallet = HttpWallet(server.url, key, outbox_dir=tmp_path)
    try:
        stream = wallet.records(page_size=700, limit=1_600)
        head = [r.id for r in stream]
        rest = [r.id for r in wallet.records(cursor=stream.cursor, page_size=10_000)]
        assert head + rest == expected
        assert len(head) == 1_600
        assert [r.id for r in wallet.records(limit=0)] == []
    finally:
        wallet.shutdown()


def test_low_balance_and_budget_alerts_are_listed(server: ServerProcess) -> None:
    _, client = tenant(server, 1000)
    assert client.post("/v1/watches", json={"percent": "50"}).status_code == 200
    assert client.post("/v1/watches", json={}).status_code == 422
    budgets = client.post("/v1/budgets", json={"credits": 100, "tags": {"team": "a"}}).json()
    assert budgets["budgets"][0]["limit"] == 100
    now = time.time_ns()  # budgets count this month's spending
    post(client, [record(60, tags={"team": "a"}, start_ns=now + i, units=3) for i in range(9)])
    alerts = client.get("/v1/alerts").json()["alerts"]
    assert sorted(a["kind"] for a in alerts) == ["budget", "low_balance"]
    assert client.get("/v1/budgets").json()["budgets"][0]["spent"] == 540


def test_errors_never_carry_stack_traces(server: ServerProcess) -> None:
    _, client = tenant(server, 0)
    for response in (
        client.get("/v1/usage", params={"bucket": "week"}),
        client.get("/v1/records", params={"limit": -1}),
        client.get("/v1/nowhere"),
        client.post("/v1/budgets", content=b"{"),
    ):
        assert response.status_code in (400, 404, 422)
        assert set(response.json()) == {"error"}
        assert "Traceback" not in response.text


def test_credits_too_large_to_store_are_refused_by_name(server: ServerProcess) -> None:
    name, client = tenant(server, 0)
    huge = [10**30, "1e40", 5.766190474270456e161]
    for credits in huge:
        budget = client.post("/v1/budgets", json={"credits": credits})
        assert budget.status_code == 422, budget.text
        assert "credits" in budget.text
        watch = client.post("/v1/watches", json={"credits": credits})
        assert watch.status_code == 422, watch.text
    with server.client(ADMIN_KEY) as admin:
        for credits in huge:
            grant = admin.post("/v1/grants", params={"tenant": name}, json={"credits": credits})
            assert grant.status_code == 422, grant.text
    assert client.get("/v1/budgets").json()["budgets"] == []  # nothing half-made
    assert client.get("/v1/balance").json()["credits"] == 0
