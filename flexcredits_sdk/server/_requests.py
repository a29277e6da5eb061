"""Request and answer models of the service's endpoints beyond the wire protocol's."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from pydantic import (
    AnyHttpUrl,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
)

from .._models import Alert, Credits, PositiveCredits
from .._pricing import to_exact
from .._wire import ErrorDetail
from ._budgets import BudgetEntry

__all__ = [
    "AlertsResponse",
    "BudgetExists",
    "BudgetExistsResponse",
    "BudgetRequest",
    "BudgetUpdate",
    "BudgetsResponse",
    "StatusResponse",
    "TenantRequest",
    "TenantResponse",
    "TenantSettings",
    "TenantUpdate",
    "WatchRequest",
    "WatchResponse",
    "WebhookRequest",
    "WebhookResponse",
]

TagText = Annotated[str, StringConstraints(min_length=1, max_length=200)]
#: A percentage, exact like credits: a JSON float is refused, a decimal string is not.
Percent = Annotated[
    Decimal,
    BeforeValidator(lambda v: to_exact(v, "percent")),
    Field(gt=0, le=100, decimal_places=9),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "exclusiveMinimum": 0, "maximum": 100},
                {
                    "type": "string",
                    "pattern": r"^(100(\.0{1,9})?|[1-9][0-9]?(\.[0-9]{1,9})?|0?\.[0-9]{0,8}[1-9])$",
                },
            ],
            "description": "More than 0, at most 100, at most 9 decimal places; never a float.",
        }
    ),
]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class AlertsResponse(_Model):
    """``GET /v1/alerts``: the latest alerts, newest first."""

    alerts: list[Alert]


BudgetName = Annotated[str, StringConstraints(min_length=1, max_length=200)]
#: An IANA time zone name; the service checks that it knows it.
TimeZone = Annotated[
    str,
    StringConstraints(min_length=1, max_length=64),
    Field(description="An IANA time zone name, e.g. `UTC` or `America/New_York`."),
]


class BudgetRequest(_Model):
    """``POST /v1/budgets``: a budget on the credits of actions carrying `tags`.

    Day and month periods start at midnight and on the 1st in the tenant's time zone. A budget
    alerts when spending goes past its limit; a hard one (``hard``) also refuses holds that
    would go past it. Tags and period name a budget: a second one with the same is a 409, and
    an existing budget is changed with ``PUT /v1/budgets/{id}``.
    """

    credits: PositiveCredits
    tags: Annotated[dict[TagText, TagText], Field(max_length=20)] = Field(default_factory=dict)
    period: Literal["day", "month"] | None = "month"
    hard: bool = False
    name: BudgetName | None = None


class BudgetUpdate(_Model):
    """``PUT /v1/budgets/{id}``: a new limit, and optionally hardness and name.

    What the budget has spent and what holds reserve in it are kept; `hard` and `name` are
    kept when not given.
    """

    credits: PositiveCredits
    hard: bool | None = None
    name: BudgetName | None = None


class BudgetsResponse(_Model):
    """``GET /v1/budgets``: every budget, with its spending, holds and parent."""

    budgets: list[BudgetEntry]


class BudgetExists(ErrorDetail):
    """A budget with the same tags and period exists: `budget_id` names it."""

    budget_id: str


class BudgetExistsResponse(_Model):
    """``409`` from ``POST /v1/budgets`` (code ``budget_exists``)."""

    error: BudgetExists


class WatchRequest(_Model):
    """``POST /v1/watches``: alert when the balance falls below a threshold.

    Exactly one of `credits` and `percent` (of the credits of unexpired grants), each an int or
    a decimal string: a JSON float is refused, as in records.
    """

    credits: Credits | None = None
    percent: Percent | None = None


class WatchResponse(_Model):
    """The id that alerts from a watch carry in ``watch_id``."""

    id: str


class WebhookRequest(_Model):
    """``PUT /v1/webhook``: where alerts are POSTed."""

    url: AnyHttpUrl


class WebhookResponse(_Model):
    """The webhook and its signing secret (shown only in this answer)."""

    url: str
    secret: str


class TenantRequest(_Model):
    """``POST /v1/tenants`` (admin key): a new tenant."""

    name: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
    overdraft: Literal["allow", "deny"] = "allow"
    time_zone: TimeZone = "UTC"


class TenantUpdate(_Model):
    """``PATCH /v1/tenants/{name}`` (admin key): the tenant's settings to change."""

    time_zone: TimeZone


class TenantSettings(_Model):
    """A tenant's settings."""

    name: str
    time_zone: str


class TenantResponse(_Model):
    """A tenant and an API key of its (shown only in this answer)."""

    name: str
    api_key: str


class StatusResponse(_Model):
    """``GET /healthz`` and ``GET /readyz``: the process is up, or can reach its database."""

    status: Literal["ok", "ready"]
