"""pydantic-ai: every tool call an agent makes is one action, named after the tool.

Needs pydantic-ai (``pip install 'flexcredits-sdk[pydantic-ai]'``). The ways in, widest first:

- `Metering`, a pydantic-ai capability: ``Agent(model, capabilities=[Metering()])``, or per run
  ``agent.run_sync(prompt, capabilities=[Metering()])``. It meters every tool the agent can call
  (``@agent.tool``, ``@agent.tool_plain``, ``tools=``, toolsets, MCP servers) and adds each model
  request's tokens to the action running then.
- `metered(agent_or_toolset)`: the same for an agent made elsewhere (a `MeteredAgent` to run in
  its place) or for one toolset (a `MeteredToolset`).
- `metered_tools(tools)` for a list of tools, and ``@fc.metered_action`` on a `pydantic_ai.Tool`
  (`meter_tool`): the tool keeps its name, description and argument schema.

A call is metered once: a tool whose function is already metered (``@fc.metered_action`` under
``@agent.tool``, a tool from `metered_tools`) keeps its own action, and toolsets metered twice
(`Metering` around a `MeteredToolset`) meter the call in the outer one only. The action runs
inside the tool's OpenTelemetry span that pydantic-ai opens when the agent is instrumented, so
that span carries the credit attributes. The run's ``conversation_id`` (pydantic-ai's, carried
by the message history) becomes the records' conversation unless ``fc.conversation()`` set one.

A tool that raises `pydantic_ai.ModelRetry` asks the model to call it again: each attempt is an
action, the failed one with outcome ``"error"`` (error type ``ModelRetry``), priced as the rate
card prices failed actions.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import inspect
import logging
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .. import _meter, _wrap
from .._context import conversation
from .._exceptions import ConfigurationError
from ._common import ToolAction, ToolMeter, conversation_of, record_model_usage

try:
    from pydantic_ai import Tool
    from pydantic_ai.agent import AbstractAgent, WrapperAgent
    from pydantic_ai.capabilities import AbstractCapability
    from pydantic_ai.output import OutputDataT
    from pydantic_ai.tools import AgentDepsT, RunContext
    from pydantic_ai.toolsets import AbstractToolset, ToolsetTool, WrapperToolset
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "flexcredits_sdk.integrations.pydantic_ai needs pydantic-ai: "
        "pip install 'flexcredits-sdk[pydantic-ai]'"
    ) from exc

if TYPE_CHECKING:
    from pydantic_ai.messages import ModelResponse
    from pydantic_ai.models import ModelRequestContext

    from .._meter import Meter
    from ._tools import Wrap

__all__ = [
    "MeteredAgent",
    "MeteredToolset",
    "Metering",
    "meter_tool",
    "metered",
    "metered_tools",
]

logger = logging.getLogger("flexcredits_sdk")

#: The run context of the tool call an outer `MeteredToolset` meters here (an inner one then
#: only passes the call on).
_METERING: ContextVar[object] = ContextVar("flexcredits_pydantic_ai_call", default=None)
#: The files of the engine's wrappers: a function whose code is in one is metered already.
_ENGINE_FILES = frozenset({_meter.__file__, _wrap.__file__})


def _tool_meter(
    tool_meter: ToolMeter | None,
    meter: Meter | None,
    actions: Mapping[str, str | ToolAction] | None,
    tags: Mapping[str, str] | None,
) -> ToolMeter:
    """Return `tool_meter`, or one made from the other arguments; the rate card must price the
    action type of tools not in `actions`, checked here rather than at the first call."""
    if tool_meter is not None:
        if not isinstance(tool_meter, ToolMeter):
            raise ConfigurationError("tool_meter", tool_meter, "must be a ToolMeter")
        return tool_meter
    made = ToolMeter(meter=meter, actions=actions, tags=tags)
    default = made.action_for("")
    made.meter.rate_card.price(default.action_type, made.meter.environment)
    return made


def _function_of(tool: ToolsetTool[Any]) -> Callable[..., Any] | None:
    """Return the function a toolset's tool calls, when it is a function tool."""
    for _ in range(16):  # combined toolsets nest their tools
        source = getattr(tool, "source_tool", None)
        if source is None:
            break
        tool = source
    schema = getattr(getattr(tool, "call_func", None), "__self__", None)
    function = getattr(schema, "function", None)
    return function if callable(function) else None


def _is_metered(function: Callable[..., Any] | None) -> bool:
    """Whether `function` is wrapped by a meter (``@metered_action``, `ToolMeter.wrap`)."""
    for _ in range(16):
        if function is None:
            return False
        code = getattr(function, "__code__", None)
        if code is not None and code.co_filename in _ENGINE_FILES:
            return True
        function = getattr(function, "__wrapped__", None)
    return False


def _conversation_of(ctx: RunContext[Any]) -> contextlib.AbstractContextManager[Any]:
    cid = conversation_of(ctx.conversation_id or ctx.run_id)
    return conversation(cid) if cid is not None else contextlib.nullcontext()


