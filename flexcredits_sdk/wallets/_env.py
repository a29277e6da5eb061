"""The unconfigured default meter's wallet when ``FLEXCREDITS_URL`` is set."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from .._records import UsageRecord
from ._http_base import URL_VARIABLE

__all__ = ["EnvWallet", "env_wallet"]


class EnvWallet:
    """The unconfigured default meter's wallet when ``FLEXCREDITS_URL`` is set.

    On first use it becomes an `HttpWallet` built from ``FLEXCREDITS_URL`` and
    ``FLEXCREDITS_API_KEY`` if `allowed()` says so (the pytest plugin says no), else an
    in-memory `OfflineWallet`; every attribute is the chosen wallet's.

    Args:
        allowed: Whether a network wallet may be built, asked on first use.
    """

    def __init__(self, allowed: Callable[[], bool]) -> None:
        self._allowed = allowed
        self._wallet: Any = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"EnvWallet({self._wallet!r})"

    def resolve(self) -> Any:
        """Return the wallet this stands for, choosing it on first use."""
        wallet = self._wallet
        if wallet is None:
            with self._lock:
                if self._wallet is None:
                    if self._allowed() and os.environ.get(URL_VARIABLE):
                        from ._http import HttpWallet

                        self._wallet = HttpWallet()
                    else:
                        from ._offline import OfflineWallet

                        self._wallet = OfflineWallet()
                wallet = self._wallet
        return wallet

    @property
    def authorizes(self) -> bool:
        """Whether the chosen wallet authorizes actions before they run."""
        return bool(self.resolve().authorizes)

    def submit(self, record: UsageRecord, hold: Any = None, /) -> None:
        """Hand the record to the chosen wallet."""
        self.resolve().submit(record, hold)

    def authorize(self, action: str, credits: int | Decimal, tags: Mapping[str, str]) -> Any:
        """Ask the chosen wallet."""
        return self.resolve().authorize(action, credits, tags)

    def flush(self, timeout: float | None = None) -> bool:
        """Flush the chosen wallet."""
        return bool(self.resolve().flush(timeout))

    def shutdown(self, timeout: float | None = None) -> bool:
        """Shut the chosen wallet down."""
        return bool(self.resolve().shutdown(timeout))

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.resolve(), name)


def env_wallet(allowed: Callable[[], bool]) -> EnvWallet | None:
    """Return the default meter's stand-in wallet when ``FLEXCREDITS_URL`` is set, else ``None``."""
    return EnvWallet(allowed) if os.environ.get(URL_VARIABLE) else None
