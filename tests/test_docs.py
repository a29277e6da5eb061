"""Every ``python`` block of the core docs pages runs, in order, one namespace per page."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
PAGES = ["index.md", "metering.md", "pricing.md", "wallet.md", "architecture.md"]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


@pytest.mark.parametrize("page", PAGES)
def test_page_examples_run(page: str, capsys: pytest.CaptureFixture[str]) -> None:
    blocks = BLOCK.findall((DOCS / page).read_text())
    assert blocks, f"{page} has no python examples"
    namespace: dict[str, object] = {"__name__": f"docs_{page[:-3]}"}
    for number, block in enumerate(blocks, 1):
        try:
            exec(compile(block, f"{page}:block{number}", "exec"), namespace)
        except Exception as exc:  # pragma: no cover - the message is the report
            pytest.fail(f"{page} block {number} failed: {exc!r}\n{block}")
