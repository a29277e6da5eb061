"""Shared fixtures: every test starts with a fresh, unconfigured default meter."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import flexcredits_sdk as fc
from flexcredits_sdk._default import _reset_for_tests


@pytest.fixture(autouse=True)
def _fresh_default_meter(monkeypatch: pytest.MonkeyPatch) -> Iterator[fc.Meter]:
    monkeypatch.delenv("FLEXCREDITS_ENVIRONMENT", raising=False)
    monkeypatch.delenv("FLEXCREDITS_URL", raising=False)
    monkeypatch.delenv("FLEXCREDITS_API_KEY", raising=False)
    meter = _reset_for_tests()
    yield meter
    _reset_for_tests()


class FakeClock:
    """A clock in Unix nanoseconds that moves only when told to."""

    def __init__(self, start_ns: int = 1_780_000_000 * 10**9) -> None:
        self.now = start_ns

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float = 0, *, ns: int = 0) -> None:
        self.now += int(seconds * 1_000_000_000) + ns


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
