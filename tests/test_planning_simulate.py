"""Simulation: worked examples with exact figures, streaming state, and bad input."""

from __future__ import annotations

import datetime as dt
import io
import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

import flexcredits_sdk as fc
from flexcredits_sdk import planning
from flexcredits_sdk.planning import CreditPlan, HistoryRow, PerTicket

START = 1_772_323_200  # 2026-03-01T00:00:00Z
ROOT = Path(__file__).resolve().parent.parent


def rows(
    conversations: int,
    actions: int,
    *,
    environment: str = "production",
    action_type: str = "standard",
    resolved_every: int = 0,
    spacing_s: int = 60,
    tags: dict[str, str] | None = None,
) -> Iterator[HistoryRow]:
    """Conversations one after another, `actions` rows each, `spacing_s` apart."""
    t = START
    for c in range(conversations):
        for a in range(actions):
            resolved = bool(resolved_every) and c % resolved_every == 0 and a == actions - 1
            day = dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d")
            yield HistoryRow(
                0, f"c{c}", "lookup", action_type, environment, tags or {}, 1, resolved, t, day
            )
            t += spacing_s


def test_worked_example_1000_conversations_of_3_actions() -> None:
    models = ["agentforce", "per-conversation"]
    result = planning.simulate(rows(1000, 3), models)
    flex = result.model("agentforce")
    assert flex.credits == 60_000
    assert flex.total == Decimal(300)
    assert result.model("per-conversation").total == Decimal(2000)
    assert result.cheapest == "agentforce"
    assert (result.conversations, result.actions, result.rows) == (1000, 3000, 3000)
    sandbox = planning.simulate(rows(1000, 3, environment="sandbox"), models)
    assert sandbox.model("agentforce").credits == 48_000
    assert sandbox.model("agentforce").total == Decimal(240)


def test_worked_example_21_actions_per_conversation() -> None:
    result = planning.simulate(rows(10, 21), ["agentforce", "per-conversation"])
    flex = result.model("agentforce")
    assert flex.per_conversation.mean == Decimal("2.10")
    assert flex.per_conversation.max == Decimal("2.10")
    assert result.model("per-conversation").per_conversation.mean == Decimal("2.00")
    assert result.cheapest == "per-conversation"
    (even,) = result.break_even
    assert even.cheaper == "agentforce"
    assert even.other == "per-conversation"
    assert even.actions_per_conversation == 20
    assert even.statement == "agentforce beats per-conversation below 20 actions per conversation"


def test_percentiles_tags_and_resolutions() -> None:
    history = [
        *rows(9, 1, tags={"team": "support"}, resolved_every=3),
        *(
            r._replace(conversation_id="long", time_s=START + 10_000 + i)
            for i, r in enumerate(rows(1, 10, tags={"team": "sales"}))
        ),
    ]
    result = planning.simulate(
        history, ["agentforce", "per-resolution", "per-ticket", "per-conversation"]
    )
    flex = result.model("agentforce")
    assert (flex.per_conversation.p50, flex.per_conversation.p90) == (
        Decimal("0.1"),
        Decimal("0.1"),
    )
    assert flex.per_conversation.max == Decimal("1.0")
    assert flex.per_conversation.mean == Decimal("0.19")
    assert flex.per_conversation.exact
    assert {(t.key, t.value): t.cost for t in flex.by_tag} == {
        ("team", "sales"): Decimal("1.0"),
        ("team", "support"): Decimal("0.9"),
    }
    resolution = result.model("per-resolution")
    assert result.resolved == 3
    assert resolution.total == Decimal("2.97")
    assert resolution.per_conversation.p50 == 0
    ticket = result.model("per-ticket")
    assert ticket.total == Decimal("4.00")


def test_a_resolution_counts_once_per_conversation() -> None:
    history = [r._replace(resolved=True) for r in rows(1, 5)]
    result = planning.simulate(history, ["per-resolution"])
    assert result.model("per-resolution").total == Decimal("0.99")


def test_monthly_cap_of_per_ticket_pricing() -> None:
    capped = PerTicket(name="capped", price=Decimal("0.40"), monthly_cap=Decimal(100))
    result = planning.simulate(rows(1000, 1), [capped])
    assert [(m.month, m.cost) for m in result.model("capped").by_month] == [
        ("2026-03", Decimal(100))
    ]
    assert result.model("capped").list_total == Decimal(400)


def test_months_are_billed_one_by_one_with_idle_months() -> None:
    plan = planning.preset("copilot-studio-packs")
    card_rows = [
        HistoryRow(
            0,
            "a",
            "answer",
            "generative_answer",
            "production",
            {},
            15_000,
            False,
            START,
            "2026-03-01",
        ),
        HistoryRow(
            0,
            "b",
            "answer",
            "generative_answer",
            "production",
            {},
            1,
            False,
            START + 62 * 86_400,
            "2026-05-02",
        ),
    ]
    result = planning.simulate(card_rows, [plan])
    bills = [(m.month, m.credits, m.cost) for m in result.model(plan.name).by_month]
    assert bills == [
        ("2026-03", 30_000, Decimal(250)),
        ("2026-04", 0, Decimal(200)),
        ("2026-05", 2, Decimal(200)),
    ]


def test_fractional_rates_in_a_simulation() -> None:
    flows = [r._replace(action="run_flow", action_type="agent_flow_action") for r in rows(1, 101)]
    result = planning.simulate(flows, ["copilot-studio"])
    copilot = result.model("copilot-studio")
    assert copilot.credits == Decimal("13.13")
    assert copilot.total == Decimal("0.14")  # 14 whole credits at $0.01


