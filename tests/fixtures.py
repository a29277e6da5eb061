"""Records and exporters for the delivery tests, made in one place.

The pytest fixtures built on them (`server`, `make_exporter`, `make_wallet`, `sleeps`) are in
``conftest.py``; these plain functions are for module level too (e.g. in ``parametrize``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from wallet_stub import StubWallet

from flexcredits_sdk import UsageRecord, new_id
from flexcredits_sdk._export import Exporter, ExportSettings, Transport, check_url
from flexcredits_sdk.wallets import HttpWallet

#: The API key `StubWallet` and `StubServer` expect by default.
KEY = "test-key"

#: The `make_exporter` fixture: takes `exporter`'s arguments.
MakeExporter = Callable[..., Exporter]
#: The `make_wallet` fixture: ``make_wallet(url, api_key=KEY, **options)``.
MakeWallet = Callable[..., HttpWallet]


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
