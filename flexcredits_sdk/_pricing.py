"""Rate cards: what an action costs in credits, and what a credit costs in money.

Credits are ``int`` or ``decimal.Decimal`` and money is ``Decimal``; a float is refused
wherever a price is read, because a float cannot hold 0.005 exactly.
"""

from __future__ import annotations

import difflib
import json
import logging
import math
import threading
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple, Self

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from ._exceptions import (
    ConfigurationError,
    MissingRateCardField,
    RateCardError,
    UnknownActionType,
    UnknownEnvironment,
)
from ._files import in_file, load_table, parse_table
from ._validate import not_a_number

__all__ = [
    "Credits",
    "ModelPrice",
    "ModelUsage",
    "Money",
    "RateCard",
    "to_exact",
    "warn_if_unlisted",
]

logger = logging.getLogger("flexcredits_sdk")

#: (rate card, action name) pairs already warned about, so each is said once.
_WARNED: set[tuple[str, str]] = set()
_WARNED_MAX = 10_000
_WARNED_LOCK = threading.Lock()


#: Credits and money are below 10**_MAX_DIGITS in magnitude and have at most _MAX_DIGITS decimal
#: places: anything else is a mistake, and turning a string such as "1e1000000" or "1e-100000000"
#: into an int (or a ratio of ints) alone would take minutes.
_MAX_DIGITS = 30
_MAX = 10**_MAX_DIGITS
_TOO_LARGE = f"must be less than 10**{_MAX_DIGITS} in magnitude"
_TOO_PRECISE = f"must have at most {_MAX_DIGITS} decimal places"


def to_exact(value: Any, field: str = "value") -> int | Decimal:
    """Return `value` as an int, or as a Decimal when it has a fractional part.

    Accepts ints, Decimals and decimal strings below 10**30 in magnitude with at most 30 decimal
    places; refuses floats and booleans.

    Raises:
        RateCardError: The value is a float, a boolean, not a number, not finite, too large or
            too precise.
    """
    if isinstance(value, bool):
        raise RateCardError(field, value, "must be a number, not a boolean")
    if isinstance(value, float):
        raise RateCardError(
            field, value, 'floats are not exact; write the number as a string, e.g. "0.5"'
        )
    if isinstance(value, int):
        if -_MAX < value < _MAX:
            return value
        raise RateCardError(field, value, _TOO_LARGE)
    if isinstance(value, str):
        try:
            value = Decimal(value.strip())
        except InvalidOperation:
            raise RateCardError(field, value, "is not a decimal number") from None
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise RateCardError(field, value, "must be finite")
        # Both bounds are checked before any work on the digits.
        if value and value.adjusted() >= _MAX_DIGITS:
            raise RateCardError(field, value, _TOO_LARGE)
        exponent = value.as_tuple().exponent  # an int, since the value is finite
        if isinstance(exponent, int) and exponent < -_MAX_DIGITS:
            raise RateCardError(field, value, _TOO_PRECISE)
        return int(value) if value == value.to_integral_value() else value
    raise RateCardError(field, value, "must be an int, a Decimal or a decimal string")


def _credits(value: Any) -> int | Decimal:
    """Return `value` if it is a number of credits: an int (not a bool) or a finite Decimal."""
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise RateCardError("credits", value, not_a_number(value))
    if isinstance(value, Decimal) and not value.is_finite():
        raise RateCardError("credits", value, "must be finite")
    return value


def _non_negative(value: Any) -> int | Decimal:
    exact = to_exact(value)
    if exact < 0:
        raise RateCardError("value", value, "must not be negative")
    return exact


def _money(value: Any) -> Decimal:
    return Decimal(_non_negative(value))


#: Credits: a non-negative int or Decimal (decimal strings are accepted in files).
Credits = Annotated[int | Decimal, BeforeValidator(_non_negative)]
#: Money in the rate card's currency, as a Decimal.
Money = Annotated[Decimal, BeforeValidator(_money)]
#: Prices per environment, e.g. ``{"production": 20, "sandbox": 16}``.
EnvironmentPrices = dict[Annotated[str, Field(min_length=1)], Credits]


