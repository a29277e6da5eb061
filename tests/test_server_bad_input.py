"""Bad input to the wallet service: a 4xx in constant time that books nothing and slows no one.

Each case runs against a real server on loopback, on SQLite and on PostgreSQL. The numbers are
chosen so that unbounded work on them would take seconds: a Decimal with a huge negative
exponent costs quadratic time when turned into a ratio of ints.
"""

from __future__ import annotations

import itertools
import json
import statistics
import threading
import time
from typing import Any

import httpx
import pytest
from server_fixtures import ADMIN_KEY, ServerProcess, pg_cluster, server

from flexcredits_sdk._records import new_id

__all__ = ["pg_cluster", "server"]

#: The bound on a bad request's answer; the faults it guards against took seconds.
FAST_S = 0.1
_names = itertools.count(1)


def _record(**fields: Any) -> dict[str, Any]:
    return {
        "id": new_id(),
        "action": "answer",
        "action_type": "standard",
        "units": 1,
        "credits": "20",
        "environment": "production",
        "started_at": "2026-05-28T20:26:40Z",
        **fields,
    }


def _records(**fields: Any) -> dict[str, Any]:
    return {"json": {"records": [_record(**fields)]}}


OLD = "1600-01-01T00:00:00Z"
TINY = "1e-5000000"
NUL_TAGS = '{"team\\u0000x": "a"}'

# (method, path, request options, the field the error names)
CASES: dict[str, tuple[str, str, dict[str, Any], str]] = {
    "start before 1677": ("POST", "/v1/records", _records(started_at=OLD), "started_at"),
    "start before 1970": (
        "POST",
        "/v1/records",
        _records(started_at="1969-12-31T23:59:59Z"),
        "started_at",
    ),
    "credits 1e500000": ("POST", "/v1/records", _records(credits="1e500000"), "credits"),
    "credits 1e-5000000": ("POST", "/v1/records", _records(credits=TINY), "credits"),
    "budget 1e500000": ("POST", "/v1/budgets", {"json": {"credits": "1e500000"}}, "credits"),
    "budget 1e-5000000": ("POST", "/v1/budgets", {"json": {"credits": TINY}}, "credits"),
    "watch 1e-5000000": ("POST", "/v1/watches", {"json": {"credits": TINY}}, "credits"),
    "watch percent 1e-5000000": ("POST", "/v1/watches", {"json": {"percent": TINY}}, "percent"),
    "group_by NUL": ("GET", "/v1/usage", {"params": {"group_by": "team\x00x"}}, "group_by"),
    "dashboard tag NUL": ("GET", "/dashboard", {"params": {"tag": "team\x00x"}}, "tag"),
    "records tag NUL": ("GET", "/v1/records", {"params": {"tags": NUL_TAGS}}, "tags"),
}


def _tenant(server: ServerProcess) -> tuple[str, httpx.Client]:
    name = f"bad{next(_names)}"
    key = server.tenant(name)
    server.grant(name, 1_000)
    return name, server.client(key)


def _fast_answer(
    client: httpx.Client, method: str, path: str, options: dict[str, Any]
) -> tuple[httpx.Response, float]:
    """Send a request up to three times; return the answer and the quickest time taken."""
    times = []
    for _ in range(3):
        start = time.perf_counter()
        response = client.request(method, path, **options)
        times.append(time.perf_counter() - start)
        if times[-1] < FAST_S:
            break
    return response, min(times)


def _state(client: httpx.Client) -> dict[str, Any]:
    return {
        path: client.get(path).json()
        for path in ("/v1/records", "/v1/budgets", "/v1/grants", "/v1/alerts")
    } | {"used": client.get("/v1/balance").json()["used"]}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_a_quick_4xx_that_books_nothing(server: ServerProcess, case: str) -> None:
    method, path, options, field = CASES[case]
    _, client = _tenant(server)
    if path == "/v1/usage" or "tag" in field:  # something to group or filter
        booked = client.post("/v1/records", json={"records": [_record(tags={"team": "a"})]})
        assert booked.status_code == 200, booked.text
    before = _state(client)
    response, took = _fast_answer(client, method, path, options)
    assert 400 <= response.status_code < 500, response.text
    assert field in response.text
    assert took < FAST_S, f"{case}: {took:.3f} s"
    assert _state(client) == before
    # The connection is still good for the next request.
    assert client.get("/v1/balance").status_code == 200


def test_a_grant_with_an_unbounded_exponent_is_refused_quickly(server: ServerProcess) -> None:
    name, client = _tenant(server)
    admin = server.client(ADMIN_KEY)
    options = {"params": {"tenant": name}, "json": {"credits": "1e-5000000"}}
    response, took = _fast_answer(admin, "POST", "/v1/grants", options)
    assert response.status_code == 422, response.text
    assert "credits" in response.text
    assert took < FAST_S
    assert len(client.get("/v1/grants").json()["grants"]) == 1


def test_bad_requests_do_not_slow_another_tenant(server: ServerProcess) -> None:
    _, attacker = _tenant(server)
    _, other = _tenant(server)
    bad = [
        ("POST", "/v1/records", _records(credits=TINY)),
        ("POST", "/v1/budgets", {"json": {"credits": TINY}}),
        ("POST", "/v1/records", _records(started_at=OLD)),
    ]
    stop = threading.Event()
    statuses: list[int] = []

    def attack() -> None:
        for method, path, options in itertools.cycle(bad):
            if stop.is_set():
                return
            statuses.append(attacker.request(method, path, **options).status_code)

    def latencies(count: int) -> list[float]:
        took = []
        for _ in range(count):
            start = time.perf_counter()
            assert other.get("/v1/balance").status_code == 200
            took.append(time.perf_counter() - start)
        return took

    quiet = statistics.median(latencies(10))
    thread = threading.Thread(target=attack, daemon=True)
    thread.start()
    try:
        loud = latencies(20)
    finally:
        stop.set()
        thread.join(120)
    assert statuses
    assert all(400 <= s < 500 for s in statuses), statuses
    assert max(loud) < max(1.0, 20 * quiet), (quiet, loud)


@pytest.mark.parametrize("key", ['a"b', "é", "a\\b", "a.b"])
def test_any_tag_key_is_grouped_and_filtered(server: ServerProcess, key: str) -> None:
    _, client = _tenant(server)
    booked = client.post("/v1/records", json={"records": [_record(tags={key: "x"})]})
    assert booked.status_code == 200, booked.text
    rows = client.get("/v1/usage", params={"group_by": key}).json()["rows"]
    assert [row["key"] for row in rows] == [{key: "x"}]
    found = client.get("/v1/records", params={"tags": json.dumps({key: "x"})}).json()["records"]
    assert len(found) == 1
