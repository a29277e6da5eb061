"""The answers every wallet gives, as pydantic models.

The offline wallet, the HTTP wallet client and the wallet service return these same models, so
code and tests can swap one wallet for another. None of them is built on the hot path.
"""

from __future__ import annotations

import datetime as _dt
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
)
from pydantic.config import JsonDict

from ._exceptions import ConfigurationError
from ._pricing import to_exact
from ._validate import (
    MAX_ID_LENGTH,
    MAX_MODELS,
    MAX_NAME_LENGTH,
    MAX_TAG_KEY_LENGTH,
    MAX_TAG_VALUE_LENGTH,
    MAX_TAGS,
    MAX_TOKENS,
    check_id,
    check_name,
    check_tags,
)

__all__ = [
    "Alert",
    "Balance",
    "BudgetInfo",
    "Credits",
    "GrantInfo",
    "HoldInfo",
    "PRINTABLE",
    "PositiveCredits",
    "RecordId",
    "SignedCredits",
    "Tags",
    "UsageRecordModel",
    "UsageRow",
    "validation_error",
]

#: The JSON Schema pattern of text with no control characters (C0 and C1), the characters
#: `str.isprintable` refuses that a pattern can name without Unicode classes.
PRINTABLE = r"^[^\u0000-\u001f\u007f-\u009f]*$"
_EXACT = (
    'An exact number: a JSON integer, or a decimal string (e.g. `"16.5"`). A JSON number with a '
    "fraction or an exponent is refused, since floats are not exact: `20.0` too, although JSON "
    "Schema counts it an integer."
)


def _exact_schema(integer: dict[str, Any], pattern: str) -> WithJsonSchema:
    """The JSON Schema of exact credits: an integer, or a decimal string matching `pattern`."""
    return WithJsonSchema(
        {
            "anyOf": [{"type": "integer", **integer}, {"type": "string", "pattern": pattern}],
            "description": _EXACT,
        }
    )


#: Credits that may be negative (a balance that is owed).
SignedCredits = Annotated[
    int | Decimal,
    BeforeValidator(lambda v: to_exact(v, "credits")),
    _exact_schema({}, r"^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$"),
]


def _non_negative(value: int | Decimal) -> int | Decimal:
    if value < 0:
        raise ValueError("must not be negative")
    return value


#: Credits of zero or more.
Credits = Annotated[
    SignedCredits,
    AfterValidator(_non_negative),
    _exact_schema({"minimum": 0}, r"^[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$"),
]
#: Credits of more than zero (grants, budgets); the string form has no exponent.
PositiveCredits = Annotated[
    Credits,
    Field(gt=0),
    _exact_schema(
        {"exclusiveMinimum": 0}, r"^([0-9]*[1-9][0-9]*(\.[0-9]+)?|[0-9]+\.[0-9]*[1-9][0-9]*)$"
    ),
]
AwareDatetime = Annotated[_dt.datetime, Field(strict=False)]


def validation_error(exc: ValidationError, what: str = "value") -> ConfigurationError:
    """Turn a pydantic `ValidationError` into a `ConfigurationError` naming the first bad field."""
    first = exc.errors(include_url=False)[0]
    field = ".".join(str(part) for part in first["loc"]) or what
    return ConfigurationError(field, first.get("input"), first["msg"])


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Balance(_Model):
    """A wallet's balance at one moment.

    Attributes:
        credits: Credits left to spend; negative when the wallet is overdrawn.
        granted: Credits of every grant ever made.
        used: Credits booked by actions.
        expired: Credits that expired unused.
        owed: Credits used beyond what grants covered (overdraft), not yet settled.
        held: Credits reserved by actions that are still running.
        usd: What `credits` are worth at the rate card's credit price.
        as_of: When the balance was computed.
    """

    credits: SignedCredits
    granted: Credits
    used: Credits
    expired: Credits
    owed: Credits
    held: Credits = 0
    usd: Decimal
    as_of: _dt.datetime