class ModelUsage(NamedTuple):
    """What the model calls made during an action used, for one model.

    Attributes:
        model: The model's name, as the framework or the caller reported it.
        input_tokens: Input (prompt) tokens, summed over the action's calls of this model.
        output_tokens: Output (completion) tokens, summed likewise.
        cost: What those tokens cost in the rate card's currency, priced from the rate card's
            ``models`` (`RateCard.model_cost`); ``None`` when the card does not price the model.
    """

    model: str
    input_tokens: int
    output_tokens: int
    cost: Decimal | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the usage as JSON-ready data (the cost as a decimal string)."""
        return {
            "model": self.model,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost": None if self.cost is None else str(self.cost),
        }


class ModelPrice(BaseModel):
    """What a model's tokens cost, in the rate card's currency per million tokens.

    Example: ``{"input": "2.50", "output": "10.00"}``. Model prices change often and differ by
    contract, so no card ships with any: put the prices you pay in your card.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    input: Money
    output: Money


def _rate_card_error(exc: ValidationError, data: Any) -> RateCardError:
    first = exc.errors(include_url=False)[0]
    field = ".".join(str(part) for part in first["loc"]) or "rate_card"
    if first["type"] == "missing":
        return MissingRateCardField(field)
    cause = first.get("ctx", {}).get("error")
    reason = cause.reason if isinstance(cause, ConfigurationError) else first["msg"]
    return RateCardError(field, first.get("input", data), reason)


