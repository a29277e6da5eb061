"""The Agentforce Flex Credits worked examples, metered in-process with the offline wallet.

Salesforce's published examples price each agent action at 20 credits ($0.10) in production
and 16 in a sandbox:

* simple case management: identify customer, get cases, add comment: 3 actions;
* field-service appointment: identify customer, get work types, get time slots (x2) and answer
  with knowledge are five steps for six actions in the published table; the sixth is modelled
  here as ``schedule_appointment``;
* an onboarding question: 1 action.

Run with ``make demo`` or ``python examples/agentforce_use_cases.py``.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal

import flexcredits_sdk as fc


def build_agent(meter: fc.Meter) -> dict[str, object]:
    """Decorate the agent's actions with `meter` and return the three use cases."""

    @meter.metered_action(tags={"agent": "service"})
    def identify_customer(email: str) -> str:
        return f"customer:{email}"

    @meter.metered_action(tags={"agent": "service"})
    def get_cases(customer: str) -> list[str]:
        return [f"{customer}/case-1"]

    @meter.metered_action(tags={"agent": "service"})
    def add_comment(case: str, text: str) -> None:
        return None

    @meter.metered_action(tags={"agent": "field-service"})
    def get_work_types() -> list[str]:
        return ["repair", "install"]

    @meter.metered_action(name="get_time_slots", tags={"agent": "field-service"})
    async def get_time_slots(days: list[str]) -> list[str]:
        # One call that looks up two days is billed as two actions ("get time slots x2").
        action = fc.current_action()
        assert action is not None
        action.units = len(days)
        return [f"{day} 09:00" for day in days]

    @meter.metered_action(tags={"agent": "field-service"})
    def answer_with_knowledge(question: str) -> str:
        return "Bring the serial number."

    @meter.metered_action(tags={"agent": "field-service"})
    def schedule_appointment(slot: str) -> str:
        return f"booked {slot}"

    def case_management() -> None:
        with fc.tags(department="service"), fc.conversation("case-4711"):
            customer = identify_customer("ada@example.com")
            case = get_cases(customer)[0]
            add_comment(case, "Called back.")

    def field_service() -> None:
        with fc.tags(department="field-service"), fc.conversation("wo-0815"):
            identify_customer("grace@example.com")
            get_work_types()
            slots = asyncio.run(get_time_slots(["mon", "tue"]))
            answer_with_knowledge("What should I prepare?")
            schedule_appointment(slots[0])

    def onboarding() -> None:
        with fc.tags(department="hr"), fc.conversation():  # noqa: SIM117
            with meter.action("answer_with_knowledge", tags={"agent": "onboarding"}) as act:
                act.tag(topic="benefits")

    return {
        "simple case management": case_management,
        "field-service appointment": field_service,
        "onboarding question": onboarding,
    }


def _count(actions: int) -> str:
    return f"{actions:>2} action " if actions == 1 else f"{actions:>2} actions"


def run(environment: str) -> dict[str, int | Decimal]:
    """Run the three use cases in `environment`; print and return the credits of each."""
    wallet = fc.OfflineWallet()
    wallet.buy_packs(1)
    meter = fc.Meter(rate_card=fc.RateCard.agentforce(), environment=environment, wallet=wallet)
    costs: dict[str, int | Decimal] = {}
    print(f"== {environment} ==")
    for name, use_case in build_agent(meter).items():
        used_before = wallet.balance().used
        actions_before = sum(row.actions for row in wallet.usage())
        use_case()  # type: ignore[operator]
        used = wallet.balance().used - used_before
        actions = sum(row.actions for row in wallet.usage()) - actions_before
        costs[name] = used
        print(f"{name:<28} {_count(actions)} {used:>4} credits  ${wallet.rate_card.usd(used):.2f}")
    balance = wallet.balance()
    print(f"balance: {balance.credits:,} credits (${balance.usd:.2f}) of {balance.granted:,}")
    print("usage by environment:")
    for row in wallet.usage(group_by=["environment"]):
        print(f"  {row.key['environment']!s:<14} {_count(row.actions)} {row.credits:>4} credits")
    print("usage by department:")
    for row in wallet.usage(group_by=["department"]):
        print(
            f"  {row.key['department']!s:<14} {_count(row.actions)} {row.credits:>4} credits"
            f"  ${row.usd:.2f}"
        )
    print()
    return costs


def main() -> None:
    run("production")
    run("sandbox")


if __name__ == "__main__":
    main()