@dataclass
class MeteredToolset(WrapperToolset[AgentDepsT]):
    """A toolset whose every tool call is metered as one action named after the tool.

    ``MeteredToolset(toolset)`` goes wherever a toolset goes: ``Agent(toolsets=[...])``,
    ``agent.run(..., toolsets=[...])``. A call of a tool whose function is metered already runs
    as that function's action (no second one).

    Args:
        wrapped: The toolset whose tools are metered.
        meter: The meter; the global default meter when ``None``.
        actions: Tool name -> action type (a string) or `ToolAction`.
        tags: Tags every tool call's record carries.
        tool_meter: A `ToolMeter` to use instead of one made from the three above.

    Raises:
        ConfigurationError: A bad meter, mapping or tag; `UnknownActionType` when the rate card
            does not price an action type (a tool's name, for a card that prices listed actions
            only, when the run lists the tools).
    """

    meter: Meter | None = field(default=None, kw_only=True)
    actions: Mapping[str, str | ToolAction] | None = field(default=None, kw_only=True)
    tags: Mapping[str, str] | None = field(default=None, kw_only=True)
    tool_meter: ToolMeter | None = field(default=None, kw_only=True, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.wrapped, AbstractToolset):
            raise ConfigurationError(
                "wrapped", self.wrapped, "must be a pydantic_ai toolset (an AbstractToolset)"
            )
        self.tool_meter = _tool_meter(self.tool_meter, self.meter, self.actions, self.tags)

    @property
    def _meter(self) -> ToolMeter:
        assert self.tool_meter is not None  # set by __post_init__
        return self.tool_meter

    async def get_tools(self, ctx: RunContext[AgentDepsT]) -> dict[str, ToolsetTool[AgentDepsT]]:
        """List the wrapped toolset's tools, pricing each tool's action before any is called.

        Raises:
            ConfigurationError: The rate card does not price a tool's action.
        """
        tools = await self.wrapped.get_tools(ctx)
        for name, tool in tools.items():
            if not _is_metered(_function_of(tool)):
                self._meter.scope(name)
        return tools

    async def call_tool(
        self,
        name: str,
        tool_args: dict[str, Any],
        ctx: RunContext[AgentDepsT],
        tool: ToolsetTool[AgentDepsT],
    ) -> Any:
        """Call the tool as one action (in the run's conversation); errors pass unchanged."""
        if _METERING.get() is ctx:  # an outer MeteredToolset meters this call
            return await self.wrapped.call_tool(name, tool_args, ctx, tool)
        token = _METERING.set(ctx)
        try:
            with _conversation_of(ctx):
                if _is_metered(_function_of(tool)):
                    return await self.wrapped.call_tool(name, tool_args, ctx, tool)
                try:
                    scope = self._meter.scope(name)
                except ConfigurationError:
                    logger.exception(
                        "flexcredits: tool %r cannot be metered; it runs unmetered", name
                    )
                    return await self.wrapped.call_tool(name, tool_args, ctx, tool)
                async with scope:
                    return await self.wrapped.call_tool(name, tool_args, ctx, tool)
        finally:
            _METERING.reset(token)


@dataclass
class Metering(AbstractCapability[AgentDepsT]):
    """A pydantic-ai capability that meters an agent's tool calls and its model requests' tokens.

    Every tool call is one action named after the tool (a `MeteredToolset` around the agent's
    tools); every model request's input and output tokens are added to the action running
    when it is made (`record_model_usage`), e.g. a ``with fc.action("answer"):`` around the run,
    or the tool's action when a tool runs another agent. Outside any action they are not kept.

    Args:
        meter: The meter; the global default meter when ``None``.
        actions: Tool name -> action type (a string) or `ToolAction`.
        tags: Tags every tool call's record carries.
        tool_meter: A `ToolMeter` to use instead of one made from the three above.

    Raises:
        ConfigurationError: As for `MeteredToolset`.
    """

    meter: Meter | None = field(default=None, kw_only=True)
    actions: Mapping[str, str | ToolAction] | None = field(default=None, kw_only=True)
    tags: Mapping[str, str] | None = field(default=None, kw_only=True)
    tool_meter: ToolMeter | None = field(default=None, kw_only=True, repr=False)

    def __post_init__(self) -> None:
        self.tool_meter = _tool_meter(self.tool_meter, self.meter, self.actions, self.tags)

    @classmethod
    def get_serialization_name(cls) -> str | None:
        return None  # holds a live meter: not for agent specs

    def get_wrapper_toolset(
        self, toolset: AbstractToolset[AgentDepsT]
    ) -> AbstractToolset[AgentDepsT] | None:
        """Meter every tool of the run's toolset."""
        return MeteredToolset(toolset, tool_meter=self.tool_meter)

    async def after_model_request(
        self,
        ctx: RunContext[AgentDepsT],
        *,
        request_context: ModelRequestContext,
        response: ModelResponse,
    ) -> ModelResponse:
        """Add the response's tokens to the action running now."""
        try:
            usage = response.usage
            model = response.model_name or ctx.model.model_name
            record_model_usage(
                model, input_tokens=usage.input_tokens, output_tokens=usage.output_tokens
            )
        except Exception:
            logger.exception("flexcredits: the model usage of a pydantic-ai request was not kept")
        return response


