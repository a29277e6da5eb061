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

from .._models import Alert, BudgetInfo, Credits, PositiveCredits
from .._pricing import to_exact

__all__ = [
    "AlertsResponse",
    "BudgetRequest",
    "BudgetsResponse",
    "StatusResponse",
    "TenantRequest",
    "TenantResponse",
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


class BudgetRequest(_Model):
    """``POST /v1/budgets``: a budget on the credits of actions carrying `tags`.

    A budget with the same tags and period replaces the old one. Budgets on the service alert
    when spending goes past the limit; refusing actions (``hard``) needs an in-process wallet.
    """

    credits: PositiveCredits
    tags: Annotated[dict[TagText, TagText], Field(max_length=20)] = Field(default_factory=dict)
    period: Literal["day", "month"] | None = "month"
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None


class BudgetsResponse(_Model):
    """``GET /v1/budgets``."""

    budgets: list[BudgetInfo]


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


class TenantResponse(_Model):
    """A tenant and an API key of its (shown only in this answer)."""

    name: str
    api_key: str


class StatusResponse(_Model):
    """``GET /healthz`` and ``GET /readyz``: the process is up, or can reach its database."""

    status: Literal["ok", "ready"]
