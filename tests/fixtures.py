"""Records, metered actions and exporters for the tests, made in one place.

The pytest fixtures built on them (`server`, `make_exporter`, `make_wallet`, `sleeps`) are in
``conftest.py``; these plain functions are for module level too (e.g. in ``parametrize``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from wallet_stub import StubWallet

import flexcredits_sdk as fc
from flexcredits_sdk import UsageRecord, new_id
from flexcredits_sdk._export import Exporter, ExportSettings, Transport, check_url
from flexcredits_sdk.wallets import HttpWallet

#: The API key `StubWallet` and `StubServer` expect by default.
KEY = "test-key"

#: The `make_exporter` fixture: takes `exporter`'s arguments.
MakeExporter = Callable[..., Exporter]
#: The `make_wallet` fixture: ``make_wallet(url, api_key=KEY, **options)``.
MakeWallet = Callable[..., HttpWallet]


def meter_varied_actions(wallet: fc.OfflineWallet, clock: Any, actions: int = 2_000) -> None:
    """Meter `actions` actions over days of `clock` (a `FakeClock`), into `wallet`: two
    environments, two names, 1 to 3 units, four departments and untagged ones, nine
    conversations, and errors."""
    meters = [
        fc.Meter(wallet=wallet, clock=clock, environment=env) for env in ("production", "sandbox")
    ]
    for i in range(actions):
        tags = {"department": ("hr", "sales", "it", "ops")[i % 4]} if i % 5 else {}
        with fc.tags(**tags), fc.conversation(f"c-{i % 9}"):
            try:
                with meters[i % 7 == 0].action(("answer", "lookup")[i % 2]) as act:
                    act.units = 1 + i % 3
                    if i % 13 == 0:
                        raise ValueError("no")
            except ValueError:
                pass
        clock.advance(127)


def new_record(**changes: Any) -> UsageRecord:
    """Return a production record of one standard action (20 credits) with a fresh id.

    Args:
        **changes: Fields to replace (``units=0``, ``tags={...}``, ...).
    """
    base = UsageRecord(
        new_id(), "identify_customer", "standard", 1, 20, "production", {}, None, 10**18, 1_000
    )
    return base._replace(**changes)


def exporter(
    stub: StubWallet | None = None,
    *,
    outbox_path: Path | None = None,
    clock: Any = None,
    **settings: Any,
) -> Exporter:
    """Return an exporter, not started, that delivers to `stub` through `httpx.MockTransport`.

    The caller shuts it down (the `make_exporter` fixture does).

    Args:
        stub: The wallet that answers (a new one that needs no API key by default).
        outbox_path: The outbox file (``None``: memory only).
        clock: The exporter's monotonic clock.
        **settings: `ExportSettings` options.
    """
    client = httpx.Client(transport=httpx.MockTransport(stub or StubWallet(api_key=None)))
    transport = Transport(check_url("https://wallet.test"), None, client=client)
    return Exporter(
        transport, ExportSettings(**settings), outbox_path=outbox_path, clock=clock, start=False
    )