class GrantInfo(_Model):
    """A grant of credits and what is left of it.

    Attributes:
        id: The grant's id.
        credits: Credits granted.
        remaining: Credits not yet used (0 once expired).
        source: Where the credits came from, e.g. ``"purchase"`` or ``"promotion"``.
        priority: Burn order: grants with a lower number are used first.
        expires_at: When unused credits expire, if ever.
        granted_at: When the grant was made.
        expired: Whether the grant has expired.
    """

    id: str
    credits: Credits
    remaining: Credits
    source: str
    priority: int
    expires_at: _dt.datetime | None
    granted_at: _dt.datetime
    expired: bool = False


class UsageRow(_Model):
    """One group of a usage report.

    Attributes:
        key: The group's value for each `group_by` field (``None`` where a record lacks it).
        actions: Billable actions (the sum of the records' units).
        records: Usage records in the group.
        credits: Credits charged.
        usd: What those credits cost.
    """

    key: dict[str, str | None]
    actions: int
    records: int
    credits: Credits
    usd: Decimal


class BudgetInfo(_Model):
    """A budget on the credits spent by actions carrying certain tags.

    Attributes:
        id: The budget's id.
        name: A readable name, by default made from the tags.
        limit: Credits allowed per period.
        tags: The tags an action must carry to count against the budget (empty: every action).
        period: ``"day"``, ``"month"`` or ``None`` (the budget never resets).
        hard: Whether actions that would exceed it are refused before they run.
        spent: Credits spent in the current period.
    """

    id: str
    name: str
    limit: Credits
    tags: dict[str, str]
    period: Literal["day", "month"] | None
    hard: bool
    spent: Credits


class HoldInfo(_Model):
    """Credits a wallet service reserves for actions about to run (``POST /v1/holds``).

    Attributes:
        id: The hold's id: its idempotency key, chosen by the client or made by the service.
        credits: The credits the hold reserved.
        remaining: What is still reserved: `credits` less what records settled against it,
            and 0 once the hold is released or expired.
        tags: The tags the hold was taken for; it counts against every hard budget they match.
        budgets: The ids of the hard budgets it counts against.
        status: ``"active"``, ``"released"`` (by ``DELETE``) or ``"expired"``.
        created_at: When it was taken.
        expires_at: When it releases by itself, unless released before.
    """

    id: str
    credits: Credits
    remaining: Credits
    tags: dict[str, str]
    budgets: list[str]
    status: Literal["active", "released", "expired"]
    created_at: AwareDatetime
    expires_at: AwareDatetime


class Alert(_Model):
    """Something the wallet tells its owner about: a low balance or a budget crossing.

    Attributes:
        kind: ``"low_balance"`` or ``"budget"``.
        message: A sentence for a human.
        threshold: The threshold that was crossed, in credits.
        value: The balance, or the budget's spending, after the crossing.
        budget_id: The budget's id, for budget alerts.
        watch_id: The low-balance watch's id, for low-balance alerts.
        at: When the alert fired.
    """

    kind: Literal["low_balance", "budget"]
    message: str
    threshold: SignedCredits
    value: SignedCredits
    budget_id: str | None = None
    watch_id: str | None = None
    at: _dt.datetime


def _name(value: Any) -> str:
    return check_name(value, "action")


def _tags(value: Any) -> dict[str, str]:
    return check_tags(value)


def _aware(value: _dt.datetime) -> _dt.datetime:
    if value.tzinfo is None:
        raise ValueError("must be timezone-aware")
    return value


_NO_NUL = r"^[^\u0000]*$"
_TAGS_SCHEMA = {
    "type": "object",
    "description": (
        f"At most {MAX_TAGS} tags; keys of 1 to {MAX_TAG_KEY_LENGTH} printable characters, values "
        f"strings of at most {MAX_TAG_VALUE_LENGTH} characters."
    ),
    "maxProperties": MAX_TAGS,
    "propertyNames": {"minLength": 1, "maxLength": MAX_TAG_KEY_LENGTH, "pattern": PRINTABLE},
    "additionalProperties": {
        "type": "string",
        "maxLength": MAX_TAG_VALUE_LENGTH,
        "pattern": _NO_NUL,
    },
}
#: ``started_at`` or ``start_time_ns``: a record without either is refused.
_HAS_START: JsonDict = {
    "not": {"properties": {"started_at": {"type": "null"}, "start_time_ns": {"type": "null"}}}
}


