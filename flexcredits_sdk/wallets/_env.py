"""The wallet of a meter made without one while ``FLEXCREDITS_URL`` is set."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from .._process import WALLETS, at_exit, at_fork
from .._records import UsageRecord
from ._http_base import URL_VARIABLE

__all__ = ["EnvWallet", "allow_network", "env_wallet"]

logger = logging.getLogger("flexcredits_sdk")

#: Asked before a network wallet is built from the environment (see `allow_network`).
_ALLOWED: list[Callable[[], bool]] = [lambda: True]


def allow_network(check: Callable[[], bool]) -> None:
    """Ask `check()` before any meter builds a network wallet from ``FLEXCREDITS_URL``.

    The default meter's module registers the switch the pytest plugin turns off, so that a test
    suite never reaches the network unless a test asks, whichever meter it uses.
    """
    _ALLOWED[0] = check


class EnvWallet:
    """A meter's wallet when none was given and ``FLEXCREDITS_URL`` is set.

    At the first action it chooses: an `HttpWallet` built from ``FLEXCREDITS_URL`` and
    ``FLEXCREDITS_API_KEY`` if `allowed()` says so (the pytest plugin says no), else an
    in-memory `OfflineWallet`. The `HttpWallet` is built on a thread of its own, so the first
    action does not wait for it; the records of the actions that end before it is ready are
    handed to it once it is. Every other attribute is the chosen wallet's (asking one waits
    until the wallet is built).

    Args:
        allowed: Whether a network wallet may be built, asked at the first action.
    """

    def __init__(self, allowed: Callable[[], bool] | None = None) -> None:
        self._allowed = allowed
        self._wallet: Any = None
        self._network: bool | None = None  # chosen at the first action
        self._waiting: list[tuple[UsageRecord, Any]] = []  # records before the wallet is built
        self._built = threading.Event()
        self._lock = threading.Lock()
        at_exit(self)
        at_fork(self, WALLETS)

    def __repr__(self) -> str:
        return f"EnvWallet({self._wallet!r})"

    def _choose(self) -> bool:
        """Return whether records go to a network wallet, choosing at the first call."""
        network = self._network
        if network is None:
            with self._lock:
                if self._network is None:
                    url = os.environ.get(URL_VARIABLE)
                    if url and (self._allowed or _ALLOWED[0])():
                        threading.Thread(
                            target=self._build, name="flexcredits-wallet-build", daemon=True
                        ).start()
                        self._network = True
                    else:
                        from ._offline import OfflineWallet

                        self._wallet = OfflineWallet()
                        self._built.set()
                        self._network = False
                network = self._network
        return network

    def _build(self) -> None:
        """Build the `HttpWallet` and hand it the records that waited for it."""
        wallet: Any
        try:
            from ._http import HttpWallet

            wallet = HttpWallet()
            logger.info("flexcredits: records go to the wallet service at %s", wallet.url)
        except Exception as exc:
            from ._offline import OfflineWallet

            logger.error(
                "flexcredits: cannot use the wallet service of %s (%s); records are kept in "
                "memory only and lost at exit",
                URL_VARIABLE,
                exc,
            )
            wallet = OfflineWallet()
        with self._lock:
            for record, hold in self._waiting:
                wallet.submit(record, hold)
            self._waiting.clear()
            self._wallet = wallet
        self._built.set()

    # --- fork (called by `flexcredits_sdk._process`) ---------------------------------------

    def before_fork(self) -> None:
        """Let a wallet being built finish first (a child would wait for it forever), then
        keep the state still until the fork is done."""
        if self._network:
            self._built.wait(30.0)
        self._lock.acquire()

    def after_fork_in_parent(self) -> None:
        self._lock.release()

    def after_fork_in_child(self) -> None:
        self._lock.release()

    def resolve(self) -> Any:
        """Return the wallet this stands for, choosing it and waiting until it is built."""
        self._choose()
        self._built.wait()
        return self._wallet

    @property
    def authorizes(self) -> bool:
        """Whether the chosen wallet authorizes actions before they run."""
        if self._choose():
            return False  # a wallet service books actions after they ran
        return bool(self._wallet.authorizes)

    def submit(self, record: UsageRecord, hold: Any = None, /) -> None:
        """Hand the record to the chosen wallet (or keep it until that wallet is built)."""
        wallet = self._wallet
        if wallet is None:
            with self._lock:
                wallet = self._wallet
                if wallet is None:
                    self._waiting.append((record, hold))
                    return
        wallet.submit(record, hold)

    def authorize(self, action: str, credits: int | Decimal, tags: Mapping[str, str]) -> Any:
        """Ask the chosen wallet (a wallet service never refuses)."""
        if self._choose():
            return None
        return self._wallet.authorize(action, credits, tags)

    @property
    def exit_timeout(self) -> float:
        """Seconds a shutdown at exit may take (the chosen wallet's own limit applies)."""
        return 5.0

    def flush(self, timeout: float | None = None) -> bool:
        """Flush the chosen wallet."""
        return bool(self.resolve().flush(timeout))

    def shutdown(self, timeout: float | None = None) -> bool:
        """Shut the chosen wallet down (nothing to do if no action ever ran)."""
        if self._network is None:
            return True
        return bool(self.resolve().shutdown(timeout))

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.resolve(), name)


def env_wallet(allowed: Callable[[], bool] | None = None) -> EnvWallet | None:
    """Return a stand-in wallet when ``FLEXCREDITS_URL`` is set, else ``None``."""
    return EnvWallet(allowed) if os.environ.get(URL_VARIABLE) else None
