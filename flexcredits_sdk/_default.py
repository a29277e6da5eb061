"""The global default meter and the module-level functions bound to it.

Functions decorated with `flexcredits_sdk.metered_action` at import time follow a later
`configure()`, because `configure()` changes the default meter in place.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, ParamSpec, TypeVar, overload

from ._action import ActionScope
from ._meter import Meter, default_meter
from ._pricing import RateCard
from ._telemetry import SpanMode
from .wallets._env import allow_network
from .wallets._protocol import Sink

__all__ = ["action", "configure", "flush", "get_meter", "metered_action", "shutdown"]

P = ParamSpec("P")
R = TypeVar("R")

#: Whether a meter may build a network wallet from ``FLEXCREDITS_URL``; the pytest plugin
#: turns this off so that a test suite never reaches the network unless a test asks.
_ENV_WALLET_ALLOWED = True

allow_network(lambda: _ENV_WALLET_ALLOWED)
#: Never fails at import: a bad ``FLEXCREDITS_ENVIRONMENT`` is raised at first use.
_DEFAULT = default_meter()


def get_meter() -> Meter:
    """Return the global default meter."""
    return _DEFAULT


def configure(
    *,
    rate_card: RateCard | None = None,
    environment: str | None = None,
    wallet: Sink | None = None,
    tags: Mapping[str, str] | None = None,
    clock: Callable[[], int] | None = None,
    spans: SpanMode | None = None,
    metric_tags: Iterable[str] | None = None,
) -> Meter:
    """Configure the global default meter in place (see `Meter.configure`).

    Until configured it prices with `RateCard.agentforce()` in ``production`` (or
    ``FLEXCREDITS_ENVIRONMENT``) and books in an `HttpWallet` when ``FLEXCREDITS_URL`` is set,
    else in an in-memory `OfflineWallet`.

    Returns:
        The default meter.
    """
    return _DEFAULT.configure(
        rate_card=rate_card,
        environment=environment,
        wallet=wallet,
        tags=tags,
        clock=clock,
        spans=spans,
        metric_tags=metric_tags,
    )


@overload
def metered_action(func: Callable[P, R], /) -> Callable[P, R]: ...


@overload
def metered_action(
    func: None = None,
    /,
    *,
    name: str | None = None,
    action_type: str = "standard",
    units: int = 1,
    tags: Mapping[str, str] | None = None,
    meter: Meter | None = None,
) -> Callable[[Callable[P, R]], Callable[P, R]]: ...


def metered_action(
    func: Callable[P, R] | None = None,
    /,
    *,
    name: str | None = None,
    action_type: str = "standard",
    units: int = 1,
    tags: Mapping[str, str] | None = None,
    meter: Meter | None = None,
) -> Callable[P, R] | Callable[[Callable[P, R]], Callable[P, R]]:
    """Meter every call of a function as one action (see `Meter.metered_action`).

    Args:
        meter: The meter to use; the global default meter when omitted.
    """
    target = meter or _DEFAULT
    if func is not None:
        return target.metered_action(func)
    return target.metered_action(name=name, action_type=action_type, units=units, tags=tags)


def action(
    name: str,
    *,
    action_type: str = "standard",
    units: int = 1,
    tags: Mapping[str, str] | None = None,
    meter: Meter | None = None,
) -> ActionScope:
    """Meter a block as one action (see `Meter.action`).

    Args:
        meter: The meter to use; the global default meter when omitted.
    """
    return (meter or _DEFAULT).action(name, action_type=action_type, units=units, tags=tags)


def flush(timeout: float | None = None) -> bool:
    """Deliver what the default meter's wallet has pending; return whether all went out."""
    return _DEFAULT.flush(timeout)


def shutdown(timeout: float | None = None) -> bool:
    """Flush and close the default meter's wallet."""
    return _DEFAULT.shutdown(timeout)


def _reset_for_tests(**settings: Any) -> Meter:
    """Put the default meter back to its unconfigured state (used by the test fixtures)."""
    from .wallets._offline import OfflineWallet

    return _DEFAULT.configure(
        rate_card=settings.get("rate_card") or RateCard.agentforce(),
        environment=settings.get("environment") or "production",
        wallet=settings.get("wallet") or OfflineWallet(),
        tags=settings.get("tags") or {},
        spans=settings.get("spans") or "auto",
        metric_tags=settings.get("metric_tags") or (),
    )
