"""The one OpenAPI document: shipped, served, true to the service, and usable by a generator.

A client generated from the shipped ``openapi.json`` by openapi-python-client runs the whole
protocol, admin calls included, against a real service on loopback (SQLite and PostgreSQL); the
record schema refuses exactly the records the service refuses, each with its reason.
"""

from __future__ import annotations

import gzip
import importlib
import json
import subprocess
import sys
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import httpx
import jsonschema_rs
import pytest
from server_fixtures import (
    ADMIN_KEY,
    BACKENDS,
    ServerProcess,
    new_database,
    pg_cluster,
    running_server,
)

from flexcredits_sdk._export._openapi import OPENAPI_PATH, REGENERATE
from flexcredits_sdk._records import UsageRecord, new_id
from flexcredits_sdk.server._app import shipped_openapi

__all__ = ["pg_cluster"]

DOCUMENT: dict[str, Any] = json.loads(OPENAPI_PATH.read_text(encoding="utf-8"))
T0 = 1_780_000_000 * 10**9
#: Keywords that JSON Schema does not have, which pydantic or FastAPI could leave behind.
NOT_JSON_SCHEMA = {"gt", "ge", "lt", "le", "decimal_places", "max_digits"}


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            yield path, method, operation


def validator(model: str) -> Any:
    schema = {"$ref": f"#/components/schemas/{model}", "components": DOCUMENT["components"]}
    return jsonschema_rs.Draft202012Validator(schema, validate_formats=True)


def record(**changes: Any) -> dict[str, Any]:
    data = UsageRecord(
        new_id(), "answer", "standard", 1, 20, "production", {"team": "support"}, None, T0, 1_000
    ).to_dict()
    data.update(changes)
    return data


# --- the document itself -------------------------------------------------------------------


def test_the_shipped_document_is_up_to_date() -> None:
    assert OPENAPI_PATH.read_text(encoding="utf-8") == shipped_openapi(), (
        f"{OPENAPI_PATH.name} is not what the service's routes describe; regenerate it: "
        f"{REGENERATE}"
    )


def test_every_operation_of_the_service_is_described() -> None:
    described = {(path, method) for path, method, _ in operations(DOCUMENT)}
    for path, method in [
        ("/v1/records", "post"),
        ("/v1/records", "get"),
        ("/v1/balance", "get"),
        ("/v1/usage", "get"),
        ("/v1/grants", "get"),
        ("/v1/grants", "post"),
        ("/v1/alerts", "get"),
        ("/v1/budgets", "get"),
        ("/v1/budgets", "post"),
        ("/v1/watches", "post"),
        ("/v1/webhook", "put"),
        ("/v1/webhook", "delete"),
        ("/v1/tenants", "post"),
        ("/v1/tenants/{name}/keys", "post"),
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
        ("/dashboard", "get"),
        ("/v1/spend-control", "get"),
        ("/v1/holds", "post"),
        ("/v1/holds", "get"),
        ("/v1/holds/{hold_id}", "get"),
        ("/v1/holds/{hold_id}", "delete"),
    ]:
        assert (path, method) in described
    ids = [operation["operationId"] for _, _, operation in operations(DOCUMENT)]
    assert len(ids) == len(set(ids))
    assert {"ingestRecords", "listRecords", "getBalance", "addGrant", "createTenant"} <= set(ids)


def test_each_operation_declares_its_key_and_its_errors() -> None:
    for path, method, operation in operations(DOCUMENT):
        where = f"{method.upper()} {path}"
        keys = {name for requirement in operation["security"] for name in requirement}
        responses = operation["responses"]
        if path.startswith("/v1/"):
            assert keys in ({"tenantKey", "tenantBasic"}, {"adminKey"}), where
        if "tenantKey" in keys:
            assert "401" in responses, where
        if "adminKey" in keys:
            assert "403" in responses, where
        if operation.get("parameters") or "requestBody" in operation:
            assert "422" in responses, where
        if "requestBody" in operation:
            assert "413" in responses, where
    assert DOCUMENT["paths"]["/healthz"]["get"]["security"] == []
    schemes = DOCUMENT["components"]["securitySchemes"]
    assert {name: scheme["scheme"] for name, scheme in schemes.items()} == {
        "tenantKey": "bearer",
        "tenantBasic": "basic",
        "adminKey": "bearer",
    }


def test_reads_and_grants_declare_their_422_as_an_error_answer() -> None:
    error = {"$ref": "#/components/schemas/ErrorResponse"}
    for path, method in [("/v1/records", "get"), ("/v1/usage", "get"), ("/v1/grants", "post")]:
        answer = DOCUMENT["paths"][path][method]["responses"]["422"]
        assert answer["content"]["application/json"]["schema"] == error, (path, method)
    assert "HTTPValidationError" not in DOCUMENT["components"]["schemas"]


