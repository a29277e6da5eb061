"""The ``flexcredits simulate`` and ``flexcredits forecast`` commands."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from flexcredits_sdk.cli import main

ROOT = Path(__file__).resolve().parent.parent
HISTORY = str(ROOT / "examples" / "history.jsonl")


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def _line(conversation: str, day: str, action_type: str = "standard") -> str:
    return json.dumps(
        {
            "conversation_id": conversation,
            "action": "lookup",
            "action_type": action_type,
            "timestamp": f"{day}T10:00:00Z",
        }
    )


def test_simulate_prints_a_report(runner: CliRunner) -> None:
    result = runner.invoke(
        main, ["simulate", HISTORY, "-m", "agentforce", "-m", "per-conversation"]
    )
    assert result.exit_code == 0, result.output
    assert "201 rows, 40 conversations, 201 actions (5.02 per conversation)" in result.output
    assert "agentforce        credits           $19.74    3,948  $0.49  $0.40  $0.80  $2.40" in (
        result.output
    )
    assert "Cheapest at this volume: agentforce ($19.74)" in result.output
    assert (
        "Break-even: agentforce beats per-conversation below 20.36 actions per conversation"
        in result.output
    )
    assert "team=sales: agentforce $4.38, per-conversation $22.00" in result.output


def test_default_models(runner: CliRunner) -> None:
    result = runner.invoke(main, ["simulate", HISTORY, "--output", "json"])
    data = json.loads(result.output)
    assert [m["name"] for m in data["models"]] == [
        "agentforce",
        "per-resolution",
        "per-conversation",
    ]
    assert data["models"][0]["total"] == "19.740"  # exact decimal strings, no floats
    assert data["cheapest"] == "agentforce"


def test_csv_output(runner: CliRunner) -> None:
    result = runner.invoke(main, ["simulate", HISTORY, "-m", "per-ticket", "-o", "csv"])
    rows = list(csv.DictReader(io.StringIO(result.output)))
    assert {"section": "total", "model": "per-ticket", "key": "", "value": "16.00"} in rows
    assert {"section": "month", "model": "per-ticket", "key": "2026-03", "value": "16.00"} in rows


def test_html_output_and_svg_chart(runner: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    chart = tmp_path / "chart.svg"
    result = runner.invoke(
        main,
        [
            "simulate",
            HISTORY,
            "-m",
            "agentforce",
            "-m",
            "per-conversation",
            "-o",
            "html",
            "--out",
            str(out),
            "--chart",
            str(chart),
        ],
    )
    assert result.exit_code == 0, result.output
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert "<svg" in page
    assert "Bill per model" in page
    assert "agentforce beats per-conversation below 20.36" in page
    svg = chart.read_text()
    assert svg.startswith("<svg")
    assert svg.rstrip().endswith("</svg>")


def test_docs_chart_is_the_commands_output(runner: CliRunner, tmp_path: Path) -> None:
    chart = tmp_path / "chart.svg"
    models = ["-m", "agentforce", "-m", "per-conversation", "-m", "per-resolution"]
    result = runner.invoke(
        main, ["simulate", HISTORY, *models, "-m", "per-ticket", "--chart", str(chart)]
    )
    assert result.exit_code == 0, result.output
    assert chart.read_text() == (ROOT / "docs" / "planning-chart.svg").read_text()


def test_bad_rows_stop_the_run_unless_skipped(runner: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    path.write_text(_line("a", "2026-03-01") + "\n{broken\n" + _line("b", "2026-03-01") + "\n")
    result = runner.invoke(main, ["simulate", str(path), "-m", "per-conversation"])
    assert result.exit_code == 1
    assert "h.jsonl, line 2" in result.output
    assert "--skip-bad-rows" in result.output
    result = runner.invoke(
        main, ["simulate", str(path), "-m", "per-conversation", "--skip-bad-rows"]
    )
    assert result.exit_code == 0, result.output
    assert "Skipped 1 bad rows:" in result.output
    assert "h.jsonl, line 2" in result.output
    assert "per-conversation  per_conversation  $4.00" in result.output


def test_unpriced_action_and_unknown_model(runner: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    path.write_text(_line("a", "2026-03-01", action_type="premium") + "\n")
    result = runner.invoke(main, ["simulate", str(path), "-m", "agentforce"])
    assert result.exit_code == 1
    assert "action='lookup'" in result.output
    assert "line 1" in result.output
    result = runner.invoke(main, ["simulate", str(path), "-m", "cheap"])
    assert result.exit_code == 1
    assert "neither a preset" in result.output


def test_progress_bar_goes_to_stderr_when_asked(tmp_path: Path) -> None:
    runner = CliRunner()
    path = tmp_path / "h.csv"
    path.write_text(
        "conversation_id,action,timestamp\n"
        + "".join(f"c{i},lookup,2026-03-01T10:00:00Z\n" for i in range(70_000))
    )
    result = runner.invoke(
        main, ["simulate", str(path), "-m", "per-conversation", "--progress", "-o", "json"]
    )
    assert result.exit_code == 0, result.stderr
    assert "Reading" in result.stderr
    assert json.loads(result.stdout)["conversations"] == 70_000


def test_forecast_from_a_history(runner: CliRunner) -> None:
    result = runner.invoke(
        main, ["forecast", HISTORY, "--balance", "10000", "--until", "2026-04-30"]
    )
    assert result.exit_code == 1  # a week of history is too short
    assert "needs at least 14 days" in result.output


def test_forecast_from_a_daily_export(runner: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "daily.csv"
    lines = ["date,credits"] + [
        f"2026-03-{day:02d},{(5000 if day % 7 not in (0, 1) else 1000) + 10 * day}"
        for day in range(1, 29)
    ]
    path.write_text("\n".join(lines) + "\n")
    args = ["forecast", str(path), "--balance", "200000", "--until", "2026-05-31"]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "Forecast from 2026-03-29" in result.output
    assert "Next 30 days:" in result.output
    assert "Balance 200,000 runs out:" in result.output
    assert "To last until 2026-05-31: buy" in result.output
    data = json.loads(runner.invoke(main, [*args, "-o", "json", "--horizon", "30"]).output)
    assert len(data["days"]) == 30
    assert data["pack_credits"] == 100_000
    table = runner.invoke(main, [*args, "-o", "csv", "--pack-credits", "25000"]).output
    assert table.splitlines()[0] == "date,p50,p90,cumulative_p50,cumulative_p90"
    assert len(table.splitlines()) == 91


def test_forecast_needs_a_credit_plan(runner: CliRunner) -> None:
    result = runner.invoke(main, ["forecast", HISTORY, "-m", "per-conversation"])
    assert result.exit_code == 2
    assert "not a credit plan" in result.output
