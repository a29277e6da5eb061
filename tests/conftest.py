"""Shared fixtures: every test starts with a fresh, unconfigured default meter."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import flexcredits_sdk as fc
from flexcredits_sdk._default import _reset_for_tests
from flexcredits_sdk.testing import FakeClock


@pytest.fixture(autouse=True)
def _fresh_default_meter(monkeypatch: pytest.MonkeyPatch) -> Iterator[fc.Meter]:
    monkeypatch.delenv("FLEXCREDITS_ENVIRONMENT", raising=False)
    monkeypatch.delenv("FLEXCREDITS_URL", raising=False)
    monkeypatch.delenv("FLEXCREDITS_API_KEY", raising=False)
    meter = _reset_for_tests()
    yield meter
    _reset_for_tests()


@pytest.fixture
def clock() -> FakeClock:
    """A fake clock at 2026-05-28T20:26:40Z."""
    return FakeClock(1_780_000_000 * 10**9)