class RateCard(BaseModel):
    """Credits per action type per environment, and the price of a credit.

    An action is priced by its name when `actions` lists it, otherwise by its type in
    `action_types`. Both map an environment name to the credits one unit costs.

    Example:
        >>> card = RateCard.agentforce()
        >>> card.price("standard", "production")
        20
        >>> card.usd(20)
        Decimal('0.1')
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = "custom"
    description: str = ""
    currency: Literal["USD"] = "USD"
    pack_credits: Annotated[int, Field(gt=0, strict=True)] = 100_000
    pack_price: Money = Decimal(500)
    credit_price: Money | None = None
    bill_failed: bool = True
    strict: Annotated[bool, Field(strict=True)] = False
    action_types: dict[Annotated[str, Field(min_length=1)], EnvironmentPrices]
    actions: dict[Annotated[str, Field(min_length=1)], EnvironmentPrices] = Field(
        default_factory=dict
    )
    models: dict[Annotated[str, Field(min_length=1)], ModelPrice] = Field(default_factory=dict)

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise _rate_card_error(exc, data) from None
        if not self.action_types:
            raise RateCardError("action_types", self.action_types, "must price at least one type")
        if self.strict and not self.actions:
            raise RateCardError(
                "strict",
                True,
                "a strict card prices only the actions it lists: list them in actions",
            )

    # --- presets --------------------------------------------------------------------------------

    @classmethod
    def agentforce(cls) -> Self:
        """Salesforce Agentforce Flex Credits.

        Source: Salesforce, "Agentforce pricing" (salesforce.com/agentforce/pricing), Flex
        Credits as announced on 2025-05-15: packs of 100,000 credits for $500; a standard or
        custom action costs 20 credits ($0.10) in production and 16 in a sandbox.
        """
        return cls(
            name="agentforce",
            description="Salesforce Agentforce Flex Credits (2025-05-15)",
            pack_credits=100_000,
            pack_price=Decimal(500),
            action_types={
                "standard": {"production": 20, "sandbox": 16},
                "custom": {"production": 20, "sandbox": 16},
            },
        )

    # --- pricing --------------------------------------------------------------------------------

    @property
    def usd_per_credit(self) -> Decimal:
        """The price of one credit: `credit_price`, or the pack price over the pack size.

        Rounded to 28 digits when the pack price does not divide exactly; `usd` is not.
        """
        if self.credit_price is not None:
            return self.credit_price
        return self.pack_price / self.pack_credits

    @property
    def environments(self) -> frozenset[str]:
        """Every environment that some action type or action is priced in."""
        envs: set[str] = set()
        for prices in (*self.action_types.values(), *self.actions.values()):
            envs.update(prices)
        return frozenset(envs)

    def price(
        self, action_type: str, environment: str, *, action: str | None = None
    ) -> int | Decimal:
        """Return the credits one unit of an action costs.

        Args:
            action_type: The action's type, e.g. ``"standard"``.
            environment: The environment, e.g. ``"production"``.
            action: The action's name; a price listed under `actions` for it wins.

        Raises:
            UnknownActionType: The card prices neither the action nor its type.
            UnknownEnvironment: The card does not price the type in that environment.
        """
        prices = self.actions.get(action) if action is not None else None
        if prices is None and self.strict and action is not None:
            raise UnknownActionType(
                "action", action, f"{self._unlisted(action)}, and the card is strict"
            )
        if prices is None:
            prices = self.action_types.get(action_type)
            if prices is None:
                raise UnknownActionType(
                    "action_type",
                    action_type,
                    f"rate card {self.name!r} prices {sorted(self.action_types)}",
                )
        try:
            return prices[environment]
        except KeyError:
            raise UnknownEnvironment(
                "environment",
                environment,
                f"rate card {self.name!r} prices {action_type!r} in {sorted(prices)}",
            ) from None

    def model_cost(self, model: str, input_tokens: int, output_tokens: int) -> Decimal | None:
        """Return what a model's tokens cost under `models`; ``None`` when it is not priced.

        Exact: ``(input_tokens * input + output_tokens * output) / 1,000,000``.
        """
        price = self.models.get(model)
        if price is None:
            return None
        cost = (input_tokens * price.input + output_tokens * price.output).scaleb(-6)
        return cost.quantize(1) if cost == cost.to_integral_value() else cost.normalize()

    def model_usage(self, models: dict[str, list[int]]) -> tuple[ModelUsage, ...]:
        """Return an action's model tokens (model -> [input, output]) as priced `ModelUsage`."""
        return tuple(
            ModelUsage(model, i, o, self.model_cost(model, i, o))
            for model, (i, o) in models.items()
        )

    def _unlisted(self, action: str) -> str:
        """Say that `action` is not among the card's `actions`, with the closest names."""
        close = difflib.get_close_matches(action, list(self.actions), n=3)
        hint = f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""
        return f"rate card {self.name!r} does not list this action in its actions{hint}"

    def usd(self, credits: int | Decimal) -> Decimal:
        """Return what `credits` cost in USD.

        Exact whenever the cost is a decimal number: ``credits * pack_price / pack_credits``
        is divided last, so whole packs cost exactly the pack price. A cost with no exact
        decimal form (one credit of a $100 pack of 30,000) is rounded once, to 28 digits.

        Raises:
            RateCardError: `credits` is not an int or a finite Decimal.
        """
        credits = _credits(credits)
        if self.credit_price is not None:
            return credits * self.credit_price
        return credits * self.pack_price / self.pack_credits

    def packs_for(self, credits: int | Decimal) -> int:
        """Return how many packs cover `credits` (rounded up; 0 for nothing).

        Raises:
            RateCardError: `credits` is not an int or a finite Decimal.
        """
        if _credits(credits) <= 0:
            return 0
        return math.ceil(Decimal(credits) / self.pack_credits)

    def check_environment(self, environment: Any) -> str:
        """Return `environment` if the card prices something in it.

        Raises:
            UnknownEnvironment: It is not one of `environments`.
        """
        if not isinstance(environment, str) or environment not in self.environments:
            raise UnknownEnvironment(
                "environment",
                environment,
                f"rate card {self.name!r} prices {sorted(self.environments)}",
            )
        return environment

    # --- files ----------------------------------------------------------------------------------

    @classmethod
    def loads(cls, text: str, format: Literal["json", "toml"] = "json") -> Self:
        """Parse a rate card from JSON or TOML text.

        Raises:
            RateCardError: The text does not parse (naming the line), or a field is wrong.
            MissingRateCardField: A required field is absent (naming its path).
        """
        return cls(**parse_table(text, format, None, "rate_card"))

    @classmethod
    def load(cls, path: str | Path) -> Self:
        """Load a rate card from a ``.json`` or ``.toml`` file.

        Raises:
            RateCardError: The file has another suffix, does not parse, or a field is wrong;
                the message names the file (and the line, when it does not parse).
            MissingRateCardField: A required field is absent (naming its path and the file).
            OSError: The file cannot be read.
        """
        path = Path(path)
        data = load_table(path, "rate_card")
        try:
            return cls(**data)
        except ConfigurationError as exc:
            raise in_file(exc, str(path)) from None

    def dumps(self, format: Literal["json", "toml"] = "json") -> str:
        """Return the rate card as JSON or TOML text that `loads` reads back unchanged."""
        data = self._plain()
        if format == "json":
            return json.dumps(data, indent=2) + "\n"
        return _to_toml(data)

    def dump(self, path: str | Path) -> None:
        """Write the rate card to a ``.json`` or ``.toml`` file, by its suffix."""
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix not in (".json", ".toml"):
            raise RateCardError("path", str(path), "must end in .json or .toml")
        path.write_text(self.dumps("json" if suffix == ".json" else "toml"), encoding="utf-8")

    def _plain(self) -> dict[str, Any]:
        def exact(value: int | Decimal) -> int | str:
            return value if isinstance(value, int) else str(value)

        data: dict[str, Any] = {
            "name": self.name,
            "description": self.description,
            "currency": self.currency,
            "pack_credits": self.pack_credits,
            "pack_price": str(self.pack_price),
            "bill_failed": self.bill_failed,
        }
        if self.strict:
            data["strict"] = True
        if self.credit_price is not None:
            data["credit_price"] = str(self.credit_price)
        data["action_types"] = {
            t: {env: exact(c) for env, c in prices.items()}
            for t, prices in self.action_types.items()
        }
        if self.actions:
            data["actions"] = {
                a: {env: exact(c) for env, c in prices.items()}
                for a, prices in self.actions.items()
            }
        if self.models:
            data["models"] = {
                m: {"input": str(p.input), "output": str(p.output)} for m, p in self.models.items()
            }
        return data