def test_grants_need_the_tenant_parameter_and_positive_credits() -> None:
    grant = DOCUMENT["paths"]["/v1/grants"]["post"]
    (tenant,) = [p for p in grant["parameters"] if p["name"] == "tenant"]
    assert (tenant["in"], tenant["required"]) == ("query", True)
    check = validator("GrantRequest")
    for credits in (-5, 0, "-5", "0", "0.000", 1.5):
        assert not check.is_valid({"credits": credits}), credits
    for credits in (5, "0.5", "12"):
        assert check.is_valid({"credits": credits}), credits


def test_no_keyword_is_outside_json_schema() -> None:
    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            assert not NOT_JSON_SCHEMA & set(node) or where.endswith("properties"), where
            for key, value in node.items():
                walk(value, f"{where}/{key}")
        elif isinstance(node, list):
            for index, value in enumerate(node):
                walk(value, f"{where}/{index}")

    walk(DOCUMENT, "#")


def test_gzip_is_the_body_s_encoding_and_headers_are_declared() -> None:
    ingest = DOCUMENT["paths"]["/v1/records"]["post"]
    names = {p["name"] for p in ingest["parameters"]}
    assert names == {"Idempotency-Key", "Prefer"}
    assert all(p["in"] == "header" for p in ingest["parameters"])
    body = ingest["requestBody"]
    assert body["x-content-encoding"] == ["identity", "gzip"]
    assert "Content-Encoding: gzip" in body["description"]
    assert {"200", "400", "401", "413", "415", "422"} <= set(ingest["responses"])
    assert "Preference-Applied" in ingest["responses"]["200"]["headers"]


def test_the_records_tags_filter_is_a_json_object_of_strings() -> None:
    (tags,) = [
        p for p in DOCUMENT["paths"]["/v1/records"]["get"]["parameters"] if p["name"] == "tags"
    ]
    (text, _) = tags["schema"]["anyOf"]
    assert text["contentMediaType"] == "application/json"
    assert text["contentSchema"] == {"type": "object", "additionalProperties": {"type": "string"}}
    assert "every one" in tags["description"]


#: Records the service refuses, the change that makes each, and the field its reason names.
INVALID = [
    ("no start time", {"started_at": None, "start_time_ns": None}, "started_at"),
    ("a float for credits", {"credits": 20.5}, "credits"),
    ("an exponent for credits", {"credits": 2.5e-1}, "credits"),
    ("negative credits", {"credits": "-1"}, "credits"),
    ("a number as a tag value", {"tags": {"team": 5}}, "tags"),
    ("too many tags", {"tags": {f"k{i}": "v" for i in range(33)}}, "tags"),
    ("an action over 200 characters", {"action": "a" * 201}, "action"),
    ("a blank action", {"action": "   "}, "action"),
    ("an empty id", {"id": ""}, "id"),
    ("an id over 64 characters", {"id": "x" * 65}, "id"),
    ("an id that is not printable", {"id": "bell\x07"}, "id"),
    ("no units", {"units": 0}, "units"),
    ("negative units", {"units": -1}, "units"),
    ("units as a float", {"units": 1.5}, "units"),
]


