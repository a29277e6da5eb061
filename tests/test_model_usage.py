"""Model usage on records: the tokens of the model calls made during an action, priced from the
rate card's ``models``, kept by every wallet and repriced by the wallet service."""

from __future__ import annotations

import itertools
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from server_fixtures import ADMIN_KEY, ServerProcess, db_url, pg_cluster, server

import flexcredits_sdk as fc
from flexcredits_sdk._export._outbox import encode
from flexcredits_sdk.integrations import record_model_usage

__all__ = ["db_url", "pg_cluster", "server"]

_names = itertools.count(1)

CARD: dict[str, Any] = {
    "name": "tokens",
    "action_types": {"standard": {"production": 20}},
    "models": {
        "big": {"input": "3", "output": "15"},
        "small": {"input": "0.15", "output": "0.6"},
    },
}


def _meter(card: dict[str, Any] = CARD) -> tuple[fc.Meter, fc.OfflineWallet]:
    rate_card = fc.RateCard(**card)
    wallet = fc.OfflineWallet(rate_card=rate_card)
    return fc.Meter(rate_card=rate_card, wallet=wallet), wallet


def test_tokens_are_summed_per_model_and_priced_exactly() -> None:
    meter, wallet = _meter()
    with meter.action("answer") as act:
        act.add_model_usage("big", input_tokens=1_200, output_tokens=300)
        assert record_model_usage("big", input_tokens=800, output_tokens=100)
        assert record_model_usage("small", input_tokens=10_000)
        assert record_model_usage("unpriced", output_tokens=7)
        assert act.model_usage == {"big": (2_000, 400), "small": (10_000, 0), "unpriced": (0, 7)}
    (record,) = wallet.records()
    assert record.credits == 20  # the platform's charge is unchanged
    assert record.model_usage == (
        fc.ModelUsage("big", 2_000, 400, Decimal("0.012")),  # (2000*3 + 400*15) / 1e6
        fc.ModelUsage("small", 10_000, 0, Decimal("0.0015")),
        fc.ModelUsage("unpriced", 0, 7, None),
    )
    assert record.to_dict()["model_usage"][0] == {
        "model": "big",
        "input_tokens": 2_000,
        "output_tokens": 400,
        "cost": "0.012",
    }


def test_an_action_without_model_calls_has_no_usage_and_outside_an_action_nothing_is_taken() -> (
    None
):
    meter, wallet = _meter()
    assert record_model_usage("big", input_tokens=5) is False
    with meter.action("answer"):
        pass
    (record,) = wallet.records()
    assert record.model_usage == ()
    assert "model_usage" not in json.loads(encode(record))


def test_usage_goes_to_the_action_named_even_from_outside_it() -> None:
    meter, wallet = _meter()
    with meter.action("outer") as outer, meter.action("inner"):
        record_model_usage("big", input_tokens=1, action=outer)
    by_name = {r.action: r for r in wallet.records()}
    assert by_name["inner"].model_usage == ()
    assert by_name["outer"].model_usage == (fc.ModelUsage("big", 1, 0, Decimal("0.000003")),)


def test_a_record_with_model_usage_goes_over_the_wire_and_back_unchanged() -> None:
    meter, _ = _meter()
    with meter.action("answer") as act:
        act.add_model_usage("big", input_tokens=3, output_tokens=4)
    record = act.record
    assert record is not None
    text = encode(record)
    assert fc.UsageRecord.from_dict(json.loads(text)) == record
    with_hold = json.loads(encode((*record, "hold-1")))
    assert with_hold["hold_id"] == "hold-1"
    assert with_hold["model_usage"] == [record.model_usage[0].to_dict()]


@pytest.mark.parametrize(
    ("call", "field", "reason"),
    [
        ({"model": ""}, "model", "must not be empty"),
        ({"model": 7}, "model", "must be a string"),
        ({"model": "m\n"}, "model", "control characters"),
        ({"model": "m" * 201}, "model", "at most 200"),
        ({"input_tokens": -1}, "input_tokens", "from 0 to"),
        ({"output_tokens": 2**53 + 1}, "output_tokens", "from 0 to"),
        ({"input_tokens": 1.5}, "input_tokens", "must be an int"),
        ({"output_tokens": True}, "output_tokens", "must be an int"),
    ],
)
def test_bad_model_usage_is_refused_naming_the_field(
    call: dict[str, Any], field: str, reason: str
) -> None:
    meter, wallet = _meter()
    args = {"model": "big", "input_tokens": 1, "output_tokens": 1, **call}
    with meter.action("answer") as act:
        with pytest.raises(fc.ConfigurationError) as info:
            act.add_model_usage(args.pop("model"), **args)
        assert info.value.field == field
        assert reason in str(info.value)
        assert act.model_usage == {}
    assert [r.model_usage for r in wallet.records()] == [()]  # the action itself is booked