def test_unpriced_action_stops_the_run_with_its_line() -> None:
    text = io.StringIO(
        json.dumps(
            {
                "conversation_id": "a",
                "action": "fly",
                "action_type": "premium",
                "timestamp": "2026-03-01T10:00:00Z",
            }
        )
        + "\n"
    )
    with pytest.raises(planning.UnpricedAction, match=r"'fly'.*line 1"):
        planning.simulate(planning.read_history(text), ["agentforce"])


def test_rows_without_a_conversation_are_conversations_alone() -> None:
    history = [r._replace(conversation_id=None) for r in rows(1, 4)]
    result = planning.simulate(history, ["per-conversation"])
    assert result.conversations == 4
    assert result.model("per-conversation").total == Decimal(8)


def test_conversations_close_after_the_idle_window() -> None:
    one = next(iter(rows(1, 1)))
    later = one._replace(time_s=one.time_s + 25 * 3600)
    history = [
        one,
        *(one._replace(conversation_id=f"x{i}", time_s=one.time_s + i) for i in range(1, 3000)),
        later,
    ]
    result = planning.simulate(history, ["per-conversation"])
    assert result.conversations == 3001  # "c0" again after 25 hours is a new conversation
    same = planning.simulate(history, ["per-conversation"], idle=dt.timedelta(hours=48))
    assert same.conversations == 3000


def test_memory_is_bounded_by_open_conversations() -> None:
    # A conversation every 2 hours: about 12 are active within the 24-hour idle window; the
    # open set is swept every 1,024 rows and keeps those touched since the sweep before, so it
    # peaks near 12 + 2 * 512, whatever the length.
    result = planning.simulate(rows(20_000, 2, spacing_s=3600), ["agentforce"])
    longer = planning.simulate(rows(40_000, 2, spacing_s=3600), ["agentforce"])
    assert (result.conversations, longer.conversations) == (20_000, 40_000)
    assert result.peak_open == longer.peak_open <= 1024 + 13
    forced = planning.simulate(rows(50, 2), ["per-conversation"], max_open=10)
    assert forced.conversations == 50  # consecutive rows: nothing is split
    interleaved = [
        HistoryRow(
            0,
            f"c{i % 20}",
            "lookup",
            "standard",
            "production",
            {},
            1,
            False,
            START + i,
            "2026-03-01",
        )
        for i in range(40)
    ]
    split = planning.simulate(interleaved, ["per-conversation"], max_open=10)
    # Twenty ids round-robin through ten places: every row closes the least recent one.
    assert (split.forced_closes, split.conversations, split.peak_open) == (30, 40, 10)


def test_bad_rows_stop_the_run_or_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    good = {
        "conversation_id": "a",
        "action": "lookup",
        "action_type": "standard",
        "timestamp": "2026-03-01T10:00:00Z",
    }
    path.write_text(
        json.dumps(good) + "\nnot json\n" + json.dumps({**good, "timestamp": "yesterday"}) + "\n"
    )
    with pytest.raises(planning.HistoryError) as info:
        planning.simulate(path, ["agentforce"])
    assert info.value.line == 2
    assert "history.jsonl, line 2" in str(info.value)
    result = planning.simulate(path, ["agentforce"], skip_bad_rows=True)
    assert result.rows == 1
    assert result.bad_rows == 2
    assert "line 2" in result.bad_row_errors[0]
    assert "timestamp='yesterday'" in result.bad_row_errors[1]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"models": []}, "models"),
        ({"models": "agentforce"}, "models"),
        ({"models": ["agentforce", "agentforce"]}, "models"),
        ({"models": ["agentforce"], "idle": dt.timedelta(0)}, "idle"),
        ({"models": ["agentforce"], "max_open": 0}, "max_open"),
    ],
)
def test_bad_options(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(fc.ConfigurationError) as info:
        planning.Simulator(**kwargs)  # type: ignore[arg-type]
    assert info.value.field == field


def test_simulating_a_wallets_own_records(clock: object) -> None:
    wallet = fc.OfflineWallet()
    meter = fc.Meter(wallet=wallet, clock=clock)  # type: ignore[arg-type]

    @meter.metered_action
    def lookup() -> None:
        return None

    for name in ("a", "b"):
        with fc.conversation(name):
            for _ in range(3):
                lookup()
    meter.flush()
    records = list(wallet.records())
    result = planning.simulate(
        planning.rows_from_records(records), ["agentforce", "per-conversation"]
    )
    assert result.model("agentforce").credits == sum(r.credits for r in records) == 120
    assert result.model("per-conversation").total == Decimal(4)


def test_empty_history() -> None:
    result = planning.simulate([], ["agentforce"])
    assert result.cheapest is None
    assert result.model("agentforce").total == 0
    assert result.break_even == []
    with pytest.raises(KeyError):
        result.model("nope")


def test_credit_plan_value_is_kept(tmp_path: Path) -> None:
    plan = planning.preset("agentforce")
    assert isinstance(plan, CreditPlan)
    path = tmp_path / "plan.json"
    planning.dump_model(plan, path)
    result = planning.simulate(rows(2, 2), [path])
    assert result.model("agentforce").credits == 80


def test_progress_callback_and_render_formats() -> None:
    seen: list[int] = []
    result = planning.simulate(rows(40_000, 2), ["agentforce"], progress=seen.append)
    assert seen == [65_536, 80_000]
    assert planning.render(result).startswith("80,000 rows, 40,000 conversations")
    with pytest.raises(fc.ConfigurationError, match="output"):
        planning.render(result, "xml")  # type: ignore[arg-type]
