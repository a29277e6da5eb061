"""Models that bill conversations ($2 each, $0.99 a resolution): bills by month, tag, quantile."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from flexcredits_sdk import planning
from flexcredits_sdk.planning import HistoryRow
from flexcredits_sdk.planning import _simulate as simulate_module

MARCH = 1_772_323_200  # 2026-03-01T00:00:00Z
APRIL = MARCH + 31 * 86_400


def _row(cid: str, t: int, tags: dict[str, str], resolved: bool = False) -> HistoryRow:
    day = dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d")
    return HistoryRow(0, cid, "lookup", "standard", "production", tags, 1, resolved, t, day)


def _history() -> list[HistoryRow]:
    """March: 3 support (1 resolved), 1 sales (resolved); April: 2 support (both resolved)."""
    support, sales = {"team": "support"}, {"team": "sales"}
    return [
        _row("a", MARCH, support),
        _row("a", MARCH + 60, support, resolved=True),
        _row("b", MARCH + 120, dict(support)),  # an equal dict, not the same one
        _row("c", MARCH + 180, support),
        _row("d", MARCH + 240, sales, resolved=True),
        _row("e", APRIL, support, resolved=True),
        _row("f", APRIL + 60, {"team": "support"}, resolved=True),
    ]


def test_conversation_and_resolution_bills_by_month_tag_and_percentile() -> None:
    simulator = planning.Simulator(["per-conversation", "per-resolution", "agentforce"])
    simulator.feed(_history())
    result = simulator.result()
    assert simulator.result() == result  # asking twice changes nothing
    conversation = result.model("per-conversation")
    assert [(m.month, m.conversations, m.cost) for m in conversation.by_month] == [
        ("2026-03", 4, Decimal(8)),
        ("2026-04", 2, Decimal(4)),
    ]
    assert {(t.key, t.value): t.cost for t in conversation.by_tag} == {
        ("team", "support"): Decimal(10),
        ("team", "sales"): Decimal(2),
    }
    stats = conversation.per_conversation
    assert (stats.p50, stats.max, stats.exact) == (Decimal(2), Decimal(2), True)
    resolution = result.model("per-resolution")
    assert [(m.month, m.cost) for m in resolution.by_month] == [
        ("2026-03", Decimal("1.98")),
        ("2026-04", Decimal("1.98")),
    ]
    assert {(t.key, t.value): t.cost for t in resolution.by_tag} == {
        ("team", "support"): Decimal("2.97"),
        ("team", "sales"): Decimal("0.99"),
    }
    assert (resolution.per_conversation.p50, resolution.per_conversation.p90) == (
        Decimal("0.99"),
        Decimal("0.99"),
    )
    assert resolution.per_conversation.mean == Decimal("3.96") / 6
    assert result.model("agentforce").total == Decimal("0.70")


def test_a_resolution_bill_has_its_zero_months() -> None:
    history = [_row("a", MARCH, {}), _row("b", APRIL, {}, resolved=True)]
    resolution = planning.simulate(history, ["per-resolution"]).model("per-resolution")
    assert [(m.month, m.cost) for m in resolution.by_month] == [
        ("2026-03", Decimal("0.00")),
        ("2026-04", Decimal("0.99")),
    ]
    assert resolution.per_conversation.p50 == 0


def test_more_tag_dicts_than_are_remembered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(simulate_module, "_MAX_TAG_IDS", 4)
    history = [
        _row(f"c{i}", MARCH + 60 * i, {"team": f"t{i % 10}"}, resolved=i % 2 == 0)
        for i in range(100)
    ]
    result = planning.simulate(history, ["per-conversation", "agentforce"])
    costs = {t.value: t.cost for t in result.model("per-conversation").by_tag}
    assert costs == {f"t{i}": Decimal(20) for i in range(10)}
    credits = {t.value: t.cost for t in result.model("agentforce").by_tag}
    assert credits == {f"t{i}": Decimal("1.0") for i in range(10)}