class MeteredAgent(WrapperAgent[AgentDepsT, OutputDataT]):
    """An agent that runs another one with `Metering`: every run, ``run_sync``, ``run``,
    ``run_stream`` and ``iter``, meters its tool calls and model tokens.

    Tools registered on the wrapped agent later (``@agent.tool``) are metered too.

    Args:
        wrapped: The agent.
        meter: The meter; the global default meter when ``None``.
        actions: Tool name -> action type (a string) or `ToolAction`.
        tags: Tags every tool call's record carries.

    Raises:
        ConfigurationError: As for `MeteredToolset`.
    """

    def __init__(
        self,
        wrapped: AbstractAgent[AgentDepsT, OutputDataT],
        *,
        meter: Meter | None = None,
        actions: Mapping[str, str | ToolAction] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        if not isinstance(wrapped, AbstractAgent):
            raise ConfigurationError("wrapped", wrapped, "must be a pydantic_ai Agent")
        super().__init__(wrapped)
        self.metering: Metering[AgentDepsT] = Metering(meter=meter, actions=actions, tags=tags)

    def iter(self, *args: Any, capabilities: Sequence[Any] | None = None, **kwargs: Any) -> Any:
        """Run the wrapped agent's ``iter`` with `Metering` added to the run's capabilities."""
        return super().iter(*args, capabilities=[self.metering, *(capabilities or ())], **kwargs)


def metered(
    agent_or_toolset: Any,
    *,
    meter: Meter | None = None,
    actions: Mapping[str, str | ToolAction] | None = None,
    tags: Mapping[str, str] | None = None,
) -> Any:
    """Meter every tool call of an agent or a toolset, one action per call named after the tool.

    Args:
        agent_or_toolset: A pydantic-ai agent (then run the returned `MeteredAgent` instead)
            or toolset (then use the returned `MeteredToolset` instead).
        meter: The meter; the global default meter when ``None``.
        actions: Tool name -> action type (a string) or `ToolAction`.
        tags: Tags every tool call's record carries.

    Raises:
        ConfigurationError: `agent_or_toolset` is neither, or as for `MeteredToolset`.
    """
    if isinstance(agent_or_toolset, AbstractAgent):
        return MeteredAgent(agent_or_toolset, meter=meter, actions=actions, tags=tags)
    if isinstance(agent_or_toolset, AbstractToolset):
        return MeteredToolset(agent_or_toolset, meter=meter, actions=actions, tags=tags)
    raise ConfigurationError(
        "agent_or_toolset",
        agent_or_toolset,
        "must be a pydantic_ai Agent or toolset (for a list of tools use metered_tools, for "
        "one tool @metered_action)",
    )


def metered_tools(
    tools: Sequence[Tool[Any] | Callable[..., Any]],
    *,
    meter: Meter | None = None,
    actions: Mapping[str, str | ToolAction] | None = None,
    tags: Mapping[str, str] | None = None,
) -> list[Tool[Any]]:
    """Return the tools metered, one action per call named after the tool, as `Tool` objects.

    Each item is a `pydantic_ai.Tool` or a function (made a ``Tool(function)``, as
    ``Agent(tools=[...])`` does); name, description and argument schema are unchanged.

    Raises:
        ConfigurationError: `tools` is not a list of tools and functions, or as for
            `MeteredToolset`.
    """
    if isinstance(tools, (str, bytes, Mapping)) or not isinstance(tools, Sequence):
        raise ConfigurationError("tools", tools, "must be a list of pydantic_ai Tools or functions")
    tool_meter = _tool_meter(None, meter, actions, tags)
    made: list[Tool[Any]] = []
    for index, item in enumerate(tools):
        if not isinstance(item, Tool):
            if not inspect.isroutine(item):
                raise ConfigurationError(
                    f"tools[{index}]", item, "must be a pydantic_ai Tool or a function"
                )
            item = Tool(item)
        tool_meter.scope(item.name)  # an unpriced action fails here, not at the first call
        made.append(meter_tool(item, tool_meter.wrap))
    return made


def meter_tool(tool: Any, wrap: Wrap) -> Any:
    """Return a copy of the `pydantic_ai.Tool` `tool` whose function is ``wrap(function,
    tool.name)``: the same name, description, argument schema and options (``takes_ctx``
    functions too); ``None`` for any other object."""
    if not isinstance(tool, Tool):
        return None
    function = wrap(tool.function, tool.name)
    metered_tool = copy.copy(tool)
    metered_tool.function = function
    metered_tool.function_schema = dataclasses.replace(tool.function_schema, function=function)
    return metered_tool
