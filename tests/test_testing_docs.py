"""Every ``python`` block of docs/testing.md runs as a test module in an inner pytest session."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

PAGE = Path(__file__).resolve().parent.parent / "docs" / "testing.md"
BLOCKS = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL).findall(PAGE.read_text())


def test_the_page_has_examples() -> None:
    assert len(BLOCKS) >= 4


@pytest.mark.parametrize("number", range(len(BLOCKS)))
def test_page_block_passes(pytester: pytest.Pytester, number: int) -> None:
    block = BLOCKS[number]
    tests = len(re.findall(r"^def test_", block, re.MULTILINE))
    pytester.makepyfile(**{f"test_block_{number + 1}": block})
    result = pytester.runpytest("--strict-markers", "-p", "no:asyncio")
    result.assert_outcomes(passed=tests)


def test_the_documented_failure_output_is_the_real_one(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_ceiling="""
import pytest

import flexcredits_sdk as fc


@fc.metered_action(name="search")
def search(hits=1):
    fc.current_action().units = hits


@fc.metered_action(name="answer")
def answer():
    search()


@pytest.mark.flexcredits(max_credits=40)
def test_over():
    answer()
    search(hits=2)
"""
    )
    result = pytester.runpytest("-p", "no:asyncio")
    result.assert_outcomes(failed=1)
    (documented,) = re.findall(r"```text\n(flexcredits: .*?)```", PAGE.read_text(), re.DOTALL)
    result.stdout.fnmatch_lines(documented.splitlines())
