"""Metering for the OpenAI Agents SDK (openai-agents): each tool call one action, named after it.

Two ways in, made to be used together:

- `metered_function_tools` (and `metered_action` on a `FunctionTool`, through `meter_tool`): a
  copy of each function tool, with the same name, description, argument schema and strictness,
  whose calls are metered. The SDK's own handling of a call is unchanged: the arguments are
  parsed and validated, a failure is turned into the message the model sees (or fails the run)
  exactly as before; the record says ``outcome == "error"`` whenever the tool raised. The tool
  runs as the current action (`current_action()`), so model usage reported inside it lands on
  its record. A call the wallet refuses does not run; the SDK tells the model it failed, as
  for any exception of a tool.
- `FlexCreditsRunHooks`, run hooks (``Runner.run(agent, input, hooks=FlexCreditsRunHooks())``):
  adds the token usage of every model response to the action running then (a user's
  ``with fc.action("answer"):`` around the run, or the tool's action for a run made inside a
  metered tool), and meters the calls of tools that are not metered already: function tools
  left as they are and the SDK's other local tools (shell, computer, apply-patch, custom
  tools), opened at ``on_tool_start`` and closed at ``on_tool_end``. The hooks leave the calls
  of metered tools to those tools, so a call is metered once when both are used. Run hooks are
  never told that a tool failed (the SDK hands the failure to the model as the tool's result),
  so meter function tools with `metered_function_tools` for their errors to be recorded.

The run's ``group_id`` (``RunConfig(group_id=...)``, or the trace's), else its trace id when
tracing is on, is the records' conversation id, unless a `conversation()` scope set one.

Needs openai-agents: ``pip install 'flexcredits-sdk[openai-agents]'``.
"""

from __future__ import annotations

import copy
import functools
import logging
import threading
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

try:
    from agents import Agent, FunctionTool, RunContextWrapper, RunHooks, Tool
    from agents.items import ModelResponse
    from agents.models import get_default_model
    from agents.tracing import get_current_trace
    from agents.tracing.traces import NoOpTrace
except ImportError as exc:  # pragma: no cover - exercised with the framework hidden
    raise ImportError(
        "flexcredits_sdk.integrations.openai_agents needs openai-agents: "
        "pip install 'flexcredits-sdk[openai-agents]'"
    ) from exc

from .._context import CONVERSATION
from .._exceptions import ConfigurationError
from ._common import ToolAction, ToolMeter, conversation_of, record_model_usage

if TYPE_CHECKING:
    from .._action import Action
    from .._meter import Meter
    from ._tools import Wrap

__all__ = ["FlexCreditsRunHooks", "meter_tool", "metered_function_tools"]

logger = logging.getLogger("flexcredits_sdk")

#: The attribute that marks a metered tool's invoke function: the hooks leave its calls to it.
METERED_MARK = "__flexcredits_metered__"
#: Tool calls the hooks keep open at once; calls beyond it run unmetered (and are logged).
MAX_OPEN = 10_000

_Invoke = Callable[[Any, str], Awaitable[Any]]


# --- function tools -----------------------------------------------------------------------------


def meter_tool(tool: Any, wrap: Wrap) -> FunctionTool | None:
    """Return a copy of a `FunctionTool` whose calls are metered through `wrap`.

    The copy has the same type, name, description, argument schema and strictness and the
    same failure handling. ``None`` when `tool` is not a `FunctionTool`.
    """
    if not isinstance(tool, FunctionTool):
        return None
    if is_metered(tool):
        return tool
    metered = copy.copy(tool)  # FunctionTool.__copy__ binds the copy's own invoker
    invoker: Any = metered.on_invoke_tool
    impl = getattr(invoker, "_invoke_tool_impl", None)
    if callable(impl) and hasattr(invoker, "_function_tool"):
        # A tool made by @function_tool: its invoker turns the function's exception into the
        # model's message. Meter the function it calls, inside that handling, so the record
        # sees the exception and the SDK still handles it as before.
        inner = copy.copy(invoker)
        inner._invoke_tool_impl = _metered(impl, wrap, tool.name)
        inner._function_tool = metered
        metered.on_invoke_tool = inner
    else:
        metered.on_invoke_tool = _metered(_awaiting(invoker), wrap, tool.name)
    return metered


