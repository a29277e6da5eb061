"""The errors of the planning package.

Both are `ConfigurationError` subclasses (so also ``ValueError``)::

    ConfigurationError
    ├── UnpricedAction (LookupError)   a pricing model has no price for an action
    └── HistoryError                   a history row that cannot be read
"""

from __future__ import annotations

from typing import Any

from .._exceptions import ConfigurationError

__all__ = ["HistoryError", "UnpricedAction"]


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
