"""The examples run and print the published figures."""

from __future__ import annotations

import runpy
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_agentforce_use_cases_figures(capsys: pytest.CaptureFixture[str]) -> None:
    module = runpy.run_path(str(ROOT / "examples" / "agentforce_use_cases.py"))
    production = module["run"]("production")
    sandbox = module["run"]("sandbox")
    assert production == {
        "simple case management": 60,
        "field-service appointment": 120,
        "onboarding question": 20,
    }
    assert sandbox == {
        "simple case management": 48,
        "field-service appointment": 96,
        "onboarding question": 16,
    }
    out = capsys.readouterr().out
    assert "simple case management        3 actions   60 credits  $0.30" in out
    assert "field-service appointment     6 actions  120 credits  $0.60" in out
    assert "onboarding question           1 action    20 credits  $0.10" in out
    assert "balance: 99,800 credits ($499.00) of 100,000" in out
    assert "  field-service   6 actions  120 credits  $0.60" in out


def test_demo_runs_as_a_script() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "agentforce_use_cases.py")],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert "== sandbox ==" in result.stdout
    assert "balance: 99,840 credits ($499.20) of 100,000" in result.stdout