def metered_function_tools(
    tools: Iterable[FunctionTool],
    *,
    meter: Meter | None = None,
    actions: Mapping[str, str | ToolAction] | None = None,
    tags: Mapping[str, str] | None = None,
) -> list[FunctionTool]:
    """Return the tools with every call metered as one action, named after the tool.

    Pass the result as an agent's ``tools``. A tool already metered is kept as it is.

    Args:
        tools: `FunctionTool` objects (made with ``@function_tool``).
        meter: The meter; the global default meter when ``None``.
        actions: Tool name -> action type or `ToolAction`, for tools not metered as one
            ``"standard"`` action.
        tags: Tags every call's record carries.

    Raises:
        ConfigurationError: An item of `tools` that is not a `FunctionTool`, a key of
            `actions` that names none of the tools, or a bad `actions` value or tag;
            `UnknownActionType` when the rate card does not price an action type of `actions`.
    """
    if isinstance(tools, str | bytes | Mapping) or not isinstance(tools, Iterable):
        raise ConfigurationError("tools", tools, "must be a list of FunctionTool objects")
    listed = list(tools)
    for index, tool in enumerate(listed):
        if not isinstance(tool, FunctionTool):
            raise ConfigurationError(
                f"tools[{index}]",
                tool,
                "must be a FunctionTool (made with @function_tool); the SDK's other local "
                "tools are metered by FlexCreditsRunHooks",
            )
    tool_meter = ToolMeter(meter=meter, actions=actions, tags=tags)
    names = {tool.name for tool in listed}
    for name in actions or {}:
        if name not in names:
            raise ConfigurationError(
                "actions", name, f"names none of the tools ({', '.join(sorted(names))})"
            )
    metered: list[FunctionTool] = []
    for tool in listed:
        made = meter_tool(tool, tool_meter.wrap)
        assert made is not None
        metered.append(made)
    return metered


def is_metered(tool: object) -> bool:
    """Return whether `tool` is a `FunctionTool` whose calls are metered already."""
    if not isinstance(tool, FunctionTool):
        return False
    invoker: Any = tool.on_invoke_tool
    return bool(
        getattr(invoker, METERED_MARK, False)
        or getattr(getattr(invoker, "_invoke_tool_impl", None), METERED_MARK, False)
    )


def _metered(invoke: _Invoke, wrap: Wrap, tool: str) -> _Invoke:
    """Meter `invoke(context, arguments)` through `wrap`, in the run's conversation."""
    metered = wrap(invoke, tool)

    @functools.wraps(metered)
    async def invoke_metered(context: Any, arguments: str) -> Any:
        conversation = conversation_of(run_id(context))
        if conversation is None:
            return await metered(context, arguments)
        token = CONVERSATION.set(conversation)
        try:
            return await metered(context, arguments)
        finally:
            CONVERSATION.reset(token)

    setattr(invoke_metered, METERED_MARK, True)
    return invoke_metered


def _awaiting(invoke: Any) -> _Invoke:
    """Make a coroutine function of an invoke callable (a function, or an object with
    ``__call__``) so that its action lasts until its result is there."""

    @functools.wraps(invoke)
    async def call(context: Any, arguments: str) -> Any:
        return await invoke(context, arguments)

    return call


# --- the run ------------------------------------------------------------------------------------


def run_id(context: object) -> str | None:
    """Return the run's group id (its run config's, else its trace's), else its trace id when
    tracing is on; ``None`` when there is none."""
    run_config = getattr(context, "run_config", None)
    group = getattr(run_config, "group_id", None)
    if isinstance(group, str) and group:
        return group
    trace = get_current_trace()
    if trace is None or isinstance(trace, NoOpTrace):
        return None
    group = getattr(trace, "group_id", None)
    if isinstance(group, str) and group:
        return group
    return trace.trace_id


def model_name(agent: Agent[Any]) -> str:
    """Return the name of the model an agent calls: its ``model`` string, else the ``model``
    attribute of its `Model` object (its class name when it has none), else the SDK's
    default model."""
    model: Any = agent.model
    if isinstance(model, str) and model:
        return model
    if model is None:
        return get_default_model()
    name = getattr(model, "model", None)
    if isinstance(name, str) and name:
        return name
    return type(model).__name__


