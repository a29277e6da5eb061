"""Spend control over HTTP: the lease settings, the tenant's policy, and holds asked and given
back (``GET /v1/spend-control``, ``POST /v1/holds``, ``DELETE /v1/holds/{id}``)."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, ItemsView
from dataclasses import dataclass, field, fields
from decimal import Decimal
from typing import Any, Literal

import httpx
from pydantic import ValidationError

from .._exceptions import ConfigurationError, WalletError
from .._export import Transport
from .._export._transport import reason_of
from .._models import BudgetInfo, HoldInfo
from .._records import new_id
from .._validate import check_credits
from .._wire import MAX_HOLD_TTL, HoldRequest, RefusalResponse, SpendControl

__all__ = ["NOTHING", "Budget", "HoldClient", "LeaseMode", "LeaseSettings", "Policy", "Refused"]

logger = logging.getLogger("flexcredits_sdk")

LeaseMode = Literal["auto", "per_action", "off"]
_MODES: tuple[LeaseMode, ...] = ("auto", "per_action", "off")

#: Seconds before a policy that could not be fetched is asked for again.
POLICY_RETRY = 10.0
#: Waits between the attempts of one ``POST /v1/holds`` (same id, so a hold is taken once)
#: after a connection error or a 5xx, 408 or 429 answer.
_HOLD_BACKOFF = (0.05, 0.25)
_RETRY_STATUS = frozenset({408, 429}) | frozenset(range(500, 600))


@dataclass(frozen=True)
class LeaseSettings:
    """How a wallet service's holds are taken (see `HttpWallet` for the user's view).

    Attributes:
        lease: ``"auto"`` (blocks of credit per set of matched budgets), ``"per_action"``
            (one hold of exactly each action's credits) or ``"off"`` (no holds: actions are
            booked after they ran, and never refused).
        lease_ttl: Seconds a hold lasts on the service unless given back before.
        lease_max_credits: The most credits one block holds.
        lease_idle: Seconds after which a lease no action drew on is given back.

    Raises:
        ConfigurationError: A value is of the wrong type or out of range.
    """

    lease: LeaseMode = "auto"
    lease_ttl: float = 30.0
    lease_max_credits: int | Decimal = 200_000
    lease_idle: float = 5.0

    def __post_init__(self) -> None:
        if self.lease not in _MODES:
            hint = ""
            if isinstance(self.lease, int | float) and not isinstance(self.lease, bool):
                hint = " (the seconds an outbox claim lasts are now claim_ttl)"
            raise ConfigurationError("lease", self.lease, f"must be one of {_MODES}{hint}")
        for name in ("lease_ttl", "lease_idle"):
            value: Any = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ConfigurationError(name, value, "must be a positive number of seconds")
            if not math.isfinite(value):
                raise ConfigurationError(name, value, "must be finite")
        if self.lease_ttl > MAX_HOLD_TTL:
            raise ConfigurationError(
                "lease_ttl", self.lease_ttl, f"must be at most {MAX_HOLD_TTL} seconds"
            )
        check_credits(self.lease_max_credits, "lease_max_credits", allow_zero=False)

    @classmethod
    def names(cls) -> frozenset[str]:
        """Return the names of the settings."""
        return frozenset(each.name for each in fields(cls))


@dataclass(frozen=True, eq=False)  # hashed by identity: a tuple of them is a lease's key
class Budget:
    """A hard budget of the policy; an action matches it when it carries all its tags."""

    id: str
    items: ItemsView[str, str]  # compared with an action's ``tags.items()``, in C
    info: BudgetInfo


@dataclass(frozen=True)
class Policy:
    """Which actions need a hold: all (overdraft denied), or those a hard budget matches."""

    deny: bool
    budgets: tuple[Budget, ...]
    max_ttl: float
    needed: bool = field(init=False)  # read on every action: a field, not a property

    def __post_init__(self) -> None:
        object.__setattr__(self, "needed", self.deny or bool(self.budgets))


#: No action needs a hold (a service without spend control, or one that cannot be asked).
NOTHING = Policy(deny=False, budgets=(), max_ttl=MAX_HOLD_TTL)


class Refused(Exception):
    """A hold was refused (402), with the service's answer."""

    def __init__(self, answer: RefusalResponse) -> None:
        self.answer = answer
        super().__init__(answer.error.message)