#: Tags as the wire carries them: the rules of `tags()` (see `check_tags`).
Tags = Annotated[dict[str, Any], AfterValidator(_tags), WithJsonSchema(_TAGS_SCHEMA)]

#: An id a client makes (a record's, a hold's): the rule of `set_id`.
RecordId = Annotated[
    str,
    Field(min_length=1, max_length=MAX_ID_LENGTH, json_schema_extra={"pattern": PRINTABLE}),
    AfterValidator(check_id),
]


class ModelUsageModel(_Model):
    """The tokens one model used during an action (``model_usage`` of a record).

    ``cost`` is what the sender's rate card says the tokens cost; the wallet service prices
    them again from the tenant's card and keeps its own figure.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: Annotated[
        str,
        AfterValidator(_name),
        Field(json_schema_extra={"minLength": 1, "maxLength": MAX_NAME_LENGTH}),
    ]
    input_tokens: Annotated[int, Field(ge=0, le=MAX_TOKENS, strict=True)] = 0
    output_tokens: Annotated[int, Field(ge=0, le=MAX_TOKENS, strict=True)] = 0
    cost: Credits | None = None


class UsageRecordModel(_Model):
    """The validating form of a `UsageRecord`, used at the edges (wire, files, service).

    A record has a start time: ``start_time_ns`` (Unix nanoseconds), or ``started_at`` (used when
    ``start_time_ns`` is absent). The wallet service refuses a record whose start is before 1970,
    or that ends (start plus ``duration_ns``) after 2262, or whose credits reach 2**63
    nano-credits (about 9.2 billion credits) or have more than 9 decimal places.

    ``hold_id`` names the hold (``POST /v1/holds``) the action was authorized from: the
    service settles the record's credits against that hold, so what the hold reserved is not
    counted twice. It is a wire field only; a `UsageRecord` does not carry it.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", json_schema_extra=_HAS_START)

    id: RecordId
    action: Annotated[
        str,
        AfterValidator(_name),
        Field(
            json_schema_extra={
                "minLength": 1,
                "maxLength": MAX_NAME_LENGTH,
                "pattern": r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f]"
                r"[^\u0000-\u001f\u007f-\u009f]*$",
            }
        ),
    ]
    action_type: Annotated[
        str, Field(min_length=1, max_length=64, json_schema_extra={"pattern": _NO_NUL})
    ]
    units: Annotated[int, Field(ge=1, strict=True, json_schema_extra={"maximum": 2**31 - 1})]
    credits: Credits
    environment: Annotated[
        str, Field(min_length=1, max_length=64, json_schema_extra={"pattern": _NO_NUL})
    ]
    tags: Tags = Field(default_factory=dict)
    conversation_id: (
        Annotated[str, Field(max_length=256, json_schema_extra={"pattern": _NO_NUL})] | None
    ) = None
    started_at: Annotated[_dt.datetime, AfterValidator(_aware)] | None = None
    start_time_ns: Annotated[int, Field(ge=0)] | None = None
    duration_ns: Annotated[int, Field(ge=0)] = 0
    outcome: Literal["ok", "error"] = "ok"
    error_type: (
        Annotated[str, Field(max_length=256, json_schema_extra={"pattern": _NO_NUL})] | None
    ) = None
    trace_id: Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")] | None = None
    span_id: Annotated[str, Field(pattern=r"^[0-9a-f]{16}$")] | None = None
    hold_id: RecordId | None = None
    model_usage: Annotated[list[ModelUsageModel], Field(max_length=MAX_MODELS)] = Field(
        default_factory=list
    )
