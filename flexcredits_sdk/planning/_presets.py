"""Preset pricing models, each from a public price list.

Prices change: every preset names its source and the date its figures were read. Write a preset
to a file with `dump_model`, edit it, and pass the file instead of the name.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

from .._exceptions import ConfigurationError
from .._pricing import RateCard
from ._plans import (
    Allotment,
    CreditPlan,
    PerConversation,
    PerResolution,
    PerTicket,
    load_model,
)

__all__ = ["PRESETS", "preset", "resolve_model"]

AnyModel = CreditPlan | PerConversation | PerResolution | PerTicket


def agentforce() -> CreditPlan:
    """Salesforce Agentforce Flex Credits: 20 credits per action in production, 16 in a sandbox.

    Source: Salesforce, "Agentforce pricing" (salesforce.com/agentforce/pricing), Flex Credits
    as announced on 2025-05-15: packs of 100,000 credits for $500 ($0.005 a credit); a standard
    or custom action costs 20 credits ($0.10) in production and 16 in a sandbox.
    """
    return CreditPlan(
        name="agentforce",
        description="Agentforce Flex Credits, pay as you go",
        source="salesforce.com/agentforce/pricing (2025-05-15)",
        rate_card=RateCard.agentforce(),
    )


def per_conversation() -> PerConversation:
    """Salesforce Agentforce priced per conversation: $2.00 a conversation.

    Source: Salesforce, "Agentforce pricing" (salesforce.com/agentforce/pricing): $2 per
    conversation, the launch price of 2024-09-12, still offered beside Flex Credits on
    2025-05-15.
    """
    return PerConversation(
        name="per-conversation",
        description="Agentforce, $2.00 per conversation",
        source="salesforce.com/agentforce/pricing (2024-09-12, 2025-05-15)",
        price=Decimal("2.00"),
    )


def per_resolution() -> PerResolution:
    """Per resolution: $0.99 for each resolved conversation, as Intercom prices Fin.

    Source: Intercom, "Pricing" (intercom.com/pricing): the Fin AI Agent costs $0.99 per
    resolution, a resolution counted once per conversation; price as listed in 2025.
    """
    return PerResolution(
        name="per-resolution",
        description="$0.99 per resolved conversation",
        source="intercom.com/pricing (2025)",
        price=Decimal("0.99"),
    )


def per_ticket() -> PerTicket:
    """Per ticket, pay as you go: $0.40 a ticket with a $2,000 monthly cap (illustrative).

    Source: no single vendor; the shape of help-desk AI add-ons billed per ticket with a
    monthly spending cap. The figures ($0.40, cap $2,000) are examples as of 2026-11: set the
    cap and price of your contract in a file.
    """
    return PerTicket(
        name="per-ticket",
        description="$0.40 per ticket, capped at $2,000 a month",
        source="illustrative (2026-11)",
        price=Decimal("0.40"),
        monthly_cap=Decimal(2000),
    )


def _copilot_card() -> RateCard:
    def both(credits: int | Decimal) -> dict[str, int | Decimal]:
        return {"production": credits, "sandbox": credits}

    return RateCard(
        name="copilot-studio",
        description="Microsoft Copilot Studio credits per feature",
        pack_credits=25_000,
        pack_price=Decimal(200),
        credit_price=Decimal("0.01"),
        action_types={
            "classic_answer": both(1),
            "generative_answer": both(2),
            "agent_action": both(5),
            "tenant_graph_grounding": both(10),
            "agent_flow_action": both(Decimal("0.13")),
        },
    )


def copilot_studio() -> CreditPlan:
    """Microsoft Copilot Studio credits, pay as you go at $0.01 a credit.

    Source: Microsoft Learn, "Billing rates and management"
    (learn.microsoft.com/microsoft-copilot-studio/requirements-messages-management), rates as
    listed on 2026-03-01: classic answer 1 credit, generative answer 2, agent action 5, tenant
    graph grounding 10, agent flow actions 13 per 100 (0.13 each, accrued and charged in whole
    credits each month); pay-as-you-go $0.01 per credit. Action types name the features.
    """
    return CreditPlan(
        name="copilot-studio",
        description="Copilot Studio credits, pay as you go",
        source="learn.microsoft.com/microsoft-copilot-studio/requirements-messages-management"
        " (2026-03-01)",
        rate_card=_copilot_card(),
        rounding="per_month",
    )


def copilot_studio_packs() -> CreditPlan:
    """Microsoft Copilot Studio with one capacity pack a month, overage pay as you go.

    Source: as `copilot_studio`, and the Copilot Studio licensing guide (2026-03-01): a
    capacity pack of 25,000 credits costs $200 a month, unused credits expire at the end of
    the month; credits beyond the pack are billed pay-as-you-go at $0.01.
    """
    return CreditPlan(
        name="copilot-studio-packs",
        description="Copilot Studio, 1 pack of 25,000 credits a month + pay as you go",
        source="Copilot Studio licensing guide (2026-03-01)",
        rate_card=_copilot_card(),
        rounding="per_month",
        allotments=(Allotment(name="capacity pack", credits=25_000, price=Decimal(200)),),
    )


#: Preset names and the functions that build them.
PRESETS: dict[str, Callable[[], AnyModel]] = {
    "agentforce": agentforce,
    "copilot-studio": copilot_studio,
    "copilot-studio-packs": copilot_studio_packs,
    "per-conversation": per_conversation,
    "per-resolution": per_resolution,
    "per-ticket": per_ticket,
}


def preset(name: str) -> AnyModel:
    """Return the preset pricing model called `name` (one of `PRESETS`).

    Raises:
        ConfigurationError: No preset has that name.
    """
    try:
        return PRESETS[name]()
    except KeyError:
        raise ConfigurationError(
            "model", name, f"is not a preset; presets: {sorted(PRESETS)}"
        ) from None


def resolve_model(spec: str | Path | AnyModel) -> AnyModel:
    """Return a pricing model from a preset name, a ``.json``/``.toml`` path, or a model.

    Raises:
        ConfigurationError: The name is not a preset and not a model file.
    """
    if isinstance(spec, CreditPlan | PerConversation | PerResolution | PerTicket):
        return spec
    text = str(spec)
    if text in PRESETS:
        return preset(text)
    if text.lower().endswith((".json", ".toml")):
        if not Path(text).is_file():
            raise ConfigurationError(
                "model", text, f"no such file (and not a preset: {', '.join(sorted(PRESETS))})"
            )
        return load_model(text)
    raise ConfigurationError(
        "model", text, f"is neither a preset ({sorted(PRESETS)}) nor a .json/.toml file"
    )
