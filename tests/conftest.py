"""Shared fixtures: every test starts with a fresh, unconfigured default meter; stub servers,
exporters and HTTP wallets that are always stopped (see ``fixtures.py`` for records)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fixtures import KEY, exporter
from wallet_stub import StubServer

import flexcredits_sdk as fc
from flexcredits_sdk._default import _reset_for_tests
from flexcredits_sdk._export import Exporter
from flexcredits_sdk.testing import FakeClock
from flexcredits_sdk.wallets import HttpWallet


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


@pytest.fixture
def server() -> Iterator[StubServer]:
    """A `StubServer` on loopback (API key `KEY`), stopped after the test."""
    with StubServer() as running:
        yield running


@pytest.fixture
def make_exporter() -> Iterator[Callable[..., Exporter]]:
    """Make exporters like `fixtures.exporter`; each is shut down (its outbox closed) after
    the test."""
    made: list[Exporter] = []

    def make(*args: Any, **options: Any) -> Exporter:
        made.append(exporter(*args, **options))
        return made[-1]

    yield make
    for each in made:
        each.shutdown(timeout=5)


@pytest.fixture
def sleeps() -> list[float]:
    """What the wallets of `make_wallet` slept, in seconds (they never really sleep)."""
    return []


@pytest.fixture
def make_wallet(tmp_path: Path, sleeps: list[float]) -> Iterator[Callable[..., HttpWallet]]:
    """Make `HttpWallet`s with their outbox under `tmp_path` and sleeps recorded in `sleeps`;
    each is shut down after the test."""
    made: list[HttpWallet] = []

    def make(url: str, api_key: str | None = KEY, **options: Any) -> HttpWallet:
        options.setdefault("outbox_dir", tmp_path / "outbox")
        options.setdefault("sleep", sleeps.append)
        made.append(HttpWallet(url, api_key, **options))
        return made[-1]

    yield make
    for wallet in made:
        wallet.shutdown(timeout=5)
