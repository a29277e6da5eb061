"""pytest plugin and helpers for asserting what a code path costs.

Installed with the package (the ``pytest11`` entry point ``flexcredits``), the plugin gives:

- the `flex_wallet` fixture: a fresh `OfflineWallet` as the default meter's wallet for one
  test, with a `FakeClock` and deterministic record ids, and assertion helpers;
- the ``@pytest.mark.flexcredits(max_credits=..., environment=..., rate_card=...)`` marker,
  which fails a test that consumed more than `max_credits`, listing what each action cost;
- ``--flexcredits-report``: records, credits and money per test after the run, the most
  expensive first (under pytest-xdist too).

Under pytest the default meter never builds a network wallet from ``FLEXCREDITS_URL``, not even
for a call made while a conftest is imported; a test that wants one configures an `HttpWallet`
itself.

`FakeClock` and `FlexWallet` need no pytest: importing them does not import it. `flex_wallet`
(the fixture function) is imported from the plugin on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._testing_helpers import DEFAULT_START_NS, FakeClock, FlexWallet

if TYPE_CHECKING:
    from ._pytest_plugin import flex_wallet

__all__ = ["DEFAULT_START_NS", "FakeClock", "FlexWallet", "flex_wallet"]


def __getattr__(name: str) -> Any:
    if name == "flex_wallet":
        return importlib.import_module("._pytest_plugin", __name__.rpartition(".")[0]).flex_wallet
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