def warn_if_unlisted(card: RateCard, action: str, action_type: str) -> None:
    """Warn once per card and name when a card prices action names but not `action`, which is
    then priced by its type: a typo in a name must not pass for a cheaper action."""
    if not card.actions or action in card.actions:
        return
    key = (card.name, action)
    with _WARNED_LOCK:
        if key in _WARNED or len(_WARNED) >= _WARNED_MAX:
            return
        _WARNED.add(key)
    logger.warning(
        "flexcredits: action %r: %s, so it is priced by its type %r; name it as the card does, "
        "add it to the card, or make the card strict=True to refuse unlisted names",
        action,
        card._unlisted(action),
        action_type,
    )


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


def _toml_key(key: str) -> str:
    return (
        key
        if key.replace("_", "").replace("-", "").isalnum() and key.isascii()
        else json.dumps(key)
    )


def _to_toml(data: dict[str, Any]) -> str:
    lines = [
        f"{_toml_key(k)} = {_toml_value(v)}" for k, v in data.items() if not isinstance(v, dict)
    ]
    for table, entries in data.items():
        if not isinstance(entries, dict):
            continue
        lines.append("")
        lines.append(f"[{table}]")
        for key, prices in entries.items():
            inner = ", ".join(f"{_toml_key(env)} = {_toml_value(c)}" for env, c in prices.items())
            lines.append(f"{_toml_key(key)} = {{ {inner} }}")
    return "\n".join(lines) + "\n"
