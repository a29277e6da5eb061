"""Holds on the wallet service: reserved before actions run, refused with the figures, settled
by the records that carry their id, released, expired; on SQLite and on PostgreSQL."""

from __future__ import annotations

import datetime as _dt
import itertools
import time
from typing import Any

import httpx
import pytest
from server_fixtures import ServerProcess, pg_cluster, server

from flexcredits_sdk._records import UsageRecord, datetime_to_ns, new_id

__all__ = ["pg_cluster", "server"]

_names = itertools.count(1)


def tenant(server: ServerProcess, credits: int = 100, **body: Any) -> httpx.Client:
    name = f"h{next(_names)}"
    key = server.tenant(name, **body)
    if credits:
        server.grant(name, credits)
    return server.client(key)


def record(hold_id: str | None = None, credits: int = 20, **tags: str) -> dict[str, Any]:
    now = datetime_to_ns(_dt.datetime.now(_dt.UTC))
    data = UsageRecord(
        new_id(), "answer", "standard", 1, credits, "production", tags, None, now, 1_000
    ).to_dict()
    if hold_id is not None:
        data["hold_id"] = hold_id
    return data


def hold(client: httpx.Client, credits: Any, **body: Any) -> httpx.Response:
    return client.post("/v1/holds", json={"credits": credits, **body})


def balance(client: httpx.Client) -> tuple[int, int]:
    data = client.get("/v1/balance").json()
    return data["credits"], data["held"]


def test_a_hold_reserves_and_a_second_past_the_balance_is_refused_with_the_figures(
    server: ServerProcess,
) -> None:
    client = tenant(server, overdraft="deny")
    first = hold(client, 60, id="lease-1", tags={"department": "service"})
    assert first.status_code == 201, first.text
    taken = first.json()
    assert (taken["id"], taken["credits"], taken["remaining"], taken["status"]) == (
        "lease-1",
        60,
        60,
        "active",
    )
    assert balance(client) == (100, 60)

    refused = hold(client, 60)
    assert refused.status_code == 402
    answer = refused.json()
    assert answer["error"]["code"] == "insufficient_credits"
    assert answer["refusal"] == {"credits": 60, "available": 40, "held": 60, "budget": None}
    assert "holds reserve 60" in answer["error"]["message"]
    assert balance(client) == (100, 60)  # a refusal reserves nothing

    assert hold(client, 40).status_code == 201  # what is left still fits, exactly


def test_a_hold_id_is_an_idempotency_key(server: ServerProcess) -> None:
    client = tenant(server, overdraft="deny")
    assert hold(client, 30, id="h-1", tags={"a": "b"}).status_code == 201
    again = hold(client, 30, id="h-1", tags={"a": "b"})
    assert again.status_code == 200
    assert again.json()["remaining"] == 30
    assert balance(client) == (100, 30)  # reserved once
    other = hold(client, 31, id="h-1", tags={"a": "b"})
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "hold_conflict"
    made = hold(client, 10).json()["id"]  # without an id, the service makes one
    assert made
    assert made != "h-1"


def test_records_settle_against_their_hold_once_and_release_gives_back_the_rest(
    server: ServerProcess,
) -> None:
    client = tenant(server, overdraft="deny")
    hold_id = hold(client, 100).json()["id"]
    batch = [record(hold_id) for _ in range(3)]
    assert client.post("/v1/records", json={"records": batch}).status_code == 200
    assert client.post("/v1/records", json={"records": batch[:1]}).json()["duplicates"] == 1
    assert client.get(f"/v1/holds/{hold_id}").json()["remaining"] == 40
    assert balance(client) == (40, 40)  # 60 spent; the other 40 still reserved
    assert hold(client, 20).status_code == 402

    released = client.delete(f"/v1/holds/{hold_id}")
    assert released.status_code == 200
    assert (released.json()["status"], released.json()["remaining"]) == ("released", 0)
    assert balance(client) == (40, 0)
    assert client.delete(f"/v1/holds/{hold_id}").json()["status"] == "released"  # idempotent
    assert balance(client) == (40, 0)
    assert client.get("/v1/holds").json()["holds"] == []
    # A record of a released hold still books (its action ran): it has nothing to settle.
    assert client.post("/v1/records", json={"records": [record(hold_id)]}).status_code == 200
    assert balance(client) == (20, 0)


def test_a_record_costing_more_than_its_hold_has_left_settles_what_is_left(
    server: ServerProcess,
) -> None:
    client = tenant(server, overdraft="deny")
    hold_id = hold(client, 10).json()["id"]
    assert client.post("/v1/records", json={"records": [record(hold_id)]}).status_code == 200
    assert client.get(f"/v1/holds/{hold_id}").json()["remaining"] == 0
    assert balance(client) == (80, 0)


