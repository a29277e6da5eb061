"""What every framework adapter shares: which action a tool call is, and how it is metered.

An adapter turns a framework's tool call into one action of a meter. It either wraps the tool's
function (`ToolMeter.wrap`, the same engine as `metered_action`), or, where the framework tells
it when a tool starts and ends (callback handlers, run hooks, instrumentation events), opens
the action in one callback and closes it in the other (`ToolMeter.start`, `ToolMeter.end`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from .._action import Action, ActionScope
from .._context import CONVERSATION, current_action
from .._exceptions import ConfigurationError
from .._validate import check_name, check_tags, check_units

if TYPE_CHECKING:
    from .._meter import Meter

__all__ = ["ToolAction", "ToolMeter", "record_model_usage"]

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class ToolAction:
    """The action one tool's calls are metered as.

    Attributes:
        action_type: The rate card's action type (``"standard"`` by default).
        units: How many billable actions one call is.
        name: The action's name; the tool's name when ``None``.
    """

    action_type: str = "standard"
    units: int = 1
    name: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.action_type, str) or not self.action_type:
            raise ConfigurationError("action_type", self.action_type, "must be a non-empty string")
        check_units(self.units)
        if self.name is not None:
            check_name(self.name, "name")


def _check_actions(actions: Any) -> dict[str, ToolAction]:
    if actions is None:
        return {}
    if not isinstance(actions, Mapping):
        raise ConfigurationError(
            "actions", actions, "must map tool names to action types or ToolAction objects"
        )
    checked: dict[str, ToolAction] = {}
    for tool, value in actions.items():
        check_name(tool, "actions key")
        if isinstance(value, str):
            value = ToolAction(value)
        elif not isinstance(value, ToolAction):
            raise ConfigurationError(
                f"actions[{tool!r}]", value, "must be an action type (str) or a ToolAction"
            )
        checked[tool] = value
    return checked


class ToolMeter:
    """Meters the tool calls an adapter sees: one action per call, named after the tool.

    Args:
        meter: The meter to use; the global default meter (`flexcredits_sdk.get_meter`) when
            ``None``.
        actions: Tool name -> action type (a string) or `ToolAction`, for tools that are not
            metered as one ``"standard"`` action named after the tool.
        tags: Tags every tool call's record carries (weaker than the tags set at the call).

    Raises:
        ConfigurationError: A bad mapping or tag; `UnknownActionType` when the rate card does
            not price an action type of `actions` (here, not at the first call).
    """

    def __init__(
        self,
        *,
        meter: Meter | None = None,
        actions: Mapping[str, str | ToolAction] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        from .._default import get_meter
        from .._meter import Meter

        if meter is None:
            meter = get_meter()
        elif not isinstance(meter, Meter):
            raise ConfigurationError("meter", meter, "must be a flexcredits_sdk.Meter")
        self.meter = meter
        self._actions = _check_actions(actions)
        self._tags = check_tags(tags or {})
        self._scopes: dict[str, ActionScope] = {}
        self._lock = threading.Lock()
        for tool in self._actions:
            self.scope(tool)  # prices every mapped tool now: an unknown type fails here

    def action_for(self, tool: str) -> ToolAction:
        """Return the action that a call of `tool` is metered as."""
        return self._actions.get(tool) or _STANDARD

    def scope(self, tool: str) -> ActionScope:
        """Return the `action()` scope of `tool`'s calls (made once per tool name).

        Raises:
            ConfigurationError: The tool's name is not a usable action name.
        """
        scope = self._scopes.get(tool)
        if scope is None:
            spec = self.action_for(tool)
            made = self.meter.action(
                spec.name or tool, action_type=spec.action_type, units=spec.units, tags=self._tags
            )
            with self._lock:
                scope = self._scopes.setdefault(tool, made)
        return scope

    def wrap(self, func: F, tool: str) -> F:
        """Return `func` metered as one action of `tool` per call (sync, async, generators)."""
        return self.scope(tool)(func)  # type: ignore[return-value]

    def start(self, tool: str, *, conversation_id: str | None = None) -> Action | None:
        """Begin an action of `tool` that a later callback ends with `end`.

        The action is not made the current one (`current_action()`), since the callback that
        ends it may run in another context. `conversation_id` (the framework's run or
        conversation id) is used when no enclosing `conversation()` scope set one.

        Returns:
            The action, or ``None`` when metering failed (it was logged; the tool runs on).

        Raises:
            ActionRefused: The wallet refused the action; the tool must not run.
        """
        act = self.meter._start(self.scope(tool)._spec, bind=False)
        if act is not None and act._conversation is None and conversation_id:
            act._conversation = conversation_id
        return act

    def end(self, act: Action | None, exc: BaseException | None = None) -> None:
        """End an action begun with `start`: with ``exc``, its outcome is ``"error"``."""
        if act is not None:
            self.meter._finish(act, exc)


_STANDARD = ToolAction()


def conversation_of(run_id: object) -> str | None:
    """Return the conversation id a framework's run id gives, unless a `conversation()` scope
    has set one (the user's own id wins); ``None`` when there is nothing usable."""
    if CONVERSATION.get() is not None:
        return None
    if run_id is None:
        return None
    text = str(run_id)
    if not text.strip() or len(text) > 256 or not text.isprintable():
        return None
    return text


def record_model_usage(
    model: str, *, input_tokens: int = 0, output_tokens: int = 0, action: Action | None = None
) -> bool:
    """Add a model call's token usage to `action`, else to the action running here.

    Adapters call this when their framework reports an LLM call's usage; code that calls a model
    itself may too. A record carries one `ModelUsage` per model, the tokens summed.

    Returns:
        Whether an action took the usage (``False`` outside any action).

    Raises:
        ConfigurationError: A model name that is not a short printable string, or token counts
            that are not non-negative ints.
    """
    target = action if action is not None else current_action()
    if target is None:
        return False
    target.add_model_usage(model, input_tokens=input_tokens, output_tokens=output_tokens)
    return True