def test_one_action_names_at_most_16_models() -> None:
    meter, _ = _meter()
    with meter.action("answer") as act:
        for i in range(16):
            act.add_model_usage(f"m{i}", input_tokens=1)
        act.add_model_usage("m0", input_tokens=1)  # a model it has: summed
        with pytest.raises(fc.ConfigurationError, match="at most 16"):
            act.add_model_usage("m16", input_tokens=1)
    assert act.record is not None
    assert len(act.record.model_usage) == 16
    assert act.record.model_usage[0].input_tokens == 2


@pytest.mark.parametrize(
    ("models", "field"),
    [
        ({"m": {"input": 0.5, "output": "1"}}, "models.m.input"),
        ({"m": {"input": "-1", "output": "1"}}, "models.m.input"),
        ({"m": {"input": "1"}}, "models.m.output"),
        ({"m": {"input": "1", "output": "1", "cached": "1"}}, "models.m.cached"),
        ({"": {"input": "1", "output": "1"}}, "models"),
    ],
)
def test_a_rate_card_with_bad_model_prices_is_refused(models: dict[str, Any], field: str) -> None:
    with pytest.raises(fc.RateCardError) as info:
        fc.RateCard(action_types={"standard": {"production": 20}}, models=models)
    assert info.value.field.startswith(field)


def test_model_prices_survive_json_and_toml(tmp_path: Path) -> None:
    card = fc.RateCard(**CARD)
    for suffix in ("json", "toml"):
        path = tmp_path / f"card.{suffix}"
        card.dump(path)
        assert fc.RateCard.load(path) == card
    assert card.model_cost("big", 1_000_000, 1_000_000) == Decimal(18)
    assert card.model_cost("nope", 1, 1) is None


def test_the_service_keeps_model_usage_and_prices_it_from_the_tenants_card(
    server: ServerProcess, tmp_path: Path
) -> None:
    name = f"mu{next(_names)}"
    key = server.tenant(name)
    server.grant(name, 10_000)
    with server.client(ADMIN_KEY) as admin:
        assert admin.put("/v1/rate-card", params={"tenant": name}, json=CARD).is_success
    # The client's card prices "big" at ten times the tenant's: the service books its own cost.
    client_card = {**CARD, "models": {"big": {"input": "30", "output": "150"}}}
    rate_card = fc.RateCard(**client_card)
    wallet = fc.HttpWallet(server.url, key, outbox_dir=tmp_path, durability="memory")
    try:
        meter = fc.Meter(rate_card=rate_card, wallet=wallet)
        with meter.action("answer") as act:
            act.add_model_usage("big", input_tokens=2_000, output_tokens=400)
            act.add_model_usage("unpriced", input_tokens=5)
        with meter.action("answer"):
            pass
        assert act.record is not None
        assert act.record.model_usage[0].cost == Decimal("0.12")  # what the client thought
        assert wallet.flush(timeout=10)
        booked = {r.id: r for r in wallet.records()}
    finally:
        wallet.shutdown(timeout=5)
    assert len(booked) == 2
    assert booked[act.record.id].model_usage == (
        fc.ModelUsage("big", 2_000, 400, Decimal("0.012")),
        fc.ModelUsage("unpriced", 5, 0, None),
    )
    assert [r.model_usage for r in booked.values() if r.id != act.record.id] == [()]


def test_the_service_rejects_bad_model_usage_with_its_reason(server: ServerProcess) -> None:
    name = f"mu{next(_names)}"
    key = server.tenant(name)
    server.grant(name, 10_000)
    good = fc.UsageRecord(
        fc.new_id(), "answer", "standard", 1, 20, "production", {}, None, 10**18, 1
    ).to_dict()
    bad = {**good, "id": fc.new_id(), "model_usage": [{"model": "m", "input_tokens": -3}]}
    client: httpx.Client
    with server.client(key) as client:
        answer = client.post("/v1/records", json={"records": [good, bad]})
        assert answer.status_code == 422, answer.text
        text = answer.text
        assert "model_usage" in text
        assert "input_tokens" in text
        assert client.get("/v1/balance").json()["used"] in (0, "0")