class HoldClient:
    """The spend-control requests of one wallet service, counted as round trips.

    Nothing here raises into an agent: a request that fails is logged, and the action runs
    without a hold (fail-open), except for a refusal (`Refused`).

    Args:
        transport: The exporter's transport (client, headers, endpoints; made again in a
            forked child).
        sleep: Waits between attempts (for tests).
    """

    def __init__(self, transport: Transport, sleep: Callable[[float], Any] | None = None) -> None:
        self._transport = transport
        self._sleep = sleep or time.sleep
        self._lock = threading.Lock()
        self.counts = dict.fromkeys(("holds", "released", "policy_fetches", "errors"), 0)

    @property
    def url(self) -> str:
        return str(self._transport.url)

    def count(self, name: str) -> None:
        with self._lock:
            self.counts[name] += 1

    def policy(self, max_age: float) -> tuple[Policy, float]:
        """Return the tenant's policy and how long to use it (``GET /v1/spend-control``).

        When the service cannot say, no action needs a hold until `POLICY_RETRY` seconds
        have passed (logged): the agent is never blocked by a service it cannot reach.
        """
        self.count("policy_fetches")
        try:
            response = self._transport.client.get(
                self._transport.endpoint("spend-control"), headers=self._transport.headers
            )
            if response.status_code == 404:  # a service without spend control
                logger.info("flexcredits: %s has no spend control; no holds are taken", self.url)
                return NOTHING, max_age
            if response.status_code >= 400:
                raise WalletError(f"answered {response.status_code}")
            answer = SpendControl.model_validate_json(response.content)
        except Exception as exc:  # whatever it is, the agent goes on: fail open
            self.count("errors")
            logger.warning(
                "flexcredits: cannot fetch the spend-control policy of %s (%s); actions run "
                "without holds, and cannot be refused, until it is asked again in %gs",
                self.url,
                exc if isinstance(exc, WalletError) else reason_of(exc),
                POLICY_RETRY,
            )
            return NOTHING, POLICY_RETRY
        budgets = tuple(
            Budget(b.id, dict(b.tags).items(), b) for b in answer.hard_budgets if b.hard
        )
        return Policy(answer.overdraft == "deny", budgets, float(answer.max_ttl)), max_age

    def take(self, credits: int | Decimal, tags: dict[str, str], ttl: float) -> HoldInfo | None:
        """``POST /v1/holds``, tried again with the same id; ``None`` when no hold can be had.

        Raises:
            Refused: The service refused the hold (402).
        """
        body = HoldRequest(id=new_id(), credits=credits, tags=tags, ttl=ttl).model_dump(mode="json")
        reason = ""
        for wait in (*_HOLD_BACKOFF, None):
            self.count("holds")
            try:
                response = self._transport.client.post(
                    self._transport.endpoint("holds"), json=body, headers=self._transport.headers
                )
            except (httpx.HTTPError, WalletError) as exc:
                reason = str(exc) if isinstance(exc, WalletError) else reason_of(exc)
                retry = isinstance(exc, httpx.TransportError)
            else:
                status = response.status_code
                try:
                    if status in (200, 201):
                        return HoldInfo.model_validate_json(response.content)
                    if status == 402:
                        raise Refused(RefusalResponse.model_validate_json(response.content))
                except ValidationError:
                    reason = f"answered {status} with a malformed body"
                    retry = False
                else:
                    reason = f"answered {status}: {response.text[:200]}"
                    retry = status in _RETRY_STATUS
            if not retry or wait is None:
                break
            self._sleep(wait)
        self.count("errors")
        logger.warning(
            "flexcredits: cannot take a hold of %s credits from %s (%s); the action runs "
            "without one",
            credits,
            self.url,
            reason,
        )
        return None

    def release(self, hold_id: str) -> None:
        """``DELETE /v1/holds/{id}`` (a hold already gone is fine: it expired)."""
        self.count("released")
        made = None
        try:
            client = self._transport.client
            if client.is_closed:  # at exit, after the exporter closed the client it made
                client = made = self._transport.new_client()
            response = client.delete(
                self._transport.endpoint(f"holds/{hold_id}"), headers=self._transport.headers
            )
            if response.status_code >= 400 and response.status_code != 404:
                raise WalletError(f"answered {response.status_code}")
        except (httpx.HTTPError, WalletError, RuntimeError) as exc:
            self.count("errors")
            logger.warning(
                "flexcredits: cannot give back hold %s to %s (%s); it expires by itself",
                hold_id,
                self.url,
                exc if isinstance(exc, WalletError) else reason_of(exc),
            )
        finally:
            if made is not None:
                made.close()
