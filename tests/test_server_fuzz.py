"""The service's OpenAPI document (the one the package ships), fuzzed with schemathesis against
a real server.

Every operation gets generated requests under one tenant's key while another tenant's data sits
in the same database: no answer may be a 5xx or fail its documented schema, none may show the
other tenant's data, and the other tenant's wallet must be unchanged afterwards.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from importlib.resources import files
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance
from server_fixtures import (
    BACKENDS,
    ServerProcess,
    new_database,
    pg_cluster,
    running_server,
)

from flexcredits_sdk._records import UsageRecord, new_id

__all__ = ["pg_cluster"]

MARKER = "victim-secret-7f3a"
Fuzzed = tuple[ServerProcess, str, str]


@pytest.fixture(scope="module", params=BACKENDS)
def fuzzed(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fuzzed]:
    db = new_database(request, request.param, tmp_path_factory.mktemp("fuzz"))
    with running_server(db) as server:
        victim = server.tenant("victim")
        server.grant("victim", 1000)
        record = UsageRecord(
            new_id(), MARKER, "standard", 1, 20, "production", {MARKER: MARKER}, MARKER, 10**18, 1
        )
        with server.client(victim) as client:
            answer = client.post("/v1/records", json={"records": [record.to_dict()]})
            assert answer.json()["accepted"] == 1
        yield server, server.tenant("fuzzer"), victim


def test_no_operation_fails_or_leaks(fuzzed: Fuzzed) -> None:
    server, key, _ = fuzzed
    api = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    headers = {"Authorization": f"Bearer {key}"}
    operations = [result.ok() for result in api.get_all_operations()]
    assert len(operations) >= 18

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
        def fuzz(case: Any) -> None:
            response = case.call_and_validate(
                headers=headers,
                checks=[not_a_server_error, response_schema_conformance],
                timeout=30,
            )
            assert MARKER not in response.text
            assert "Traceback" not in response.text

        fuzz()


def test_the_other_tenant_is_untouched(fuzzed: Fuzzed) -> None:
    server, _, victim = fuzzed
    with server.client(victim) as client:
        balance = client.get("/v1/balance").json()
        records = client.get("/v1/records").json()["records"]
    assert (balance["granted"], balance["used"]) == (1000, 20)
    assert [r["action"] for r in records] == [MARKER]


def test_the_document_fuzzed_is_the_one_the_package_ships(fuzzed: Fuzzed) -> None:
    server, _, _ = fuzzed
    with server.client() as client:
        document = client.get("/openapi.json").json()
    shipped = files("flexcredits_sdk").joinpath("openapi.json").read_text(encoding="utf-8")
    assert document == json.loads(shipped)
    body = document["paths"]["/v1/records"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"$ref": "#/components/schemas/IngestRequest"}
    assert "UsageRecordModel" in document["components"]["schemas"]
