"""The service prices every record itself, from the tenant's rate card in force at its start.

Against a real server, on SQLite and on PostgreSQL: versions of a card by ``effective_from``,
``PUT``/``GET /v1/rate-card`` with ``ETag``, booking at the service's price, and the records the
service refuses to price (each with its reason, nothing of its batch booked).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
from decimal import Decimal
from typing import Any

import httpx
import pytest
from server_fixtures import ADMIN_KEY, ServerProcess, db_url, pg_cluster, server

from flexcredits_sdk import AsyncHttpWallet, HttpWallet, RateCard, WalletError
from flexcredits_sdk._records import UsageRecord, new_id, ns_to_datetime

__all__ = ["db_url", "pg_cluster", "server"]

T0 = 1_780_000_000 * 10**9  # 2026-05-28, before the tests run
HOUR = 3600 * 10**9
_names = itertools.count(1)

CARD: dict[str, Any] = {
    "name": "acme",
    "action_types": {"standard": {"production": 20, "sandbox": 16}, "custom": {"production": 30}},
}


def record(
    credits: int | Decimal = 20,
    *,
    start_ns: int = T0,
    action_type: str = "standard",
    environment: str = "production",
    action: str = "answer",
    units: int = 1,
    outcome: str = "ok",
) -> UsageRecord:
    return UsageRecord(
        new_id(),
        action,
        action_type,
        units,
        credits,
        environment,
        {},
        None,
        start_ns,
        1_000,
        outcome,  # type: ignore[arg-type]
        "ValueError" if outcome == "error" else None,
    )


def post(client: httpx.Client, records: list[dict[str, Any]]) -> httpx.Response:
    return client.post("/v1/records", json={"records": records})


def tenant(server: ServerProcess) -> tuple[str, httpx.Client]:
    name = f"p{next(_names)}"
    key = server.tenant(name)
    server.grant(name, 100_000)
    return name, server.client(key)


def put_card(
    server: ServerProcess, tenant_name: str, effective_ns: int | None = None, /, **card: Any
) -> httpx.Response:
    body = {**CARD, **card}
    if effective_ns is not None:
        body["effective_from"] = ns_to_datetime(effective_ns).isoformat()
    with server.client(ADMIN_KEY) as admin:
        return admin.put("/v1/rate-card", params={"tenant": tenant_name}, json=body)


def used(client: httpx.Client) -> int | str:
    value: int | str = client.get("/v1/balance").json()["used"]
    return value


def booked(client: httpx.Client) -> dict[str, Any]:
    return {r["id"]: r["credits"] for r in client.get("/v1/records").json()["records"]}


# --- pricing ---------------------------------------------------------------------------------


def test_a_price_change_applies_to_records_by_their_start_time(server: ServerProcess) -> None:
    name, client = tenant(server)
    change = T0 + HOUR
    assert put_card(server, name, T0 - HOUR).status_code == 200
    assert put_card(server, name, change, action_types={"standard": {"production": 25}}).is_success
    before, at, after = (record(start_ns=t) for t in (change - 1, change, change + HOUR))
    # One batch spans the change; each record says what it thinks it costs (20).
    answer = post(client, [r.to_dict() for r in (before, at, after)]).json()
    assert answer["accepted"] == 3
    assert booked(client) == {before.id: 20, at.id: 25, after.id: 25}
    assert used(client) == 70
    results = {r["id"]: r for r in answer["results"]}
    assert "priced" not in results[before.id]
    assert results[at.id]["priced"] == 25
    assert results[at.id]["claimed"] == 20


def test_before_a_tenants_first_card_the_default_card_prices(server: ServerProcess) -> None:
    name, client = tenant(server)
    assert put_card(server, name, T0, action_types={"standard": {"production": 7}}).is_success
    early, late = record(start_ns=T0 - 1), record(start_ns=T0)
    assert post(client, [early.to_dict(), late.to_dict()]).json()["accepted"] == 2
    assert booked(client) == {early.id: 20, late.id: 7}  # Agentforce's 20 before T0


def test_a_claim_of_1_credit_for_a_20_credit_action_is_booked_20(server: ServerProcess) -> None:
    _, client = tenant(server)
    cheap = record(1)
    response = post(client, [cheap.to_dict()])
    assert response.status_code == 200
    result = response.json()["results"][0]
    assert result == {
        "id": cheap.id,
        "status": "accepted",
        "reason": None,
        "priced": 20,
        "claimed": 1,
    }
    assert used(client) == 20
    assert booked(client) == {cheap.id: 20}
    metrics = httpx.get(f"{server.url}/metrics").text
    found = re.search(r"^flexcredits_wallet_repriced_records_total (\S+)$", metrics, re.M)
    assert found is not None
    assert float(found.group(1)) >= 1


def test_units_decimal_prices_and_unbilled_failures(server: ServerProcess) -> None:
    name, client = tenant(server)
    card = {"standard": {"production": "0.5"}}
    assert put_card(server, name, T0, action_types=card, bill_failed=False).is_success
    three, failed = record(0, units=3), record(Decimal("0.5"), outcome="error")
    answer = post(client, [three.to_dict(), failed.to_dict()]).json()
    assert answer["accepted"] == 2
    results = {r["id"]: r for r in answer["results"]}
    assert results[three.id]["priced"] == "1.5"
    assert results[three.id]["claimed"] == 0
    assert results[failed.id]["priced"] == 0
    assert booked(client) == {three.id: "1.5", failed.id: 0}


# --- records the service cannot price ----------------------------------------------------------


def _field(data: dict[str, Any], **changes: Any) -> dict[str, Any]:
    out = {**data, **changes}
    return {k: v for k, v in out.items() if v is not _DROP}


_DROP = object()
_FUTURE_NS = 4_000_000_000 * 10**9  # 2096


def _invalid() -> list[tuple[str, dict[str, Any], str]]:
    base = record().to_dict()
    return [
        ("unknown action type", _field(base, action_type="nonexistent"), "action_type"),
        ("unknown environment", _field(base, environment="marsbase"), "environment"),
        (
            "type not priced there",
            _field(base, action_type="custom", environment="sandbox"),
            "environment",
        ),
        (
            "starts in the future",
            _field(base, start_time_ns=_FUTURE_NS, started_at=_DROP),
            "started_at",
        ),
        (
            "started before 1970",
            _field(base, start_time_ns=_DROP, started_at="1969-12-31T23:59:59Z"),
            "started_at",
        ),
        (
            "ends after 2262",
            _field(base, start_time_ns=2**63 - 10, duration_ns=100, started_at=_DROP),
            "start_time_ns",
        ),
        ("empty id", _field(base, id=""), "id"),
        ("id over 64 characters", _field(base, id="x" * 65), "id"),
        ("units below 1", _field(base, units=0), "units"),
        ("no start time", _field(base, start_time_ns=_DROP, started_at=_DROP), "started_at"),
        ("float credits", _field(base, credits=20.0), "credits"),
        ("non-string tag value", _field(base, tags={"team": 1}), "tags"),
    ]


@pytest.mark.parametrize(("case", "bad", "field"), _invalid(), ids=[c[0] for c in _invalid()])
def test_an_invalid_record_is_rejected_with_its_reason_and_nothing_is_booked(
    server: ServerProcess, case: str, bad: dict[str, Any], field: str
) -> None:
    name, client = tenant(server)
    assert put_card(server, name, T0 - HOUR).is_success
    good = record()
    response = post(client, [good.to_dict(), bad])
    assert response.status_code == 422, response.text
    first, second = response.json()["results"]
    assert first == {"id": good.id, "status": "not_booked", "reason": None}
    assert second["status"] == "rejected"
    assert second["reason"].startswith(field), second["reason"]
    assert used(client) == 0
    assert booked(client) == {}


@pytest.mark.parametrize("bad_id", ["tab\tin id", "new\nline"])
def test_an_id_the_sdk_could_not_have_made_is_rejected(server: ServerProcess, bad_id: str) -> None:
    _, client = tenant(server)
    good = record()
    bad = {**record().to_dict(), "id": bad_id}
    response = post(client, [good.to_dict(), bad])
    assert response.status_code == 422
    assert response.json()["results"][1]["reason"].startswith("id")
    assert used(client) == 0


def test_a_strict_card_refuses_actions_it_does_not_list(server: ServerProcess) -> None:
    name, client = tenant(server)
    strict = {"strict": True, "actions": {"lookup": {"production": 3}}}
    assert put_card(server, name, T0 - HOUR, **strict).is_success
    listed, unlisted = record(action="lookup"), record(action="lookpu")
    answer = post(client, [listed.to_dict(), unlisted.to_dict()]).json()
    assert answer["results"][1]["reason"].startswith("action: 'lookpu' is not priced")
    assert answer["results"][0]["status"] == "not_booked"
    assert post(client, [listed.to_dict()]).json()["results"][0]["priced"] == 3


# --- GET and PUT /v1/rate-card -----------------------------------------------------------------


def test_get_answers_the_card_in_force_with_an_etag_and_304(server: ServerProcess) -> None:
    name, client = tenant(server)
    default = client.get("/v1/rate-card")
    assert default.status_code == 200
    assert default.json()["default"] is True
    assert default.json()["effective_from"] is None
    assert RateCard(**_card_of(default.json())) == RateCard.agentforce()
    assert put_card(server, name, T0).is_success
    first = client.get("/v1/rate-card")
    etag = first.headers["etag"]
    assert etag != default.headers["etag"]
    assert first.json()["name"] == "acme"
    assert first.json()["default"] is False
    assert first.json()["effective_from"] == "2026-05-28T20:26:40Z"
    again = client.get("/v1/rate-card", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag
    assert client.get("/v1/rate-card", headers={"If-None-Match": '"other"'}).status_code == 200
    # A new version: the old tag no longer matches; ?at= still finds the old version.
    assert put_card(server, name, T0 + HOUR, name="acme-2").is_success
    changed = client.get("/v1/rate-card", headers={"If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.json()["name"] == "acme-2"
    old = client.get("/v1/rate-card", params={"at": "2026-05-28T20:30:00Z"})
    assert old.headers["etag"] == etag
    assert old.json()["effective_until"] == "2026-05-28T21:26:40Z"
    before = client.get("/v1/rate-card", params={"at": "2020-01-01T00:00:00Z"}).json()
    assert before["default"] is True
    assert before["effective_until"] == "2026-05-28T20:26:40Z"
    assert client.get("/v1/rate-card", params={"at": "2026-05-28T20:30:00"}).status_code == 422


def _card_of(answer: dict[str, Any]) -> dict[str, Any]:
    return {
        k: v for k, v in answer.items() if k not in ("effective_from", "effective_until", "default")
    }


def test_only_the_admin_key_sets_a_card(server: ServerProcess) -> None:
    name, client = tenant(server)
    refused = client.put("/v1/rate-card", params={"tenant": name}, json=CARD)
    assert refused.status_code == 403
    with server.client() as anonymous:
        assert anonymous.put("/v1/rate-card", params={"tenant": name}, json=CARD).status_code == 403
    assert client.get("/v1/rate-card").json()["default"] is True
    assert put_card(server, name).status_code == 200
    assert client.get("/v1/rate-card").json()["name"] == "acme"
    assert client.get("/v1/rate-card").headers["cache-control"] == "no-cache"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"action_types": {"standard": {"production": 2.5}}}, "action_types.standard.production"),
        (
            {"action_types": {"standard": {"production": "0.0000000001"}}},
            "action_types.standard.production",
        ),
        ({"action_types": {"standard": {"production": -1}}}, "action_types.standard.production"),
        (
            {"action_types": {"standard": {"production": "10000000000"}}},
            "action_types.standard.production",
        ),
        ({"action_types": {}}, "action_types"),
        ({"action_types": _DROP}, "action_types"),
        ({"pack_credits": 0}, "pack_credits"),
        ({"strict": True}, "strict"),
        ({"colour": "blue"}, "colour"),
        ({"effective_from": "2026-05-28T20:30:00"}, "effective_from"),
    ],
)
def test_a_card_with_bad_content_is_refused_naming_the_field(
    server: ServerProcess, change: dict[str, Any], field: str
) -> None:
    name, client = tenant(server)
    body = _field(CARD, **change)
    with server.client(ADMIN_KEY) as admin:
        response = admin.put("/v1/rate-card", params={"tenant": name}, json=body)
    assert response.status_code == 422, response.text
    assert field in response.json()["error"]["message"], response.json()
    assert client.get("/v1/rate-card").json()["default"] is True


def test_a_card_for_no_such_tenant_is_refused(server: ServerProcess) -> None:
    response = put_card(server, "nobody-here")
    assert response.status_code == 422
    assert "nobody-here" in response.json()["error"]["message"]


# --- the HTTP wallet ---------------------------------------------------------------------------


def test_http_wallet_fetches_the_card_and_revalidates_with_the_etag(
    server: ServerProcess, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"p{next(_names)}"
    key = server.tenant(name)
    statuses: list[int] = []
    client = httpx.Client(event_hooks={"response": [lambda r: statuses.append(r.status_code)]})
    wallet = HttpWallet(server.url, key, client=client, outbox_dir=tmp_path, durability="memory")
    try:
        assert wallet.rate_card == RateCard.agentforce()
        assert wallet.rate_card == RateCard.agentforce()  # fresh: no second request
        assert statuses == [200]
        assert wallet.fetch_rate_card() == RateCard.agentforce()
        assert statuses == [200, 304]
        assert put_card(server, name).is_success
        assert wallet.fetch_rate_card().name == "acme"
        assert statuses == [200, 304, 200]
        # A minute later the card is checked again by itself.
        import flexcredits_sdk.wallets._http_base as base

        monkeypatch.setattr(base, "RATE_CARD_MAX_AGE", 0.0)
        assert wallet.rate_card.name == "acme"
        assert statuses == [200, 304, 200, 304]
    finally:
        wallet.shutdown(timeout=5)
        client.close()


def test_http_wallet_keeps_its_card_when_the_service_cannot_be_asked(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import flexcredits_sdk.wallets._http_base as base

    answers = [httpx.Response(200, json={**CARD, "effective_from": None, "default": False})]

    def handler(request: httpx.Request) -> httpx.Response:
        if not answers:
            raise httpx.ConnectError("connection refused", request=request)
        return answers.pop()

    client = httpx.Client(transport=httpx.MockTransport(handler))
    wallet = HttpWallet("http://127.0.0.1:9", "k", client=client, durability="memory")
    try:
        assert wallet.rate_card.name == "acme"
        monkeypatch.setattr(base, "RATE_CARD_MAX_AGE", 0.0)
        assert wallet.rate_card.name == "acme"  # the card fetched before, with a warning
        with pytest.raises(WalletError, match="cannot reach"):
            wallet.fetch_rate_card()
        fresh = HttpWallet("http://127.0.0.1:9", "k", client=client, durability="memory")
        with pytest.raises(WalletError, match="cannot reach"):
            fresh.rate_card  # noqa: B018
        fresh.shutdown(timeout=0)
    finally:
        wallet.shutdown(timeout=0)
        client.close()


def test_async_http_wallet_fetches_the_card(server: ServerProcess, tmp_path: Any) -> None:
    name = f"p{next(_names)}"
    key = server.tenant(name)
    assert put_card(server, name, action_types={"standard": {"production": 5}}).is_success

    async def main() -> None:
        wallet = AsyncHttpWallet(server.url, key, outbox_dir=tmp_path, durability="memory")
        try:
            with pytest.raises(WalletError, match="fetch_rate_card"):
                wallet.rate_card  # noqa: B018
            card = await wallet.fetch_rate_card()
            assert card.price("standard", "production") == 5
            assert wallet.rate_card is card
            assert await wallet.fetch_rate_card() is card  # 304: the same card
        finally:
            await wallet.ashutdown(timeout=5)

    asyncio.run(main())


# --- the command line and the schema -----------------------------------------------------------


def test_cli_sets_and_shows_a_tenants_card(db_url: str, tmp_path: Any) -> None:
    from click.testing import CliRunner

    from flexcredits_sdk.cli import main

    runner = CliRunner()
    assert runner.invoke(main, ["wallet", "create-tenant", "--db", db_url, "acme"]).exit_code == 0
    shown = runner.invoke(main, ["wallet", "rate-card", "show", "--db", db_url, "acme"])
    assert shown.exit_code == 0, shown.output
    assert RateCard.loads(shown.stdout) == RateCard.agentforce()
    assert "the default card" in shown.stderr
    card = tmp_path / "card.toml"
    RateCard(**CARD).dump(card)
    args = ["wallet", "rate-card", "set", "--db", db_url, "acme", str(card)]
    done = runner.invoke(main, [*args, "--effective-from", "2026-05-28T20:26:40"])
    assert done.exit_code == 0, done.output
    assert "from 2026-05-28T20:26:40+00:00" in done.stdout
    later = tmp_path / "later.json"
    RateCard(**{**CARD, "name": "acme-2"}).dump(later)
    args[-1] = str(later)
    assert (
        runner.invoke(main, [*args, "--effective-from", "2026-06-01T00:00:00+02:00"]).exit_code == 0
    )
    show = ["wallet", "rate-card", "show", "--db", db_url, "acme"]
    now = runner.invoke(main, show)
    assert RateCard.loads(now.stdout).name == "acme-2"
    then = runner.invoke(main, [*show, "--at", "2026-05-30T00:00:00Z"])
    assert RateCard.loads(then.stdout) == RateCard(**CARD)
    assert "until 2026-05-31T22:00:00+00:00" in then.stderr
    # Pricing follows the card the command set.
    from flexcredits_sdk.server._database import WalletStore

    store = WalletStore(db_url)
    try:
        pricer = store.cards.pricer(store.tenant("acme").id)
        assert pricer.price(record(action_type="custom", start_ns=T0)) == 30
    finally:
        store.close()


def test_cli_refuses_a_bad_card_naming_the_field(db_url: str, tmp_path: Any) -> None:
    from click.testing import CliRunner

    from flexcredits_sdk.cli import main

    runner = CliRunner()
    assert runner.invoke(main, ["wallet", "create-tenant", "--db", db_url, "acme"]).exit_code == 0
    bad = tmp_path / "card.json"
    bad.write_text(json.dumps({"action_types": {"standard": {"production": "0.0000000001"}}}))
    result = runner.invoke(main, ["wallet", "rate-card", "set", "--db", db_url, "acme", str(bad)])
    assert result.exit_code == 2
    assert "action_types.standard.production" in result.output
    float_price = tmp_path / "float.json"
    float_price.write_text(json.dumps({"action_types": {"standard": {"production": 0.5}}}))
    result = runner.invoke(
        main, ["wallet", "rate-card", "set", "--db", db_url, "acme", str(float_price)]
    )
    assert result.exit_code == 2
    assert "float.json" in result.output
    assert "action_types.standard.production" in result.output
    when = ["--effective-from", "yesterday"]
    card = tmp_path / "good.json"
    RateCard(**CARD).dump(card)
    result = runner.invoke(
        main, ["wallet", "rate-card", "set", "--db", db_url, "acme", str(card), *when]
    )
    assert result.exit_code == 2
    assert "'yesterday' is not an ISO 8601 time" in result.output
    result = runner.invoke(
        main, ["wallet", "rate-card", "set", "--db", db_url, "nobody", str(card)]
    )
    assert result.exit_code == 2
    assert "nobody" in result.output


def test_a_version_2_database_migrates_to_rate_cards(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlalchemy as sa

    from flexcredits_sdk.server import _schema
    from flexcredits_sdk.server._db import make_engine

    engine = make_engine(db_url)
    try:
        version_2 = sa.MetaData()  # the tables of version 2: no rate cards
        for table in _schema.metadata.sorted_tables:
            if table.name != "rate_cards":
                table.to_metadata(version_2)
        monkeypatch.setattr(_schema, "MIGRATIONS", _schema.MIGRATIONS[:2])
        monkeypatch.setattr(_schema, "metadata", version_2)
        assert _schema.migrate(engine) == 2
        with engine.connect() as conn:
            assert not sa.inspect(conn).has_table("rate_cards")
        monkeypatch.undo()
        latest = _schema.MIGRATIONS[-1][0]
        assert _schema.migrate(engine) == latest
        with engine.connect() as conn:
            assert sa.inspect(conn).has_table("rate_cards")
            assert _schema.schema_version(conn) == latest
    finally:
        engine.dispose()


def test_a_version_set_by_another_process_prices_the_next_batch(db_url: str) -> None:
    from flexcredits_sdk.server._database import WalletStore

    one, other = WalletStore(db_url), WalletStore(db_url)
    try:
        one.migrate()
        one.create_tenant("acme")
        tenant = one.tenant("acme").id
        late = record(start_ns=T0 + HOUR)
        assert one.cards.pricer(tenant).price(late) == 20  # the default card, now cached
        assert one.cards.schedule(tenant) is one.cards.schedule(tenant)  # unchanged: reused
        other.cards.put(tenant, RateCard(**CARD), T0)
        other.cards.put(tenant, RateCard(action_types={"standard": {"production": 9}}), T0 + 1)
        assert one.cards.pricer(tenant).price(late) == 9
        # The same start again replaces that version.
        other.cards.put(tenant, RateCard(action_types={"standard": {"production": 8}}), T0 + 1)
        assert one.cards.pricer(tenant).price(late) == 8
        assert one.cards.pricer(tenant).price(record(start_ns=T0)) == 20  # acme's card
        assert [v.effective_ns for v in one.cards.versions(tenant)] == [T0, T0 + 1]
    finally:
        one.close()
        other.close()