@pytest.mark.parametrize(("change", "field"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_the_record_schema_refuses_what_the_service_refuses(
    change: dict[str, Any], field: str
) -> None:
    check = validator("UsageRecordModel")
    assert check.is_valid(record())
    invalid = record(**change)
    if change == {"started_at": None, "start_time_ns": None}:
        assert not check.is_valid({k: v for k, v in invalid.items() if v is not None})
    assert not check.is_valid(invalid)


# --- against a real service ----------------------------------------------------------------


@pytest.fixture(scope="module", params=BACKENDS)
def service(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    db = new_database(request, request.param, tmp_path_factory.mktemp("openapi"))
    env = {"FLEXCREDITS_WEBHOOK_ALLOW_PRIVATE": "1"}
    with running_server(db, env=env) as server:
        yield server


def test_the_service_serves_the_shipped_document(service: ServerProcess) -> None:
    with service.client() as client:
        served = client.get("/openapi.json")
    assert served.status_code == 200
    assert served.json() == DOCUMENT


@pytest.mark.parametrize(("change", "field"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_the_service_refuses_each_invalid_record_with_its_reason(
    service: ServerProcess, change: dict[str, Any], field: str
) -> None:
    key = service.tenant(f"refused-{new_id()[-12:]}")
    bad = record(**change)
    if field == "started_at":
        del bad["started_at"], bad["start_time_ns"]
    good = record()
    with service.client(key) as client:
        answer = client.post("/v1/records", json={"records": [good, bad]})
        balance = client.get("/v1/balance").json()
    assert answer.status_code == 422, answer.text
    assert validator("IngestResponse").is_valid(answer.json())
    rejected, not_booked = answer.json()["results"][1], answer.json()["results"][0]
    assert rejected["status"] == "rejected"
    assert rejected["reason"].startswith(field), rejected["reason"]
    assert not_booked["status"] == "not_booked"
    assert balance["used"] == 0


# --- a generated client ----------------------------------------------------------------------


class GzipBodies(httpx.BaseTransport):
    """Sends every ingestion body gzip-compressed, as the document's body encoding allows."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.compressed = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and request.url.path == "/v1/records":
            headers = {k: v for k, v in request.headers.items() if k.lower() != "content-length"}
            headers["Content-Encoding"] = "gzip"
            body = gzip.compress(request.read())
            request = httpx.Request(
                request.method,
                request.url,
                headers=headers,
                content=body,
                extensions=request.extensions,
            )
            self.compressed += 1
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    """The client openapi-python-client generates from the shipped document, imported."""
    root = tmp_path_factory.mktemp("generated")
    config = root / "config.yaml"
    config.write_text("post_hooks: []\n", encoding="utf-8")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "openapi_python_client",
            "generate",
            "--path",
            str(OPENAPI_PATH),
            "--meta",
            "none",
            "--config",
            str(config),
            "--output-path",
            str(root / "wallet_client"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Warning" not in done.stdout + done.stderr, done.stdout + done.stderr
    sys.path.insert(0, str(root))
    try:
        yield importlib.import_module("wallet_client")
    finally:
        sys.path.remove(str(root))
        for name in [
            n for n in sys.modules if n == "wallet_client" or n.startswith("wallet_client.")
        ]:
            del sys.modules[name]


def test_a_generated_client_runs_the_protocol(
    generated: ModuleType, service: ServerProcess
) -> None:
    def api(name: str) -> Any:
        return importlib.import_module(f"wallet_client.api.default.{name}")

    # ``credits`` is a builtin's name, so the generator calls the field ``credits_``.
    models = importlib.import_module("wallet_client.models")
    unset = importlib.import_module("wallet_client.types").UNSET
    client_module = importlib.import_module("wallet_client.client")
    url = service.url
    name = f"gen-{new_id()[-12:]}"

    with client_module.AuthenticatedClient(base_url=url, token=ADMIN_KEY) as admin:
        created = api("create_tenant").sync(client=admin, body=models.TenantRequest(name=name))
        assert isinstance(created, models.TenantResponse)
        second = api("create_key").sync(client=admin, name=name)
        assert isinstance(second, models.TenantResponse)
        assert second.api_key != created.api_key
        grant = api("add_grant").sync(
            client=admin, body=models.GrantRequest(credits_=1000, source="purchase"), tenant=name
        )
        assert isinstance(grant, models.GrantInfo)
        assert (grant.credits_, grant.remaining) == (1000, 1000)
        refused = api("add_grant").sync_detailed(
            client=admin, body=models.GrantRequest(credits_=-5), tenant=name
        )
        assert refused.status_code == 422
        assert isinstance(refused.parsed, models.ErrorResponse)
        assert "credits" in refused.parsed.error.message

    gzipped = GzipBodies()
    tenant = client_module.AuthenticatedClient(base_url=url, token=created.api_key)
    zipped = client_module.AuthenticatedClient(
        base_url=url, token=second.api_key, httpx_args={"transport": gzipped}
    )
    with tenant, zipped:
        budgets = api("set_budget").sync(
            client=tenant,
            body=models.BudgetRequest(
                credits_=100,
                tags=models.BudgetRequestTags.from_dict({"team": "support"}),
                period=None,
            ),
        )
        assert isinstance(budgets, models.BudgetsResponse)
        watch = api("add_watch").sync(client=tenant, body=models.WatchRequest(credits_=900))
        assert isinstance(watch, models.WatchResponse)

        plain = [record(start_time_ns=T0 + i) for i in range(5)]
        answer = api("ingest_records").sync_detailed(
            client=tenant,
            body=models.IngestRequest(
                records=[models.UsageRecordModel.from_dict(r) for r in plain]
            ),
            idempotency_key=new_id(),
        )
        assert answer.status_code == 200, answer.content
        assert (answer.parsed.accepted, len(answer.parsed.results)) == (5, 5)

        many = [record(start_time_ns=T0 + 100 + i, tags={"team": "ops"}) for i in range(250)]
        answer = api("ingest_records").sync_detailed(
            client=zipped,
            body=models.IngestRequest(records=[models.UsageRecordModel.from_dict(r) for r in many]),
            prefer="return=minimal",
        )
        assert answer.status_code == 200, answer.content
        assert (answer.parsed.accepted, answer.parsed.results) == (250, [])
        assert answer.headers["preference-applied"] == "return=minimal"
        assert gzipped.compressed == 1

        invalid = record(units=0)
        answer = api("ingest_records").sync_detailed(
            client=tenant,
            body=models.IngestRequest(
                records=[models.UsageRecordModel.from_dict(r) for r in (record(), invalid)]
            ),
        )
        assert answer.status_code == 422
        assert isinstance(answer.parsed, models.IngestResponse)
        statuses = [
            (r.status.value, r.reason and r.reason.split(":")[0]) for r in answer.parsed.results
        ]
        assert statuses == [("not_booked", None), ("rejected", "units")]

        balance = api("get_balance").sync(client=tenant)
        assert isinstance(balance, models.Balance)
        assert (balance.granted, balance.used, balance.credits_) == (1000, 255 * 20, 1000 - 5100)

        usage = api("get_usage").sync(client=tenant, group_by=["team"])
        by_team = {row.key["team"]: row.credits_ for row in usage.rows}
        assert by_team == {"support": 100, "ops": 5000}

        seen: list[str] = []
        cursor: Any = None
        while True:
            page = api("list_records").sync(client=zipped, limit=100, cursor=cursor or unset)
            seen += [r.id for r in page.records]
            cursor = page.next_cursor
            if not cursor:
                break
        assert seen == [r["id"] for r in plain + many]
        support = api("list_records").sync(client=tenant, tags=json.dumps({"team": "support"}))
        assert [r.id for r in support.records] == [r["id"] for r in plain]
        bad_filter = api("list_records").sync_detailed(client=tenant, tags="not json")
        assert bad_filter.status_code == 422
        assert isinstance(bad_filter.parsed, models.ErrorResponse)

        (budget,) = api("list_budgets").sync(client=tenant).budgets
        assert (budget.limit, budget.spent) == (100, 100)
        alerts = api("list_alerts").sync(client=tenant, limit=10).alerts
        assert "low_balance" in {alert.kind.value for alert in alerts}
        assert any(alert.watch_id == watch.id for alert in alerts)

        hook = api("set_webhook").sync(
            client=tenant, body=models.WebhookRequest(url="http://127.0.0.1:9/hook")
        )
        assert isinstance(hook, models.WebhookResponse)
        assert hook.secret.startswith("whsec_")
        assert api("delete_webhook").sync_detailed(client=tenant).status_code == 204

        policy = api("get_spend_control").sync(client=tenant)
        assert isinstance(policy, models.SpendControl)
        assert (policy.overdraft.value, policy.hard_budgets) == ("allow", [])
        taken = api("take_hold").sync_detailed(
            client=tenant, body=models.HoldRequest(credits_=60, id="hold-1", ttl=30)
        )
        assert taken.status_code == 201, taken.content
        assert (taken.parsed.id, taken.parsed.remaining) == ("hold-1", 60)
        settled = record(start_time_ns=T0 + 1_000)
        answer = api("ingest_records").sync_detailed(
            client=tenant,
            body=models.IngestRequest(
                records=[models.UsageRecordModel.from_dict({**settled, "hold_id": "hold-1"})]
            ),
        )
        assert answer.status_code == 200, answer.content
        assert api("get_hold").sync(client=tenant, hold_id="hold-1").remaining == 40
        assert [h.id for h in api("list_holds").sync(client=tenant).holds] == ["hold-1"]
        conflict = api("take_hold").sync_detailed(
            client=tenant, body=models.HoldRequest(credits_=61, id="hold-1")
        )
        assert conflict.status_code == 409
        assert isinstance(conflict.parsed, models.ErrorResponse)
        released = api("release_hold").sync(client=tenant, hold_id="hold-1")
        assert (released.status.value, released.remaining) == ("released", 0)

        page = api("dashboard").sync_detailed(client=tenant)
        assert page.status_code == 200
        assert name in page.content.decode()

        forbidden = api("create_tenant").sync_detailed(
            client=tenant, body=models.TenantRequest(name=f"{name}-x")
        )
        assert forbidden.status_code == 403
        assert isinstance(forbidden.parsed, models.ErrorResponse)

    with client_module.Client(base_url=url) as anonymous:
        assert api("health").sync(client=anonymous).status.value == "ok"
        assert api("ready").sync(client=anonymous).status.value == "ready"
        metrics = api("metrics").sync_detailed(client=anonymous)
        assert metrics.status_code == 200
        assert b"flexcredits" in metrics.content
    with client_module.AuthenticatedClient(base_url=url, token="wrong-key") as stranger:
        unknown = api("get_balance").sync_detailed(client=stranger)
        assert unknown.status_code == 401
        assert isinstance(unknown.parsed, models.ErrorResponse)
