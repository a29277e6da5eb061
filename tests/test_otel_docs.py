"""The OpenTelemetry page's examples and ``examples/otel_console.py`` run.

Each block runs in a fresh interpreter, because a block may set OpenTelemetry's global
providers, which a process can do once.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)
BLOCKS = BLOCK.findall((ROOT / "docs" / "opentelemetry.md").read_text())


def run_python(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=60, cwd=ROOT
    )


def test_the_page_has_examples() -> None:
    assert len(BLOCKS) >= 4


@pytest.mark.parametrize("number", range(len(BLOCKS)))
def test_page_block_runs(number: int) -> None:
    result = run_python("-c", BLOCKS[number])
    assert result.returncode == 0, f"block {number + 1} failed:\n{result.stderr}"


def test_the_first_block_prints_the_cost_on_the_span() -> None:
    result = run_python("-c", BLOCKS[0])
    assert '"flexcredits.credits": 20' in result.stdout
    assert '"flexcredits.action": "lookup_order"' in result.stdout


def test_the_console_example_shows_attributes_metrics_and_record_ids() -> None:
    result = run_python(str(ROOT / "examples" / "otel_console.py"))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert '"name": "handle case"' in out
    assert '"flexcredits.action": "identify_customer"' in out  # annotates "handle case"
    assert '"name": "search_knowledge"' in out  # then opens its own spans
    assert '"flexcredits.credits": 40' in out
    assert '"flexcredits.tag.customer": "c-88"' in out
    assert '"description": "PermissionError: ada needs a supervisor"' in out  # own span
    assert '"flexcredits.error_type": "PermissionError"' in out
    assert '"name": "flexcredits.credits"' in out
    assert '"flexcredits.tag.department": "billing"' in out
    records = re.findall(r"trace_id=([0-9a-f]{32}) span_id=([0-9a-f]{16})", out)
    assert len(records) == 3
    assert len({trace_id for trace_id, _ in records}) == 1
    for _, span_id in records:
        assert f'"span_id": "0x{span_id}"' in out
