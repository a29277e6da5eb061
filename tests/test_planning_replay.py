"""``flexcredits simulate --wallet`` and ``flexcredits forecast --wallet``: planning from what a
wallet booked, a wallet file or a wallet service, with the figures a history file gives."""

from __future__ import annotations

import datetime as _dt
import json
import random
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from server_fixtures import running_server

from flexcredits_sdk import OfflineWallet, UsageRecord
from flexcredits_sdk._records import datetime_to_ns, new_id
from flexcredits_sdk.cli import main

TODAY = _dt.datetime.now(_dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def history(days: int = 60, seed: int = 7) -> list[UsageRecord]:
    """Records of `days` days before today: conversations of 1 to 4 actions, two departments."""
    rng = random.Random(seed)
    records = []
    for day in range(days, 0, -1):
        start = TODAY - _dt.timedelta(days=day)
        for number in range(rng.randint(5, 12)):
            department = "service" if number % 3 else "sales"
            conversation = f"d{day}-c{number}"
            at = start + _dt.timedelta(minutes=30 * number)
            for step in range(rng.randint(1, 4)):
                records.append(
                    UsageRecord(
                        new_id(datetime_to_ns(at)),
                        "answer",
                        "standard",
                        1,
                        20,
                        "production",
                        {"department": department, "resolved": "true" if step else "false"},
                        conversation,
                        datetime_to_ns(at + _dt.timedelta(seconds=step)),
                        1_000,
                    )
                )
    return records


@pytest.fixture
def wallet_file(tmp_path: Path) -> tuple[Path, list[UsageRecord]]:
    path = tmp_path / "wallet.db"
    records = history()
    wallet = OfflineWallet(path=path)
    wallet.grant(30_000)
    wallet.set_budget(10_000, tags={"department": "service"}, period="month", hard=False)
    wallet.book_many(records)
    wallet.shutdown()
    return path, records


def run(*args: str, env: dict[str, str] | None = None) -> Any:
    result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    return result


def test_simulate_from_a_wallet_file_gives_what_its_exported_history_gives(
    wallet_file: tuple[Path, list[UsageRecord]], tmp_path: Path
) -> None:
    path, records = wallet_file
    exported = tmp_path / "history.jsonl"
    assert run("wallet", "export", "--file", str(path), "-o", str(exported)).exit_code == 0
    from_file = run("simulate", str(exported), "-o", "json")
    from_wallet = run("simulate", "--wallet", str(path), "-o", "json")
    assert from_wallet.exit_code == 0, from_wallet.output
    assert json.loads(from_wallet.output) == json.loads(from_file.output)
    answer = json.loads(from_wallet.output)
    conversations = {r.conversation_id for r in records}
    assert answer["rows"] == len(records)
    assert answer["conversations"] == len(conversations)


def test_simulate_reads_the_window_it_is_given(
    wallet_file: tuple[Path, list[UsageRecord]],
) -> None:
    path, records = wallet_file
    since = TODAY - _dt.timedelta(days=30)
    inside = [r for r in records if r.start_time_ns >= datetime_to_ns(since)]
    answer = run("simulate", "--wallet", str(path), "--since", f"{since:%Y-%m-%d}", "-o", "json")
    assert json.loads(answer.output)["rows"] == len(inside)


def test_forecast_from_a_wallet_says_when_the_balance_and_each_budget_run_out(
    wallet_file: tuple[Path, list[UsageRecord]],
) -> None:
    path, records = wallet_file
    answer = run("forecast", "--wallet", str(path), "--by", "department", "-o", "json")
    assert answer.exit_code == 0, answer.output
    data = json.loads(answer.output)
    assert data["balance"] == 30_000 - 20 * len(records)  # the wallet's own balance
    assert data["runs_out_p50"] is not None  # about 340 credits a day: within the 90 days
    (budget,) = data["budgets"]
    assert budget["budget"]["tags"] == {"department": "service"}
    assert budget["left"] == 10_000 - budget["budget"]["spent"]
    # a month of service actions at about 130 credits a day fits in 10,000: not this period
    # unless the budget is nearly spent, and the day is never after the period's end
    for day in (budget["runs_out_p50"], budget["runs_out_p90"]):
        if day is not None:
            assert day < budget["period_ends"]
    values = {v["value"]: v for v in data["by_tag"]["values"]}
    assert set(values) == {"sales", "service"}
    assert values["service"]["next_30"][0] > values["sales"]["next_30"][0]
    text = run("forecast", "--wallet", str(path), "--by", "department")
    assert "Budgets (what is left this period" in text.output
    assert "department=service" in text.output
    assert "Next 30 days by department" in text.output


def test_a_wallet_source_is_one_or_the_other(tmp_path: Path) -> None:
    both = run("simulate", str(Path(__file__)), "--wallet", "x.db")
    assert both.exit_code != 0
    assert "one of them" in both.output
    neither = run("forecast")
    assert neither.exit_code != 0
    assert "one of them" in neither.output
    missing = run("simulate", "--wallet", str(tmp_path / "nope.db"))
    assert missing.exit_code != 0
    assert "no such wallet file" in missing.output
    assert run("forecast", str(Path(__file__)), "--by", "x").exit_code != 0


def test_simulate_and_forecast_read_a_wallet_service(tmp_path: Path) -> None:
    records = history(days=30, seed=3)
    with running_server(str(tmp_path / "service.db")) as server:
        key = server.tenant("acme")
        server.grant("acme", 100_000)
        with server.client(key) as client:
            body = {"records": [r.to_dict() for r in records]}
            assert client.post("/v1/records", json=body).json()["accepted"] == len(records)
            budget = {"credits": 5_000, "tags": {"department": "sales"}, "period": "month"}
            assert client.post("/v1/budgets", json=budget).status_code == 200
        env = {"FLEXCREDITS_API_KEY": key}
        simulated = run("simulate", "--wallet", server.url, "-o", "json", env=env)
        assert simulated.exit_code == 0, simulated.output
        assert json.loads(simulated.output)["rows"] == len(records)
        forecast = run("forecast", "--wallet", server.url, "-o", "json", env=env)
        assert forecast.exit_code == 0, forecast.output
        data = json.loads(forecast.output)
        assert data["balance"] == 100_000 - 20 * len(records)
        (outlook,) = data["budgets"]  # read with HttpWallet.budgets()
        assert outlook["budget"]["tags"] == {"department": "sales"}
        assert outlook["left"] == 5_000 - outlook["budget"]["spent"]
