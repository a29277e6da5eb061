"""Metering for llama-index-core: every tool call one action, named after the tool.

Two ways in; use one per tool (a tool metered by the second is left alone by the first, so a
call is metered once when both are in place):

- `instrument()` registers two handlers on llama-index's root instrumentation dispatcher:
  `FlexCreditsSpanHandler` meters every call of every tool (any `BaseTool`: a `FunctionTool`,
  a `QueryEngineTool`, ...) as one action, from the span llama-index opens around the tool's
  ``call``/``acall``; `FlexCreditsEventHandler` adds the token usage that LLM calls report
  (``LLMChatEndEvent``, ``LLMCompletionEndEvent``) to the action running then: the tool's action
  when a tool calls a model, else `current_action()` (a user's ``with fc.action("answer"):``
  around the agent run). llama-index calls its handlers in a way that ignores what they raise,
  so a wallet's refusal cannot stop a tool there: for spend control, meter the tools with:
- `metered_tools` (and `metered_action` on a `FunctionTool`, through `meter_tool`): a copy of
  each `FunctionTool`, of the same type, name, description and argument schema (``metadata``),
  whose functions are metered; a refused action raises in the tool, and the agent sees it as
  the tool's error.

A tool called inside an agent workflow (``FunctionAgent``, ``ReActAgent``, ``AgentWorkflow``)
gets the workflow's run id (``handler.run_id``) as its record's conversation id, unless a
`conversation()` scope set one.

Needs llama-index-core: ``pip install 'flexcredits-sdk[llama-index]'``.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import logging
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from contextvars import Token
from typing import TYPE_CHECKING, Any

try:
    from llama_index.core.instrumentation.event_handlers import BaseEventHandler
    from llama_index.core.instrumentation.events import BaseEvent
    from llama_index.core.instrumentation.events.llm import (
        LLMChatEndEvent,
        LLMChatStartEvent,
        LLMCompletionEndEvent,
        LLMCompletionStartEvent,
    )
    from llama_index.core.instrumentation.span import SimpleSpan
    from llama_index.core.instrumentation.span_handlers import BaseSpanHandler
    from llama_index.core.tools import BaseTool, FunctionTool
    from llama_index_instrumentation import get_dispatcher  # llama-index-core's own dependency
except ImportError as exc:  # pragma: no cover - exercised with the framework hidden
    raise ImportError(
        "flexcredits_sdk.integrations.llama_index needs llama-index-core: "
        "pip install 'flexcredits-sdk[llama-index]'"
    ) from exc

from .._context import CONVERSATION, CURRENT
from .._exceptions import ActionRefused, ConfigurationError
from .._wrap import scoped
from ._common import ToolAction, ToolMeter, conversation_of, record_model_usage

if TYPE_CHECKING:
    from .._action import Action
    from .._meter import Meter
    from ._tools import Wrap

__all__ = [
    "FlexCreditsEventHandler",
    "FlexCreditsSpanHandler",
    "instrument",
    "meter_tool",
    "metered_tools",
    "uninstrument",
]

logger = logging.getLogger("flexcredits_sdk")

#: Tool calls (spans) and model calls a handler keeps track of at once; an entry is dropped
#: when its call ends, so only calls whose end never came are forgotten past this.
MAX_OPEN = 10_000
#: How many recent usage objects the event handler remembers, so that a model call that
#: llama-index reports twice (an ``achat`` that calls ``chat``) is counted once.
MAX_SEEN = 256

#: The tools whose functions are metered (made by `meter_tool`): the span handler leaves them.
_METERED: weakref.WeakSet[BaseTool] = weakref.WeakSet()
#: The functions of a `FunctionTool` that run its tool (as set by its ``__init__``).
_FUNCTIONS = ("_fn", "_async_fn", "_real_fn")


# --- tool objects -------------------------------------------------------------------------------


def meter_tool(tool: Any, wrap: Wrap) -> FunctionTool | None:
    """Return a copy of a llama-index `FunctionTool` whose functions are metered through `wrap`.

    The copy has the same type and the same ``metadata`` (name, description, ``fn_schema``),
    context parameter, partial parameters and callbacks; its sync function (``fn``), async
    function (``async_fn``) and ``real_fn`` are metered, each call one action. ``None`` when
    `tool` is not a `FunctionTool`.

    Raises:
        ConfigurationError: The `FunctionTool` lacks the attributes this version of
            llama-index-core sets (a subclass that does not call ``FunctionTool.__init__``).
    """
    if not isinstance(tool, FunctionTool):
        return None
    return _metered(tool, wrap)


def _metered(tool: FunctionTool, wrap: Wrap) -> FunctionTool:
    missing = [name for name in _FUNCTIONS if not callable(tool.__dict__.get(name))]
    if missing:
        raise ConfigurationError(
            "tool",
            tool,
            f"is a FunctionTool without {', '.join(missing)} (its __init__ was not run?): "
            "make it with FunctionTool.from_defaults(...)",
        )
    name = tool.metadata.get_name()
    metered = copy.copy(tool)
    for attribute in _FUNCTIONS:
        setattr(metered, attribute, _in_run(wrap(getattr(tool, attribute), name)))
    _METERED.add(metered)
    return metered


def metered_tools(
    tools: Iterable[FunctionTool],
    *,
    meter: Meter | None = None,
    actions: Mapping[str, str | ToolAction] | None = None,
    tags: Mapping[str, str] | None = None,
) -> list[FunctionTool]:
    """Return copies of llama-index `FunctionTool`s whose every call is metered as one action.

    Each copy has the same type and ``metadata`` (name, description, argument schema); give
    the copies to the agent (``FunctionAgent(tools=...)``) or to ``llm.predict_and_call`` in
    place of the originals. A sync call (``tool.call``) and an async call (``tool.acall``) are
    each one action; `FlexCreditsSpanHandler` leaves these tools alone.

    Args:
        tools: The tools (`FunctionTool` objects, e.g. from ``FunctionTool.from_defaults``).
        meter: The meter to use; the global default meter when ``None``.
        actions: Tool name -> action type or `ToolAction`, for tools that are not one
            ``"standard"`` action named after the tool.
        tags: Tags every tool call's record carries.

    Returns:
        The metered tools, in order.

    Raises:
        ConfigurationError: `tools` is not a list of `FunctionTool`s, a tool is metered
            already, or `actions`, `tags` or `meter` is bad (`UnknownActionType` when the rate
            card does not price an action type of `actions`).
    """
    if isinstance(tools, BaseTool | str | bytes | Mapping) or not isinstance(tools, Iterable):
        raise ConfigurationError("tools", tools, "must be a list of llama-index FunctionTools")
    tools = list(tools)
    for index, tool in enumerate(tools):
        if not isinstance(tool, FunctionTool):
            raise ConfigurationError(
                f"tools[{index}]",
                tool,
                "is not a llama-index FunctionTool: make one with "
                "FunctionTool.from_defaults(fn); other tools are metered by instrument()",
            )
        if _is_metered(tool):
            raise ConfigurationError(
                f"tools[{index}]",
                tool,
                "is metered already (by metered_tools or metered_action): metering it again "
                "would count every call twice",
            )
    tool_meter = ToolMeter(meter=meter, actions=actions, tags=tags)
    return [_metered(tool, tool_meter.wrap) for tool in tools]


def _is_metered(tool: BaseTool) -> bool:
    """Whether `tool`'s functions are metered (it was made by `meter_tool`)."""
    try:
        return tool in _METERED
    except TypeError:  # a tool that cannot be hashed: not one of ours
        return False


