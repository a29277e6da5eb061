"""Pricing models: presets, files, validation and monthly bills."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

import flexcredits_sdk as fc
from flexcredits_sdk import planning
from flexcredits_sdk.planning import (
    Allotment,
    CreditPlan,
    PerConversation,
    PerResolution,
    PerTicket,
    Tier,
)

ROOT = Path(__file__).resolve().parent.parent


def _plan(**kwargs: object) -> CreditPlan:
    card = fc.RateCard(action_types={"standard": {"production": 20}}, credit_price="0.01")
    return CreditPlan(name="plan", rate_card=card, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", sorted(planning.PRESETS))
def test_every_preset_cites_a_source_and_a_date(name: str) -> None:
    model = planning.preset(name)
    assert model.name == name
    assert model.source
    doc = planning.PRESETS[name].__doc__ or ""
    assert "Source:" in doc
    assert any(year in doc for year in ("2024", "2025", "2026"))


def test_agentforce_preset_prices_production_and_sandbox() -> None:
    plan = planning.preset("agentforce")
    assert isinstance(plan, CreditPlan)
    assert plan.credits_for("lookup", "standard", "production") == 20
    assert plan.credits_for("lookup", "custom", "sandbox") == 16
    assert plan.list_price == Decimal("0.005")


def test_copilot_studio_rates() -> None:
    plan = planning.preset("copilot-studio")
    assert isinstance(plan, CreditPlan)
    rates = {
        kind: plan.credits_for(kind, kind, "production")
        for kind in (
            "classic_answer",
            "generative_answer",
            "agent_action",
            "tenant_graph_grounding",
            "agent_flow_action",
        )
    }
    assert rates == {
        "classic_answer": 1,
        "generative_answer": 2,
        "agent_action": 5,
        "tenant_graph_grounding": 10,
        "agent_flow_action": Decimal("0.13"),
    }
    assert plan.list_price == Decimal("0.01")
    packs = planning.preset("copilot-studio-packs")
    assert isinstance(packs, CreditPlan)
    # 30,000 credits: the pack's 25,000 for $200, then 5,000 at $0.01.
    assert packs.bill_month(30_000, 0, {}) == (Decimal(250), 5_000)
    # An idle month still pays for its pack; its credits expire unused.
    assert packs.bill_month(0, 1, {}) == (Decimal(200), 0)


def test_flat_presets() -> None:
    assert planning.preset("per-conversation") == PerConversation(
        name="per-conversation",
        description="Agentforce, $2.00 per conversation",
        source="salesforce.com/agentforce/pricing (2024-09-12, 2025-05-15)",
        price=Decimal("2.00"),
    )
    resolution = planning.preset("per-resolution")
    assert isinstance(resolution, PerResolution)
    assert resolution.price == Decimal("0.99")
    ticket = planning.preset("per-ticket")
    assert isinstance(ticket, PerTicket)
    assert (ticket.price, ticket.monthly_cap) == (Decimal("0.40"), Decimal(2000))


def test_unpriced_action_is_an_error_naming_it() -> None:
    plan = planning.preset("agentforce")
    assert isinstance(plan, CreditPlan)
    with pytest.raises(planning.UnpricedAction) as info:
        plan.credits_for("book_flight", "premium", "production")
    assert info.value.action == "book_flight"
    assert info.value.model == "agentforce"
    assert "book_flight" in str(info.value)
    assert isinstance(info.value, fc.ConfigurationError)
    assert isinstance(info.value, LookupError)
    with pytest.raises(planning.UnpricedAction, match="staging"):
        plan.credits_for("lookup", "standard", "staging")


def test_fractional_rates_accrue_and_are_charged_in_whole_credits() -> None:
    card = fc.RateCard(action_types={"flow": {"production": "0.13"}}, credit_price="0.01")
    exact = CreditPlan(name="exact", rate_card=card)
    per_action = CreditPlan(name="per-action", rate_card=card, rounding="per_action")
    per_month = CreditPlan(name="per-month", rate_card=card, rounding="per_month")
    assert per_action.credits_for("f", "flow", "production") == 1
    used = Decimal("0.13") * 100  # 100 flow actions: 13 credits
    assert exact.bill_month(used, 0, {}) == (Decimal("0.13"), Decimal("13.00"))
    assert per_month.bill_month(Decimal("0.13") * 101, 0, {}) == (Decimal("0.14"), 14)


def test_seat_licences_grants_and_annual_allotments_burn_soonest_expiring_first() -> None:
    plan = _plan(
        allotments=(
            Allotment(name="seat", credits=1_000, price=Decimal(30), quantity=3),
            Allotment(name="annual", credits=10_000, price=Decimal(100), every="year"),
            Allotment(name="promotion", credits=5_000, every="once"),
        )
    )
    pools: dict[str, int | Decimal] = {}
    # Month 0: 3 seats cover 3,000; the annual pool 10,000; promotion untouched.
    assert plan.bill_month(13_000, 0, pools) == (Decimal(190), 0)
    assert pools == {"year": 0, "once": 5_000}
    # Month 1: seats 3,000, then the promotion's 5,000, then 2,000 bought at $0.01.
    assert plan.bill_month(10_000, 1, pools) == (Decimal(90) + Decimal(20), 2_000)
    # Month 12: a new contract year refills the annual pool (and bills it again).
    assert plan.bill_month(3_000, 12, pools) == (Decimal(190), 0)
    assert pools["year"] == 10_000


def test_volume_tiers_are_graduated() -> None:
    plan = _plan(
        tiers=(
            Tier(up_to=1_000, price=Decimal("0.01")),
            Tier(up_to=5_000, price=Decimal("0.008")),
            Tier(price=Decimal("0.005")),
        )
    )
    assert plan.list_price == Decimal("0.01")
    assert plan.bill_month(500, 0, {}) == (Decimal("5.00"), 500)
    # 1,000 at 0.01 + 4,000 at 0.008 + 1,000 at 0.005
    assert plan.bill_month(6_000, 0, {})[0] == Decimal("10") + Decimal("32") + Decimal("5")


@pytest.mark.parametrize(
    ("tiers", "message"),
    [
        ((Tier(up_to=10, price=Decimal(1)),), "last tier"),
        ((Tier(price=Decimal(1)), Tier(price=Decimal(1))), "only the last"),
        (
            (
                Tier(up_to=10, price=Decimal(1)),
                Tier(up_to=5, price=Decimal(1)),
                Tier(price=Decimal(1)),
            ),
            "must be above",
        ),
    ],
)
def test_bad_tiers_are_refused(tiers: tuple[Tier, ...], message: str) -> None:
    with pytest.raises(fc.ConfigurationError, match=message):
        _plan(tiers=tiers)


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"kind": "per_conversation", "name": "x", "price": 2.0}, "price"),
        ({"kind": "per_conversation", "name": "x", "price": "-1"}, "price"),
        ({"kind": "per_conversation", "name": "", "price": "1"}, "name"),
        ({"kind": "per_minute", "name": "x", "price": "1"}, "per_minute"),
        ({"kind": "per_ticket", "name": "x", "price": "1", "cap": "5"}, "cap"),
        ({"kind": "credits", "name": "x", "rate_card": {"action_types": {}}}, "rate_card"),
        (
            {
                "kind": "credits",
                "name": "x",
                "rate_card": {"action_types": {"s": {"production": 1}}},
                "allotments": [{"name": "seat", "credits": -5}],
            },
            "allotments.0.credits",
        ),
    ],
)
def test_bad_model_files_name_the_field(data: dict[str, object], field: str) -> None:
    import json

    with pytest.raises(fc.ConfigurationError) as info:
        planning.loads_model(json.dumps(data))
    assert field in str(info.value)


def test_bad_text_and_paths() -> None:
    with pytest.raises(fc.ConfigurationError, match="not valid JSON"):
        planning.loads_model("{")
    with pytest.raises(fc.ConfigurationError, match="not valid TOML"):
        planning.loads_model("= 1", "toml")
    with pytest.raises(fc.ConfigurationError, match="JSON object"):
        planning.loads_model("[1]")
    with pytest.raises(fc.ConfigurationError, match=r"\.json or \.toml"):
        planning.load_model("model.yaml")
    with pytest.raises(fc.ConfigurationError, match="preset"):
        planning.preset("nope")
    with pytest.raises(fc.ConfigurationError, match="neither a preset"):
        planning.resolve_model("nope")


@pytest.mark.parametrize("name", sorted(planning.PRESETS))
def test_presets_round_trip_through_files(name: str, tmp_path: Path) -> None:
    model = planning.preset(name)
    path = tmp_path / f"{name}.json"
    planning.dump_model(model, path)
    assert planning.load_model(path) == model
    assert planning.resolve_model(path) == model
    assert planning.resolve_model(model) is model
    with pytest.raises(fc.ConfigurationError, match="json"):
        planning.dump_model(model, tmp_path / "model.toml")


def test_example_toml_model_loads() -> None:
    plan = planning.load_model(ROOT / "examples" / "pricing" / "team-plan.toml")
    assert isinstance(plan, CreditPlan)
    assert plan.rounding == "per_month"
    assert [a.name for a in plan.allotments] == ["seat", "launch promotion"]
    assert plan.tiers[-1].up_to is None
    assert plan.credits_for("escalate", "custom", "production") == Decimal("25.5")
    assert plan.credits_for("summarize_case", "standard", "production") == 8