class FlexCreditsRunHooks(RunHooks[Any]):
    """Run hooks that meter a run's tool calls and add its model usage to the running action.

    Pass them to a run: ``Runner.run(agent, input, hooks=FlexCreditsRunHooks())``. One object
    may serve many runs, concurrently too.

    Args:
        meter: The meter; the global default meter when ``None``.
        actions: Tool name -> action type or `ToolAction`, for tools not metered as one
            ``"standard"`` action.
        tags: Tags every tool call's record carries.

    Raises:
        ConfigurationError: A bad `actions` mapping or tag; `UnknownActionType` when the rate
            card does not price an action type of `actions`.
    """

    def __init__(
        self,
        *,
        meter: Meter | None = None,
        actions: Mapping[str, str | ToolAction] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        self.tools = ToolMeter(meter=meter, actions=actions, tags=tags)
        self._open: dict[tuple[int, int], list[_Call]] = {}
        self._count = 0
        self._lock = threading.RLock()  # a finalizer may run while this thread holds it

    async def on_tool_start(
        self, context: RunContextWrapper[Any], agent: Agent[Any], tool: Tool
    ) -> None:
        """Begin the call's action, unless the tool is metered by itself.

        Raises:
            ActionRefused: The wallet refused the action: the tool does not run, and the SDK
                fails the run (with a ``UserError`` caused by the refusal).
        """
        if is_metered(tool):
            return
        name = tool.name
        with self._lock:
            full = self._count >= MAX_OPEN
            if not full:
                self._count += 1  # a place for the call, taken before its action begins
        if full:
            logger.warning("flexcredits: %d tool calls open; %r is not metered", MAX_OPEN, name)
            return
        act = None
        try:
            act = self.tools.start(name, conversation_id=conversation_of(run_id(context)))
        except ConfigurationError as exc:  # a tool name that is no usable action name
            logger.warning("flexcredits: tool %r is not metered: %s", name, exc)
        finally:
            if act is None:  # not metered, or refused (ActionRefused goes on to the SDK)
                with self._lock:
                    self._count -= 1
        if act is None:
            return
        call = _Call(act)
        key = (id(context), id(tool))
        with self._lock:
            self._open.setdefault(key, []).append(call)
        # A tool whose failure ends the run is never reported as ended: its action ends, as
        # an error, when the run lets go of the call's context.
        try:
            call.finalizer = weakref.finalize(context, self._abandon, key, call)
        except TypeError:  # a context that takes no weak reference: ended by on_tool_end only
            return
        call.finalizer.atexit = False

    async def on_tool_end(
        self, context: RunContextWrapper[Any], agent: Agent[Any], tool: Tool, result: object
    ) -> None:
        """End the call's action begun by `on_tool_start`."""
        call = self._pop((id(context), id(tool)), None)
        if call is not None:
            if call.finalizer is not None:
                call.finalizer.detach()
            self.tools.end(call.act)

    async def on_llm_end(
        self, context: RunContextWrapper[Any], agent: Agent[Any], response: ModelResponse
    ) -> None:
        """Add the response's token usage to the action running (nothing outside any)."""
        usage = response.usage
        try:
            record_model_usage(
                model_name(agent),
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
            )
        except ConfigurationError as exc:
            logger.warning("flexcredits: model usage not recorded: %s", exc)

    def _pop(self, key: tuple[int, int], call: _Call | None) -> _Call | None:
        with self._lock:
            calls = self._open.get(key)
            if not calls:
                return None
            if call is None:
                call = calls.pop(0)
            elif call in calls:
                calls.remove(call)
            else:
                return None
            if not calls:
                del self._open[key]
            self._count -= 1
            return call

    def _abandon(self, key: tuple[int, int], call: _Call) -> None:
        if self._pop(key, call) is not None:
            self.tools.end(call.act, ToolCallAbandoned("the run ended before the tool call did"))


class _Call:
    """One tool call the hooks opened: its action, and what ends it if the run drops it."""

    __slots__ = ("act", "finalizer")

    def __init__(self, act: Action) -> None:
        self.act = act
        self.finalizer: weakref.finalize[Any, Any] | None = None


class ToolCallAbandoned(Exception):
    """Why a tool call's action ended without its end being reported."""
