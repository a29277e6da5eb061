"""Pricing models: the ways agent platforms bill, as data a user can edit.

Four kinds, told apart by ``kind``:

- ``credits``: each action costs credits from a `RateCard` (by name or type, per environment);
  credits cost money, with optional allotments (seat licences, packs, promotional grants, monthly
  or annual credits that expire), volume tiers and whole-credit rounding;
- ``per_conversation``: a flat price per conversation;
- ``per_resolution``: a flat price per resolved conversation (counted once per conversation);
- ``per_ticket``: a price per ticket (conversation), with an optional monthly cap.

Every model is a frozen pydantic model, read from and written to JSON or TOML files.
"""

from __future__ import annotations

import itertools
import json
import math
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from .._exceptions import (
    ConfigurationError,
    MissingField,
    RateCardError,
    UnknownActionType,
    UnknownEnvironment,
    UnpricedAction,
)
from .._files import in_file, load_table, parse_table
from .._pricing import Money, RateCard

__all__ = [
    "Allotment",
    "CreditPlan",
    "PerConversation",
    "PerResolution",
    "PerTicket",
    "PricingModel",
    "Tier",
    "dump_model",
    "load_model",
    "loads_model",
]

Rounding = Literal["exact", "per_action", "per_month"]
Every = Literal["month", "year", "once"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise _error(exc, data) from None


class Allotment(_Frozen):
    """Credits included for a fee: seat licences, capacity packs, grants, allotments.

    Included credits are used before anything is charged per credit; the soonest to expire go
    first (monthly, then annual, then one-off). Unused monthly credits expire at the end of the
    month, annual ones 12 months after the history's first month; ``once`` credits never expire.

    Attributes:
        name: What the credits are, e.g. ``"seat"`` or ``"capacity pack"``.
        credits: Credits included per unit and period.
        price: The fee per unit and period (0 for a free or promotional grant).
        quantity: Units bought, e.g. the number of seats.
        every: ``"month"``, ``"year"`` or ``"once"`` (a one-off grant at the start).
    """

    name: Annotated[str, Field(min_length=1)]
    credits: Annotated[int, Field(ge=0, strict=True)]
    price: Money = Decimal(0)
    quantity: Annotated[int, Field(ge=0, strict=True)] = 1
    every: Every = "month"


class Tier(_Frozen):
    """A volume tier: the price of each credit up to `up_to` credits used in a month.

    Tiers are graduated: the first tier's price applies to the first credits of the month, the
    next tier's to the following ones. The last tier has no `up_to` (``None``: no bound).
    """

    up_to: Annotated[int, Field(gt=0, strict=True)] | None = None
    price: Money


class _Model(_Frozen):
    name: Annotated[str, Field(min_length=1)]
    description: str = ""
    source: str = ""


class CreditPlan(_Model):
    """Actions cost credits from a rate card; credits cost money.

    Attributes:
        rate_card: Credits per action (by name or type, per environment) and the price of a
            credit (its ``credit_price``, or pack price over pack size).
        rounding: ``"exact"`` (fractional credits are charged as they are), ``"per_action"``
            (each action is charged in whole credits, rounded up) or ``"per_month"``
            (fractional credits accrue and the month's total is rounded up).
        allotments: Credits included for a fee, used before credits are bought.
        tiers: Graduated prices per credit over the month's credits beyond the allotments;
            without tiers every such credit costs the rate card's price.
    """

    kind: Literal["credits"] = "credits"
    rate_card: RateCard
    rounding: Rounding = "exact"
    allotments: tuple[Allotment, ...] = ()
    tiers: tuple[Tier, ...] = ()

    @model_validator(mode="after")
    def _check(self) -> CreditPlan:
        if not self.rate_card.action_types:
            raise ConfigurationError(
                "rate_card.action_types", {}, "must price at least one action type"
            )
        bounds = [t.up_to for t in self.tiers]
        if not bounds:
            return self
        last = len(bounds) - 1
        if bounds[-1] is not None:
            raise ConfigurationError(
                f"tiers.{last}.up_to", bounds[-1], "must be absent: the last tier has no bound"
            )
        for index, bound in enumerate(bounds[:-1]):
            if bound is None:
                raise MissingField(f"tiers.{index}.up_to", "only the last tier may lack it")
        for index, (low, high) in enumerate(itertools.pairwise(bounds[:-1]), 1):
            if low is not None and high is not None and high <= low:
                raise ConfigurationError(
                    f"tiers.{index}.up_to", high, f"must be above the tier before ({low})"
                )
        return self

    @property
    def list_price(self) -> Decimal:
        """The price of a credit bought one at a time: the first tier's, or the rate card's."""
        return self.tiers[0].price if self.tiers else self.rate_card.usd_per_credit

    def credits_for(self, action: str, action_type: str, environment: str) -> int | Decimal:
        """Return the credits one unit of an action costs under this plan.

        Args:
            action: The action's name (a price listed for the name wins).
            action_type: The action's type.
            environment: The environment it ran in.

        Raises:
            UnpricedAction: The rate card prices neither the action nor its type there.
        """
        try:
            credits = self.rate_card.price(action_type, environment, action=action)
        except (UnknownActionType, UnknownEnvironment) as exc:
            raise UnpricedAction(
                action, self.name, f"{exc.field}={exc.value!r}: {exc.reason}"
            ) from None
        if self.rounding == "per_action" and isinstance(credits, Decimal):
            return math.ceil(credits)
        return credits

    def bill_month(
        self, credits: int | Decimal, month_index: int, pools: dict[str, int | Decimal]
    ) -> tuple[Decimal, int | Decimal]:
        """Return the money and the credits bought for one month of use.

        Args:
            credits: The credits the month's actions cost.
            month_index: 0 for the history's first month, 1 for the next, ...
            pools: Credits left in the annual (``"year"``) and one-off (``"once"``) allotments;
                updated in place. Start from an empty dict.

        Returns:
            The month's bill (fees plus credits bought) and the credits bought.
        """
        if self.rounding == "per_month":
            credits = math.ceil(credits)
        if month_index % 12 == 0:
            pools["year"] = 0
        fees = Decimal(0)
        monthly = 0
        for a in self.allotments:
            if a.every == "month":
                monthly += a.credits * a.quantity
            elif a.every == "year" and month_index % 12 == 0:
                pools["year"] += a.credits * a.quantity
            elif a.every == "once" and month_index == 0:
                pools["once"] = pools.get("once", 0) + a.credits * a.quantity
            else:
                continue
            fees += a.price * a.quantity
        left: int | Decimal = max(credits - monthly, 0)
        for pool in ("year", "once"):
            used = min(left, pools.get(pool, 0))
            if used:
                pools[pool] -= used
                left -= used
        return fees + self._buy(left), left

    def _buy(self, credits: int | Decimal) -> Decimal:
        if not self.tiers:
            return Decimal(credits * self.rate_card.usd_per_credit)
        cost = Decimal(0)
        floor = 0
        for tier in self.tiers:
            top = credits if tier.up_to is None else min(credits, tier.up_to)
            if top > floor:
                cost += (top - floor) * tier.price
            if tier.up_to is None or credits <= tier.up_to:
                break
            floor = tier.up_to
        return cost


class PerConversation(_Model):
    """A flat price for each conversation, whatever it does.

    Attributes:
        price: The price of one conversation.
    """

    kind: Literal["per_conversation"] = "per_conversation"
    price: Money


class PerResolution(_Model):
    """A flat price for each resolved conversation; unresolved ones are free.

    A conversation is resolved when any of its rows says so; it is counted once.

    Attributes:
        price: The price of one resolution.
    """

    kind: Literal["per_resolution"] = "per_resolution"
    price: Money


class PerTicket(_Model):
    """A price per ticket (one conversation is one ticket), with an optional monthly cap.

    Attributes:
        price: The price of one ticket.
        monthly_cap: The most one month can cost, if capped.
    """

    kind: Literal["per_ticket"] = "per_ticket"
    price: Money
    monthly_cap: Money | None = None


#: Any pricing model; files name their kind in ``kind``.
PricingModel = Annotated[
    CreditPlan | PerConversation | PerResolution | PerTicket, Field(discriminator="kind")
]
_ADAPTER: TypeAdapter[CreditPlan | PerConversation | PerResolution | PerTicket] = TypeAdapter(
    PricingModel
)


def _error(exc: ValidationError, data: Any) -> ConfigurationError:
    """Return the first problem of `exc` as a `ConfigurationError` naming its full field path.

    Nested models raise their own `ConfigurationError`, which pydantic wraps; it is unwrapped
    here and its field put after the path that leads to it.
    """
    first = exc.errors(include_url=False)[0]
    parts = [str(part) for part in first["loc"]]
    if parts and isinstance(data, dict) and parts[0] == data.get("kind"):
        parts = parts[1:]  # the tag of the discriminated union
    ctx = first.get("ctx") or {}
    if first["type"] in ("missing", "union_tag_not_found"):
        return MissingField(".".join([*parts, "kind"] if ctx.get("discriminator") else parts))
    if first["type"] == "union_tag_invalid":
        return ConfigurationError(
            ".".join([*parts, "kind"]), ctx.get("tag"), f"must be one of {ctx['expected_tags']}"
        )
    inner = ctx.get("error")
    if isinstance(inner, ConfigurationError):
        if inner.field != "value" or not parts:  # a price's own check names no field
            parts.append(inner.field)
        field = ".".join(parts)
        if isinstance(inner, MissingField):
            return MissingField(field, inner.reason)
        if inner.reason == "Field required":  # a rate card's own message for a missing field
            return MissingField(field)
        kind = RateCardError if isinstance(inner, RateCardError) else ConfigurationError
        return kind(field, inner.value, inner.reason)
    reason = str(inner) if isinstance(inner, ValueError) else first["msg"]
    return ConfigurationError(".".join(parts) or "model", first.get("input", data), reason)


def loads_model(
    text: str, format: Literal["json", "toml"] = "json"
) -> CreditPlan | PerConversation | PerResolution | PerTicket:
    """Parse a pricing model from JSON or TOML text.

    Raises:
        ConfigurationError: The text does not parse (with its line), or a field is missing
            (`MissingField`, naming its path) or wrong (a `RateCardError` for a bad rate card).
    """
    return _validate(parse_table(text, format, None, "model"))


def _validate(data: dict[str, Any]) -> CreditPlan | PerConversation | PerResolution | PerTicket:
    try:
        return _ADAPTER.validate_python(data)
    except ValidationError as exc:
        raise _error(exc, data) from None


def load_model(path: str | Path) -> CreditPlan | PerConversation | PerResolution | PerTicket:
    """Load a pricing model from a ``.json`` or ``.toml`` file.

    Raises:
        ConfigurationError: The suffix is neither, the file does not parse or a field is wrong;
            the message names the file (and the line, for a file that does not parse).
        OSError: The file cannot be read.
    """
    path = Path(path)
    data = load_table(path, "model")
    try:
        return _validate(data)
    except ConfigurationError as exc:
        raise in_file(exc, str(path)) from None


def dump_model(
    model: CreditPlan | PerConversation | PerResolution | PerTicket, path: str | Path
) -> None:
    """Write a pricing model as JSON (``.json``) that `load_model` reads back unchanged.

    Raises:
        ConfigurationError: The path does not end in ``.json``.
    """
    path = Path(path)
    if path.suffix.lower() != ".json":
        raise ConfigurationError("path", str(path), "must end in .json")
    data = model.model_dump(mode="json", exclude_defaults=False)
    if isinstance(model, CreditPlan):
        data["rate_card"] = json.loads(model.rate_card.dumps("json"))
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