def _in_run(func: Callable[..., Any]) -> Callable[..., Any]:
    """Run `func` (metered) in the conversation of the workflow run that calls it."""
    return scoped(func, CONVERSATION, _run_conversation)


def _run_conversation() -> str | None:
    """The user's `conversation()`, else the id of the workflow run this code runs in."""
    current = CONVERSATION.get()
    if current is not None:
        return current
    return conversation_of(_workflow_run_id())


def _workflow_run_id() -> str | None:
    """The run id of the llama-index workflow (an agent's run) this code runs in, if any."""
    try:
        from workflows.plugins.basic import get_current_run_id
    except ImportError:  # pragma: no cover - a llama-index-workflows without it
        return None
    return get_current_run_id()


# --- the span handler: tool calls -----------------------------------------------------------


class _ToolSpan:
    """A tool's span that the handler has seen open: its tool and, when metered, its action."""

    __slots__ = ("action", "name", "token")

    def __init__(self, name: str) -> None:
        self.name = name
        self.action: Action | None = None
        self.token: Token[Action | None] | None = None


class FlexCreditsSpanHandler(BaseSpanHandler[SimpleSpan]):
    """A llama-index span handler that meters every tool call as one action.

    llama-index opens a span around every tool's ``__call__``, ``call`` and ``acall``; the
    outermost span of a tool call is its action (nested spans of the same tool, such as
    ``__call__`` calling ``call``, are the same call). The action is `current_action()` while
    the tool runs. Register it on the root dispatcher (`instrument` does), or on the dispatcher
    of the modules whose tools it should meter. Tools made by `metered_tools` or
    `metered_action` are metered by their functions, not here.

    A wallet's refusal (`ActionRefused`) cannot stop a tool here, since llama-index ignores
    what span handlers raise: it is logged, the tool runs, and no record is made. Use
    `metered_tools` where refusals must stop tools.

    Args:
        meter: The meter to use; the global default meter when ``None``.
        actions: Tool name -> action type or `ToolAction`, for tools that are not one
            ``"standard"`` action named after the tool.
        tags: Tags every tool call's record carries.

    Raises:
        ConfigurationError: A bad `actions`, `tags` or `meter` (`UnknownActionType` when the
            rate card does not price an action type of `actions`).
    """

    def __init__(
        self,
        *,
        meter: Meter | None = None,
        actions: Mapping[str, str | ToolAction] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        tool_meter = ToolMeter(meter=meter, actions=actions, tags=tags)
        super().__init__(open_spans={}, completed_spans=[], dropped_spans=[], current_span_ids={})
        self._tool_meter = tool_meter
        self._spans: dict[str, _ToolSpan] = {}
        self._spans_lock = threading.Lock()

    @classmethod
    def class_name(cls) -> str:
        """Class name."""
        return "FlexCreditsSpanHandler"

    @property
    def tool_meter(self) -> ToolMeter:
        """The `ToolMeter` the handler meters tool calls with."""
        return self._tool_meter

    def span_enter(
        self,
        id_: str,
        bound_args: inspect.BoundArguments,
        instance: Any | None = None,
        parent_id: str | None = None,
        tags: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Begin the action of a tool call when `instance` is a tool (see the class)."""
        if not isinstance(instance, BaseTool) or _is_metered(instance):
            return
        try:
            name = instance.metadata.get_name()
            span = _ToolSpan(name)
            with self._spans_lock:
                parent = self._spans.get(parent_id) if parent_id is not None else None
                self._spans[id_] = span
                while len(self._spans) > MAX_OPEN:  # spans whose end never came
                    del self._spans[next(iter(self._spans))]
            if parent is not None and parent.name == name:
                return  # the same call, one level in (``__call__`` -> ``call``)
            conversation = _run_conversation()
            action = self._tool_meter.start(name, conversation_id=conversation)
        except ActionRefused as refused:
            logger.warning(
                "flexcredits: the wallet refused tool %r, which runs anyway (llama-index "
                "ignores what span handlers raise); meter it with metered_tools so that a "
                "refusal stops it: %s",
                getattr(refused, "action", None),
                refused,
            )
            return
        except Exception as exc:
            self._failed("span_enter", exc)
            return
        if action is not None:
            span.action = action
            span.token = CURRENT.set(action)

    def span_exit(
        self,
        id_: str,
        bound_args: inspect.BoundArguments,
        instance: Any | None = None,
        result: Any | None = None,
        **kwargs: Any,
    ) -> None:
        """End a tool call's action with outcome ``"ok"``."""
        self._end(id_, None)

    def span_drop(
        self,
        id_: str,
        bound_args: inspect.BoundArguments,
        instance: Any | None = None,
        err: BaseException | None = None,
        **kwargs: Any,
    ) -> None:
        """End a tool call's action with outcome ``"error"`` (the tool raised `err`)."""
        self._end(id_, err)

    def _end(self, id_: str, err: BaseException | None) -> None:
        with self._spans_lock:
            span = self._spans.pop(id_, None)
        if span is None or span.action is None:
            return
        if span.token is not None:
            with contextlib.suppress(ValueError):  # ended in another context than it began
                CURRENT.reset(span.token)
        self._tool_meter.end(span.action, err)

    def _failed(self, where: str, exc: Exception) -> None:
        self._tool_meter.meter._failed(where, "llama-index tool call", exc)

    # The base class's hooks, for the spans it keeps itself: this handler keeps none.

    def new_span(
        self,
        id_: str,
        bound_args: inspect.BoundArguments,
        instance: Any | None = None,
        parent_span_id: str | None = None,
        tags: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> SimpleSpan | None:
        """Keep no span of llama-index's own (see `span_enter`)."""
        return None

    def prepare_to_exit_span(
        self,
        id_: str,
        bound_args: inspect.BoundArguments,
        instance: Any | None = None,
        result: Any | None = None,
        **kwargs: Any,
    ) -> SimpleSpan | None:
        """Keep no span of llama-index's own (see `span_exit`)."""
        return None

    def prepare_to_drop_span(
        self,
        id_: str,
        bound_args: inspect.BoundArguments,
        instance: Any | None = None,
        err: BaseException | None = None,
        **kwargs: Any,
    ) -> SimpleSpan | None:
        """Keep no span of llama-index's own (see `span_drop`)."""
        return None


# --- the event handler: model usage ---------------------------------------------------------


class FlexCreditsEventHandler(BaseEventHandler):
    """A llama-index event handler that adds the token usage of LLM calls to the running action.

    At each ``LLMChatEndEvent`` and ``LLMCompletionEndEvent`` it reads the input and output
    tokens from the response's ``raw`` usage (``raw["usage"]`` or ``raw["usage_metadata"]``,
    a mapping or an object: ``prompt_tokens``/``input_tokens``/``prompt_token_count`` and
    ``completion_tokens``/``output_tokens``/``candidates_token_count``), else from its
    ``additional_kwargs``; and the model's name from ``raw["model"]``, else from the LLM's
    ``model`` (or ``model_name``) field, else its class name. The usage goes to the action
    running where the LLM was called (`record_model_usage`): a tool's action, or the user's
    ``with fc.action(...)`` around the agent run; outside any action it is not recorded.

    It creates no actions, so it takes no meter: the usage goes to the action of whichever
    meter runs it. A call that llama-index reports more than once (a `CustomLLM` whose
    ``achat`` calls ``chat``, which calls ``complete``) is counted once: the reports of one call
    carry the same usage object, so a model that returned one usage object for two calls would
    be counted once too.
    """

    def __init__(self) -> None:
        super().__init__()
        self._models: OrderedDict[str, str] = OrderedDict()  # LLM span -> model name
        self._seen: OrderedDict[int, object] = OrderedDict()  # usage objects counted
        self._lock = threading.Lock()

    @classmethod
    def class_name(cls) -> str:
        """Class name."""
        return "FlexCreditsEventHandler"

    def handle(self, event: BaseEvent, **kwargs: Any) -> None:
        """Remember an LLM call's model at its start; record its usage at its end."""
        try:
            if isinstance(event, LLMChatStartEvent | LLMCompletionStartEvent):
                model = _model_of_llm(event.model_dict)
                if model is not None and event.span_id is not None:
                    with self._lock:
                        self._models[event.span_id] = model
                        while len(self._models) > MAX_OPEN:
                            self._models.popitem(last=False)
            elif isinstance(event, LLMChatEndEvent | LLMCompletionEndEvent):
                with self._lock:
                    hint = self._models.pop(event.span_id, None) if event.span_id else None
                if event.response is not None:
                    self._record(event.response, hint)
        except Exception as exc:
            logger.exception("flexcredits: reading a llama-index event failed: %s", exc)

    def _record(self, response: Any, hint: str | None) -> None:
        found = _usage_of(response)
        if found is None:
            return
        usage, input_tokens, output_tokens = found
        with self._lock:
            if id(usage) in self._seen:
                return  # the same call, reported again by an enclosing LLM method
            self._seen[id(usage)] = usage  # kept, so that its id is not reused meanwhile
            while len(self._seen) > MAX_SEEN:
                self._seen.popitem(last=False)
        model = _text(_field(response.raw, "model")) or hint or "unknown"
        record_model_usage(model, input_tokens=input_tokens, output_tokens=output_tokens)


_INPUT_KEYS = ("prompt_tokens", "input_tokens", "prompt_token_count")
_OUTPUT_KEYS = ("completion_tokens", "output_tokens", "candidates_token_count")


def _field(data: Any, key: str) -> Any:
    if data is None:
        return None
    if isinstance(data, Mapping):
        return data.get(key)
    return getattr(data, key, None)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def _tokens(data: Any, keys: tuple[str, ...]) -> int | None:
    for key in keys:
        value = _field(data, key)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
    return None


def _usage_of(response: Any) -> tuple[object, int, int] | None:
    """(the usage object, input tokens, output tokens) of an LLM response, else ``None``."""
    raw = getattr(response, "raw", None)
    for usage in (
        _field(raw, "usage"),
        _field(raw, "usage_metadata"),
        getattr(response, "additional_kwargs", None),
    ):
        if usage is None:
            continue
        input_tokens = _tokens(usage, _INPUT_KEYS)
        output_tokens = _tokens(usage, _OUTPUT_KEYS)
        if input_tokens is not None or output_tokens is not None:
            return usage, input_tokens or 0, output_tokens or 0
    return None


def _model_of_llm(model_dict: Any) -> str | None:
    if not isinstance(model_dict, Mapping):
        return None
    for key in ("model", "model_name", "class_name"):
        name = _text(model_dict.get(key))
        if name is not None and name != "unknown":  # llama-index's default ``model_name``
            return name
    return None


# --- registration -----------------------------------------------------------------------------


def instrument(
    *,
    meter: Meter | None = None,
    actions: Mapping[str, str | ToolAction] | None = None,
    tags: Mapping[str, str] | None = None,
) -> FlexCreditsSpanHandler:
    """Meter every llama-index tool call, and add LLM calls' token usage to the running action.

    Registers a `FlexCreditsSpanHandler` and a `FlexCreditsEventHandler` on llama-index's root
    dispatcher, in place of those an earlier call registered (so a tool call is never metered
    twice by them).

    Args:
        meter: The meter to use; the global default meter when ``None``.
        actions: Tool name -> action type or `ToolAction`, for tools that are not one
            ``"standard"`` action named after the tool.
        tags: Tags every tool call's record carries.

    Returns:
        The span handler registered.

    Raises:
        ConfigurationError: A bad `actions`, `tags` or `meter` (`UnknownActionType` when the
            rate card does not price an action type of `actions`).
    """
    span_handler = FlexCreditsSpanHandler(meter=meter, actions=actions, tags=tags)
    uninstrument()
    dispatcher = get_dispatcher()
    dispatcher.add_span_handler(span_handler)
    dispatcher.add_event_handler(FlexCreditsEventHandler())
    return span_handler


def uninstrument() -> None:
    """Remove the handlers `instrument` registered on llama-index's root dispatcher."""
    dispatcher = get_dispatcher()
    dispatcher.span_handlers = [
        h for h in dispatcher.span_handlers if not isinstance(h, FlexCreditsSpanHandler)
    ]
    dispatcher.event_handlers = [
        h for h in dispatcher.event_handlers if not isinstance(h, FlexCreditsEventHandler)
    ]
