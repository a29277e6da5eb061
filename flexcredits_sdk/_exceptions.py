"""The exceptions flexcredits-sdk raises.

Every exception derives from one root, and the leaves also derive from the matching builtin, so
``except ValueError`` keeps working for code that does not know this library::

    FlexCreditsError
    ├── ConfigurationError (ValueError)      bad input: names the field and the value
    │   ├── RateCardError                    a malformed rate card or rate-card file
    │   ├── UnknownActionType (LookupError)  an action type the rate card does not price
    │   ├── UnknownEnvironment (LookupError) an environment the rate card does not price
    │   ├── UnpricedAction (LookupError)     a planning model has no price for an action
    │   └── HistoryError                     a history row (planning) that cannot be read
    ├── ActionRefused                        decided before the action body runs
    │   ├── InsufficientCredits              overdraft policy "deny" and too few credits
    │   └── BudgetExceeded                   a hard budget would be exceeded
    └── WalletError                          a wallet service answered with an error or
                                             could not be reached

Metering itself never raises into the caller's code: the only exceptions that reach an agent are
configuration errors (at decoration or configuration time) and refusals (before the body runs).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from decimal import Decimal

__all__ = [
    "ActionRefused",
    "BudgetExceeded",
    "ConfigurationError",
    "FlexCreditsError",
    "HistoryError",
    "InsufficientCredits",
    "RateCardError",
    "UnknownActionType",
    "UnknownEnvironment",
    "UnpricedAction",
    "WalletError",
]

_MAX_SHOWN = 80


def _show(value: Any) -> str:
    text = repr(value)
    if len(text) > _MAX_SHOWN:
        text = text[: _MAX_SHOWN - 3] + "..."
    return text


class FlexCreditsError(Exception):
    """The root of every exception this library raises."""


class ConfigurationError(FlexCreditsError, ValueError):
    """A value given to the library is not acceptable.

    Attributes:
        field: The name of the argument, option or file field that was wrong.
        value: The value that was given.
    """

    def __init__(self, field: str, value: Any, reason: str) -> None:
        self.field = field
        self.value = value
        self.reason = reason
        super().__init__(f"{field}={_show(value)}: {reason}")


class MissingField(ConfigurationError):
    """A required field is absent: the message names its path, as there is no value to show.

    Attributes:
        field: The field's path, e.g. ``allotments.0.credits``.
    """

    def __init__(self, field: str, reason: str = "is required") -> None:
        super().__init__(field, None, reason)
        self.args = (f"{field}: {reason}",)


class RateCardError(ConfigurationError):
    """A rate card, or the file it was loaded from, is malformed."""


class MissingRateCardField(MissingField, RateCardError):
    """A required field of a rate card is absent."""


class UnknownActionType(ConfigurationError, LookupError):
    """The rate card has no price for this action type."""


class UnknownEnvironment(ConfigurationError, LookupError):
    """The rate card has no price for this environment."""


class ActionRefused(FlexCreditsError):
    """The wallet refused an action before its body ran.

    Attributes:
        action: The name of the refused action.
        credits: The credits the action would have cost.
    """

    def __init__(self, message: str, *, action: str, credits: int | Decimal) -> None:
        self.action = action
        self.credits = credits
        super().__init__(message)


def _elsewhere(held: int | Decimal | None) -> str:
    if not held:
        return ""
    return f"; other holders (leases of other processes) reserve {held} credits"


class InsufficientCredits(ActionRefused):
    """The wallet denies overdrafts and its balance does not cover the action.

    Attributes:
        balance: What the balance left for the action at the moment of refusal (less what
            holds reserve).
        held_elsewhere: Credits that other holders reserved then (a wallet service's leases
            of other processes), or ``None`` when the wallet cannot say.
    """

    def __init__(
        self,
        *,
        action: str,
        credits: int | Decimal,
        balance: int | Decimal,
        held_elsewhere: int | Decimal | None = None,
    ) -> None:
        self.balance = balance
        self.held_elsewhere = held_elsewhere
        super().__init__(
            f"action {action!r} needs {credits} credits but the balance is {balance} "
            f"and the wallet's overdraft policy is 'deny'{_elsewhere(held_elsewhere)}",
            action=action,
            credits=credits,
        )


class BudgetExceeded(ActionRefused):
    """A hard budget would be exceeded by the action.

    Attributes:
        budget: The budget that refused the action.
        spent: The credits already spent in the budget's current period, and reserved by
            holds.
        held_elsewhere: Credits of the budget that other holders reserved then (a wallet
            service's leases of other processes), or ``None`` when the wallet cannot say.
    """

    def __init__(
        self,
        *,
        action: str,
        credits: int | Decimal,
        budget: Any,
        spent: int | Decimal,
        held_elsewhere: int | Decimal | None = None,
    ) -> None:
        self.budget = budget
        self.spent = spent
        self.held_elsewhere = held_elsewhere
        super().__init__(
            f"action {action!r} needs {credits} credits but budget {budget.name!r} "
            f"has {budget.limit - spent} of {budget.limit} left this period"
            f"{_elsewhere(held_elsewhere)}",
            action=action,
            credits=credits,
        )


class UnpricedAction(ConfigurationError, LookupError):
    """A pricing model cannot price an action: never a silent zero.

    Attributes:
        action: The action's name (or type, when the row has no name).
        model: The name of the pricing model.
        detail: Why it cannot.
    """

    def __init__(self, action: str, model: str, reason: str) -> None:
        self.action = action
        self.model = model
        self.detail = reason
        super().__init__("action", action, f"model {model!r} cannot price it: {reason}")


class HistoryError(ConfigurationError):
    """A row of a history file cannot be read.

    Attributes:
        line: The 1-based line number in the file (for CSV, the header is line 1).
        source: The file's name, or ``"<stream>"``.
    """

    def __init__(self, field: str, value: Any, reason: str, *, line: int, source: str) -> None:
        self.line = line
        self.source = source
        super().__init__(field, value, f"{reason} ({source}, line {line})")


class WalletError(FlexCreditsError):
    """A wallet service answered a question with an error, or could not be reached.

    Attributes:
        status_code: The HTTP status, or ``None`` when no answer came.
        code: The service's machine-readable error code, if it sent one.
    """

    def __init__(self, message: str, *, status_code: int | None = None, code: str | None = None):
        self.status_code = status_code
        self.code = code
        super().__init__(message)
