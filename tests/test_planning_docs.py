"""The planning docs and examples run, show what the code prints, and the exports are exact."""

from __future__ import annotations

import importlib
import os
import re
import runpy
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner

from flexcredits_sdk import planning
from flexcredits_sdk.cli import main

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "planning.md"
PYTHON = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)
CONSOLE = re.compile(r"^```console\n\$ (.*?)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def test_python_blocks_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    namespace: dict[str, object] = {"__name__": "docs_planning"}
    blocks = PYTHON.findall(PAGE.read_text())
    assert len(blocks) == 3
    for number, block in enumerate(blocks, 1):
        exec(compile(block, f"planning.md:block{number}", "exec"), namespace)


def test_the_simulate_output_shown_is_the_commands(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    command, shown = CONSOLE.findall(PAGE.read_text())[0]
    assert command.startswith("flexcredits simulate examples/history.jsonl")
    result = CliRunner().invoke(main, command.split()[1:])
    assert result.exit_code == 0, result.output
    assert result.output == shown


def test_the_forecast_output_shown_is_the_examples() -> None:
    shown = next(o for c, o in CONSOLE.findall(PAGE.read_text()) if "planning_forecast" in c)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "planning_forecast.py")],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        env=env,
    )
    assert run.stdout == shown


def test_simulate_example(capsys: pytest.CaptureFixture[str]) -> None:
    module = runpy.run_path(str(ROOT / "examples" / "planning_simulate.py"))
    result = module["run"]()
    assert [m.name for m in result.models] == [
        "per-ticket",
        "agentforce",
        "per-resolution",
        "per-conversation",
        "team-plan",
    ]
    # Five seats at $30 cover the week's 3,853 credits: the bill is the seats' fee.
    assert result.model("team-plan").total == Decimal(150)
    assert result.model("agentforce").total == Decimal("19.74")
    out = capsys.readouterr().out
    assert "Cheapest at this volume: per-ticket ($16.00)" in out


def test_forecast_example() -> None:
    module = runpy.run_path(str(ROOT / "examples" / "planning_forecast.py"))
    backtest, forecast = module["run"]()
    assert backtest.mape < backtest.baseline_mape
    assert forecast.packs_p50 == 28


def test_all_is_sorted_and_complete() -> None:
    module = importlib.import_module("flexcredits_sdk.planning")
    exported = module.__all__
    assert exported == sorted(exported, key=lambda n: (not n.isupper(), n[0].islower(), n))
    # The package imports only its own names, so everything public in it is exported.
    public = {
        name
        for name, value in vars(module).items()
        if not name.startswith("_") and not isinstance(value, type(planning))
    }
    assert set(exported) == public, set(exported) ^ public


def test_importing_the_sdk_does_not_import_planning() -> None:
    code = "import sys, flexcredits_sdk; print('flexcredits_sdk.planning' in sys.modules)"
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert run.stdout.strip() == "False"