def test_a_hard_budget_refuses_holds_of_its_tags_only_and_counts_the_refusals(
    server: ServerProcess,
) -> None:
    client = tenant(server, credits=10_000)
    budget = client.post(
        "/v1/budgets", json={"credits": 1_000, "tags": {"department": "service"}, "hard": True}
    ).json()["budgets"][0]
    service = {"department": "service", "agent": "triage"}
    assert hold(client, 1_000, tags=service).status_code == 201
    refused = hold(client, 20, tags=service)
    assert refused.status_code == 402
    answer = refused.json()
    assert answer["error"]["code"] == "budget_exceeded"
    assert answer["refusal"]["budget"]["id"] == budget["id"]
    assert answer["refusal"]["available"] == 0
    assert hold(client, 5_000, tags={"department": "sales"}).status_code == 201
    policy = client.get("/v1/spend-control").json()
    assert policy["overdraft"] == "allow"
    assert [b["id"] for b in policy["hard_budgets"]] == [budget["id"]]
    held = {b["id"]: b["held"] for b in client.get("/v1/budgets").json()["budgets"]}
    assert held[budget["id"]] == 1_000
    page = client.get("/dashboard")
    assert page.status_code == 200
    assert '<td class="num">1 (20 credits)</td>' in page.text  # the budget refused one hold
    assert "Holds refused for want of credits (overdraft denied): 0." in page.text


def test_an_expired_hold_gives_its_credit_back_by_itself(server: ServerProcess) -> None:
    client = tenant(server, overdraft="deny")
    hold_id = hold(client, 100, ttl=0.2).json()["id"]
    assert hold(client, 20).status_code == 402
    deadline = time.monotonic() + 10
    while balance(client)[1] and time.monotonic() < deadline:  # the sweeper's next look
        time.sleep(0.1)
    assert balance(client) == (100, 0)
    assert client.get(f"/v1/holds/{hold_id}").json()["status"] == "expired"
    assert hold(client, 100).status_code == 201


def test_a_record_naming_no_hold_is_rejected_and_its_batch_not_booked(
    server: ServerProcess,
) -> None:
    client = tenant(server)
    answer = client.post("/v1/records", json={"records": [record(), record("no-such-hold")]})
    assert answer.status_code == 422
    results = answer.json()["results"]
    assert [r["status"] for r in results] == ["not_booked", "rejected"]
    assert results[1]["reason"] == "hold_id: the tenant has no hold 'no-such-hold'"
    assert balance(client) == (100, 0)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"credits": 0}, "credits"),
        ({"credits": -5}, "credits"),
        ({"credits": 1.5}, "credits"),
        ({"credits": 20, "ttl": 0}, "ttl"),
        ({"credits": 20, "ttl": 3601}, "ttl"),
        ({"credits": 20, "tags": {"a": 1}}, "tags"),
        ({"credits": 20, "id": "x" * 65}, "id"),
        ({"credits": 20, "id": "a\nb"}, "id"),
        ({"credits": 20, "extra": 1}, "extra"),
    ],
)
def test_a_bad_hold_request_gets_a_422_naming_the_field(
    server: ServerProcess, body: dict[str, Any], field: str
) -> None:
    client = tenant(server)
    answer = client.post("/v1/holds", json=body)
    assert answer.status_code == 422, answer.text
    assert field in answer.json()["error"]["message"]
    assert balance(client) == (100, 0)


def test_unknown_holds_are_404_and_holds_need_a_key(server: ServerProcess) -> None:
    client = tenant(server)
    assert client.delete("/v1/holds/nope").status_code == 404
    assert client.get("/v1/holds/nope").status_code == 404
    assert server.client().post("/v1/holds", json={"credits": 1}).status_code == 401


def test_holds_are_counted_in_the_metrics(server: ServerProcess) -> None:
    client = tenant(server, overdraft="deny")
    assert hold(client, 100).status_code == 201
    assert hold(client, 1).status_code == 402
    text = server.client().get("/metrics").text
    granted = [line for line in text.splitlines() if 'holds_total{result="granted"}' in line]
    refused = [
        line for line in text.splitlines() if 'holds_total{result="refused_balance"}' in line
    ]
    assert granted
    assert float(granted[0].split()[-1]) >= 1
    assert refused
    assert float(refused[0].split()[-1]) >= 1


def test_a_refusal_says_the_most_a_hold_could_have_now(server: ServerProcess) -> None:
    client = tenant(server, overdraft="deny")
    answer = client.post(
        "/v1/budgets", json={"credits": 60, "tags": {"department": "service"}, "hard": True}
    )
    assert answer.status_code == 200, answer.text
    service = {"department": "service"}
    over_budget = hold(client, 80, tags=service).json()
    assert over_budget["error"]["code"] == "budget_exceeded"
    assert over_budget["refusal"]["available"] == 60  # the budget's room, under the balance's
    over_balance = hold(client, 200, tags=service).json()
    assert over_balance["error"]["code"] == "insufficient_credits"
    assert over_balance["refusal"]["available"] == 60  # the budget would refuse 100 too
    assert hold(client, 200, tags={"department": "sales"}).json()["refusal"]["available"] == 100
    assert hold(client, 60, tags=service).status_code == 201  # exactly the room it named
