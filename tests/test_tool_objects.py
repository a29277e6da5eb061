"""What every framework adapter stands on: `ToolMeter`, `ToolAction`, and `metered_action`
refusing callables it cannot wrap without changing them."""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import pytest

import flexcredits_sdk as fc
from flexcredits_sdk.integrations import ToolAction, ToolMeter
from flexcredits_sdk.integrations._common import conversation_of

CARD = fc.RateCard(action_types={"standard": {"production": 20}, "search": {"production": 2}})


def _meter() -> tuple[fc.Meter, fc.OfflineWallet]:
    wallet = fc.OfflineWallet(rate_card=CARD)
    return fc.Meter(rate_card=CARD, wallet=wallet), wallet


class _Tool:
    """Looks like a tool object of a framework no adapter knows."""

    name = "lookup"

    def invoke(self, query: str) -> str:
        return query

    def __call__(self, query: str) -> str:
        return query


class _Callable:
    def __call__(self) -> int:
        return 1


def test_a_class_is_refused_with_what_to_decorate_instead() -> None:
    meter, _ = _meter()
    with pytest.raises(fc.ConfigurationError, match="decorate the methods") as info:
        meter.metered_action(_Callable)
    assert info.value.field == "func"


def test_a_tool_of_a_framework_without_an_adapter_is_refused_with_the_order_rule() -> None:
    meter, _ = _meter()
    with pytest.raises(fc.ConfigurationError, match="placed below @tool") as info:
        meter.metered_action(_Tool())
    assert "_Tool object" in str(info.value)


def test_another_callable_object_is_refused_pointing_at_its_call_method() -> None:
    meter, _ = _meter()
    with pytest.raises(fc.ConfigurationError, match="__call__ method"):
        meter.metered_action(name="x")(_Callable())


def test_a_partial_is_metered_as_a_function() -> None:
    meter, wallet = _meter()
    add = meter.metered_action(name="add")(functools.partial(lambda a, b: a + b, 1))
    assert add(2) == 3
    assert [r.action for r in wallet.records()] == ["add"]


def test_a_tool_meter_meters_each_tool_as_an_action_named_after_it() -> None:
    meter, wallet = _meter()
    tools = ToolMeter(
        meter=meter,
        actions={"search_kb": "search", "book": ToolAction(units=2, name="book_slot")},
        tags={"agent": "triage"},
    )

    def search(q: str) -> str:
        return q.upper()

    async def book(day: str) -> str:
        return day

    assert tools.wrap(search, "search_kb")("a") == "A"
    assert asyncio.run(tools.wrap(book, "book")("mon")) == "mon"
    assert tools.wrap(search, "other")("b") == "B"
    records = list(wallet.records())
    assert [(r.action, r.action_type, r.units, r.credits) for r in records] == [
        ("search_kb", "search", 1, 2),
        ("book_slot", "standard", 2, 40),
        ("other", "standard", 1, 20),
    ]
    assert all(r.tags == {"agent": "triage"} for r in records)


def test_start_and_end_meter_a_call_announced_by_two_callbacks() -> None:
    meter, wallet = _meter()
    tools = ToolMeter(meter=meter)
    ok = tools.start("lookup", conversation_id="run-1")
    failed = tools.start("lookup", conversation_id="run-1")
    assert fc.current_action() is None  # not bound: the end may come from another context
    tools.end(failed, ValueError("no"))
    tools.end(ok)
    tools.end(None)  # a start whose metering failed: nothing to end
    with fc.conversation("case-7"):
        mine = tools.start("lookup", conversation_id="run-2")
    tools.end(mine)
    records = sorted(wallet.records(), key=lambda r: r.start_time_ns)
    assert [(r.outcome, r.error_type, r.conversation_id) for r in records] == [
        ("ok", None, "run-1"),
        ("error", "ValueError", "run-1"),
        ("ok", None, "case-7"),  # the user's own conversation wins over the run's id
    ]


def test_a_refused_start_raises_before_the_tool_runs() -> None:
    wallet = fc.OfflineWallet(rate_card=CARD, overdraft="deny")
    meter = fc.Meter(rate_card=CARD, wallet=wallet)
    with pytest.raises(fc.InsufficientCredits):
        ToolMeter(meter=meter).start("lookup")


def test_the_framework_run_id_is_the_conversation_unless_one_is_set() -> None:
    assert conversation_of("run-1") == "run-1"
    assert conversation_of(None) is None
    assert conversation_of("") is None
    assert conversation_of("x" * 257) is None
    assert conversation_of("a\nb") is None
    with fc.conversation("case-1"):
        assert conversation_of("run-1") is None


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"meter": "global"}, "meter"),
        ({"actions": ["search"]}, "actions"),
        ({"actions": {"t": 3}}, "actions['t']"),
        ({"actions": {"": "standard"}}, "actions key"),
        ({"tags": {"k": 1}}, "tags['k']"),
    ],
)
def test_bad_tool_meter_options_are_refused_naming_the_field(
    kwargs: dict[str, Any], field: str
) -> None:
    meter, _ = _meter()
    with pytest.raises(fc.ConfigurationError) as info:
        ToolMeter(**{"meter": meter, **kwargs})
    assert info.value.field == field


def test_an_action_type_the_card_does_not_price_fails_when_the_adapter_is_made() -> None:
    meter, _ = _meter()
    with pytest.raises(fc.UnknownActionType) as info:
        ToolMeter(meter=meter, actions={"lookup": "premium"})
    assert info.value.value == "premium"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"action_type": ""}, "action_type"), ({"units": 0}, "units"), ({"name": " "}, "name")],
)
def test_a_bad_tool_action_is_refused(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(fc.ConfigurationError) as info:
        ToolAction(**kwargs)
    assert info.value.field == field
