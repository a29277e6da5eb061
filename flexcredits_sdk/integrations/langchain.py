"""Metering for langchain-core: every tool call one action, named after the tool.

Two ways in, which may be combined:

- `FlexCreditsCallbackHandler`, a langchain callback handler: pass it in a run's config
  (``RunnableConfig(callbacks=[handler])``) and every tool call of that run is one action, opened
  at ``on_tool_start`` and closed at ``on_tool_end`` or ``on_tool_error``. The run id of the
  outermost run the handler sees, or a ``thread_id`` / ``conversation_id`` in the run's metadata
  (or in the ``configurable`` of an enclosing run), is the records' conversation id. It also
  adds the token usage that chat models and LLMs report to the action running then: the tool's
  action when the model is called inside a tool, else `current_action()` (a user's
  ``with fc.action("answer"):`` around the run).
- `metered_tools` (and `metered_action` on a tool object, through `meter_tool`): a copy of each
  tool, of the same type, name, description and argument schema, whose function is metered.
  The handler leaves these tools to their own metering (they carry `METERED_KEY` in their
  metadata), so a call is metered once when both are used.

Needs langchain-core: ``pip install 'flexcredits-sdk[langchain]'``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID

try:
    from langchain_core.callbacks import BaseCallbackHandler
    from langchain_core.messages import ToolMessage
    from langchain_core.outputs import LLMResult
    from langchain_core.runnables.config import var_child_runnable_config
    from langchain_core.tools import BaseTool, StructuredTool, Tool, ToolException
except ImportError as exc:  # pragma: no cover - exercised with the framework hidden
    raise ImportError(
        "flexcredits_sdk.integrations.langchain needs langchain-core: "
        "pip install 'flexcredits-sdk[langchain]'"
    ) from exc

from .._context import CONVERSATION
from .._exceptions import ActionRefused, ConfigurationError
from .._validate import check_tags
from .._wrap import scoped
from ._common import ToolAction, ToolMeter, conversation_of, record_model_usage

if TYPE_CHECKING:
    from .._action import Action
    from .._meter import Meter
    from ._tools import Wrap

__all__ = ["METERED_KEY", "FlexCreditsCallbackHandler", "meter_tool", "metered_tools"]

logger = logging.getLogger("flexcredits_sdk")

T = TypeVar("T", bound=BaseTool)

#: The metadata key that marks a tool whose function is metered (by `metered_tools` or
#: `metered_action`): `FlexCreditsCallbackHandler` does not meter its calls a second time.
METERED_KEY = "flexcredits_metered"
#: The metadata (or ``configurable``) keys whose value is a run's conversation id.
CONVERSATION_KEYS = ("conversation_id", "thread_id")
#: Runs the handler remembers at once (runs are forgotten when they end).
MAX_RUNS = 10_000


# --- tool objects -------------------------------------------------------------------------------


def meter_tool(tool: Any, wrap: Wrap) -> Any | None:
    """Return a copy of a langchain `BaseTool` whose function(s) are metered through `wrap`.

    A `StructuredTool` or `Tool` gets its ``func`` and ``coroutine`` metered; any other
    `BaseTool` subclass its own ``_run`` and ``_arun``. The copy has the same type, name,
    description and argument schema, and `METERED_KEY` in its metadata. ``None`` when `tool`
    is not a `BaseTool`.
    """
    if not isinstance(tool, BaseTool):
        return None
    name = tool.name
    metadata = {**(tool.metadata or {}), METERED_KEY: True}
    cls = type(tool)
    if isinstance(tool, StructuredTool | Tool) and cls._run in (StructuredTool._run, Tool._run):
        update: dict[str, Any] = {"metadata": metadata}
        for field in ("func", "coroutine"):
            function = getattr(tool, field)
            if function is not None:
                update[field] = _in_run(wrap(function, name))
        return tool.model_copy(update=update)
    copy = tool.model_copy(update={"metadata": metadata})
    # Bound to the copy, then set on it: the instance's attribute wins over the class's method.
    object.__setattr__(copy, "_run", _in_run(wrap(copy._run, name)))
    if cls._arun is not BaseTool._arun:  # BaseTool's own _arun calls _run: metered there
        object.__setattr__(copy, "_arun", _in_run(wrap(copy._arun, name)))
    return copy


def metered_tools(
    tools: Iterable[T],
    *,
    meter: Meter | None = None,
    actions: Mapping[str, str | ToolAction] | None = None,
    tags: Mapping[str, str] | None = None,
) -> list[T]:
    """Return copies of langchain tools whose every call is metered as one action.

    Each copy has the same type, name, description and argument schema; give the copies to
    the agent or model (``model.bind_tools(tools)``) in place of the originals.

    Args:
        tools: The tools (`BaseTool` objects, e.g. made with ``@tool``).
        meter: The meter to use; the global default meter when ``None``.
        actions: Tool name -> action type or `ToolAction`, for tools that are not one
            ``"standard"`` action named after the tool.
        tags: Tags every tool call's record carries.

    Returns:
        The metered tools, in order.

    Raises:
        ConfigurationError: `tools` is not a list of langchain tools, a tool is metered
            already, or `actions`, `tags` or `meter` is bad (`UnknownActionType` when the rate
            card does not price an action type of `actions`).
    """
    if isinstance(tools, BaseTool | str | bytes | Mapping) or not isinstance(tools, Iterable):
        raise ConfigurationError("tools", tools, "must be a list of langchain tools")
    tool_meter = ToolMeter(meter=meter, actions=actions, tags=tags)
    metered: list[T] = []
    for index, tool in enumerate(tools):
        if not isinstance(tool, BaseTool):
            raise ConfigurationError(
                f"tools[{index}]",
                tool,
                "is not a langchain tool (a BaseTool): make it one with "
                "langchain_core.tools.tool(...) or StructuredTool.from_function(...)",
            )
        if (tool.metadata or {}).get(METERED_KEY):
            raise ConfigurationError(
                f"tools[{index}]",
                tool,
                "is metered already (by metered_tools or metered_action): metering it again "
                "would count every call twice",
            )
        metered.append(meter_tool(tool, tool_meter.wrap))  # type: ignore[arg-type]
    return metered


def _in_run(func: Callable[..., Any]) -> Callable[..., Any]:
    """Run `func` (metered) in the conversation of the langchain run that calls it."""
    return scoped(func, CONVERSATION, _run_conversation)


def _run_conversation() -> str | None:
    """The conversation of the tool run being executed here: the user's `conversation()`, else
    the run's ``thread_id``/``conversation_id``, else what a handler of the run knows of it."""
    current = CONVERSATION.get()
    if current is not None:
        return current
    config = var_child_runnable_config.get()
    if not config:
        return None
    found = _explicit_id(config.get("metadata"), config.get("configurable"))
    if found is not None:
        return found
    callbacks = config.get("callbacks")
    tool_run = getattr(callbacks, "parent_run_id", None)
    for handler in getattr(callbacks, "handlers", None) or ():
        if isinstance(handler, FlexCreditsCallbackHandler) and isinstance(tool_run, UUID):
            return handler.conversation_of_run(tool_run)
    return None


def _explicit_id(*sources: Any) -> str | None:
    for source in sources:
        if isinstance(source, Mapping):
            for key in CONVERSATION_KEYS:
                value = source.get(key)
                if isinstance(value, str | int) and not isinstance(value, bool):
                    text = conversation_of(value)
                    if text is not None:
                        return text
    return None


# --- the callback handler -----------------------------------------------------------------------


class _Run:
    """What the handler knows of one langchain run while it runs."""

    __slots__ = ("action", "conversation", "is_tool", "model", "parent")

    def __init__(self, parent: UUID | None, conversation: str, is_tool: bool) -> None:
        self.parent = parent
        self.conversation = conversation
        self.is_tool = is_tool
        self.action: Action | None = None
        self.model: str | None = None


class FlexCreditsCallbackHandler(BaseCallbackHandler):
    """A langchain callback handler that meters every tool call of a run as one action.

    Pass it in the config of the outermost call (``agent.invoke(inputs,
    {"callbacks": [handler]})``), so that it sees the whole run. It also adds the tokens that
    models report (``on_llm_end``) to the action running then. Tools made by `metered_tools`
    (or `metered_action`) are metered by their function, not a second time here.

    Args:
        meter: The meter to use; the global default meter when ``None``.
        actions: Tool name -> action type or `ToolAction`, for tools that are not one
            ``"standard"`` action named after the tool.
        tags: Tags every tool call's record carries.

    Raises:
        ConfigurationError: A bad `actions`, `tags` or `meter` (`UnknownActionType` when the
            rate card does not price an action type of `actions`).
    """

    #: An `ActionRefused` raised at ``on_tool_start`` must stop the tool, as it does for a
    #: metered function; every other failure is caught, logged and counted here.
    raise_error = True
    #: Called in the run's own thread and context, where `fc.tags` and `current_action()` are.
    run_inline = True

    def __init__(
        self,
        *,
        meter: Meter | None = None,
        actions: Mapping[str, str | ToolAction] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__()
        self.tool_meter = ToolMeter(meter=meter, actions=actions, tags=check_tags(tags or {}))
        self._runs: dict[UUID, _Run] = {}
        self._lock = threading.Lock()

    def conversation_of_run(self, run_id: UUID) -> str | None:
        """Return the conversation id of a run the handler is watching, else ``None``."""
        run = self._runs.get(run_id)
        return None if run is None else run.conversation

    # --- runs -----------------------------------------------------------------------------

    def _begin(
        self, run_id: UUID, parent_run_id: UUID | None, metadata: Any, is_tool: bool = False
    ) -> _Run:
        parent_config = var_child_runnable_config.get() or {}
        conversation = _explicit_id(metadata, parent_config.get("configurable"))
        with self._lock:
            parent = self._runs.get(parent_run_id) if parent_run_id is not None else None
            if conversation is None:
                conversation = parent.conversation if parent is not None else str(run_id)
            run = self._runs[run_id] = _Run(parent_run_id, conversation, is_tool)
            while len(self._runs) > MAX_RUNS:  # runs whose end never came
                del self._runs[next(iter(self._runs))]
        return run

    def _end(self, run_id: UUID) -> _Run | None:
        with self._lock:
            return self._runs.pop(run_id, None)

    def _failed(self, where: str, exc: Exception) -> None:
        self.tool_meter.meter._failed(f"langchain {where}", "(langchain callback)", exc)

    def on_chain_start(
        self,
        serialized: dict[str, Any],
        inputs: dict[str, Any],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        try:
            self._begin(run_id, parent_run_id, metadata)
        except Exception as exc:
            self._failed("on_chain_start", exc)

    def on_retriever_start(
        self,
        serialized: dict[str, Any],
        query: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        try:
            self._begin(run_id, parent_run_id, metadata)
        except Exception as exc:
            self._failed("on_retriever_start", exc)

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._end(run_id)

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._end(run_id)

    def on_retriever_end(self, documents: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._end(run_id)

    def on_retriever_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._end(run_id)

    # --- tools ----------------------------------------------------------------------------

    def on_tool_start(
        self,
        serialized: dict[str, Any],
        input_str: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        inputs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Begin the tool call's action, unless the tool meters its own calls.

        Raises:
            ActionRefused: The wallet refused the action; langchain raises it from the tool.
        """
        try:
            run = self._begin(run_id, parent_run_id, metadata, is_tool=True)
            if (metadata or {}).get(METERED_KEY):
                return
            name: Any = (serialized or {}).get("name") or kwargs.get("name")
            run.action = self.tool_meter.start(
                name, conversation_id=conversation_of(run.conversation)
            )
        except ActionRefused:
            self._end(run_id)
            raise
        except Exception as exc:
            self._failed("on_tool_start", exc)

    def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:
        """End the tool call's action: an error when the tool returned an error message (a
        ``ToolException`` that ``handle_tool_error`` turned into the tool's answer)."""
        run = self._end(run_id)
        if run is None or run.action is None:
            return
        error = None
        if isinstance(output, ToolMessage) and output.status == "error":
            error = ToolException(output.content)
        self.tool_meter.end(run.action, error)

    def on_tool_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        """End the tool call's action as an error (langchain raises `error` on unchanged)."""
        run = self._end(run_id)
        if run is not None and run.action is not None:
            self.tool_meter.end(run.action, error)

    # --- models ---------------------------------------------------------------------------

    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[Any]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self._model_start(run_id, parent_run_id, serialized, metadata, kwargs)

    def on_llm_start(
        self,
        serialized: dict[str, Any],
        prompts: list[str],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self._model_start(run_id, parent_run_id, serialized, metadata, kwargs)

    def _model_start(
        self,
        run_id: UUID,
        parent_run_id: UUID | None,
        serialized: Any,
        metadata: Any,
        kwargs: Mapping[str, Any],
    ) -> None:
        try:
            run = self._begin(run_id, parent_run_id, metadata)
            run.model = _model_hint(serialized, metadata, kwargs.get("invocation_params"))
        except Exception as exc:
            self._failed("on_llm_start", exc)

    def on_llm_end(
        self,
        response: LLMResult,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        """Add the call's token usage to the action running now (see the class)."""
        run = self._end(run_id)
        try:
            usage = _usage(response, run.model if run is not None else None)
            if not usage:
                return
            action = self._tool_action(run.parent if run is not None else parent_run_id)
            for model, (input_tokens, output_tokens) in usage.items():
                record_model_usage(
                    model, input_tokens=input_tokens, output_tokens=output_tokens, action=action
                )
        except Exception as exc:
            self._failed("on_llm_end", exc)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._end(run_id)

    def _tool_action(self, run_id: UUID | None) -> Action | None:
        """The action of the innermost tool run around `run_id` that this handler meters."""
        with self._lock:
            while run_id is not None:
                run = self._runs.get(run_id)
                if run is None:
                    return None
                if run.is_tool:
                    return run.action  # None for a tool metered by its function: current
                run_id = run.parent
        return None


# --- model usage ------------------------------------------------------------------------------


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def _model_name(data: Any) -> str | None:
    if not isinstance(data, Mapping):
        return None
    return _text(data.get("model_name")) or _text(data.get("model"))


def _model_hint(serialized: Any, metadata: Any, params: Any) -> str | None:
    """The model's name as known when the call starts: its serialized arguments, langchain's
    ``ls_model_name``, the invocation parameters, else the model's class name."""
    serialized = serialized if isinstance(serialized, Mapping) else {}
    ids = serialized.get("id")
    return (
        _model_name(serialized.get("kwargs"))
        or (_text(metadata.get("ls_model_name")) if isinstance(metadata, Mapping) else None)
        or _model_name(params)
        or _text(serialized.get("name"))
        or (_text(ids[-1]) if isinstance(ids, list) and ids else None)
    )


def _tokens(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _usage(response: LLMResult, hint: str | None) -> dict[str, tuple[int, int]]:
    """Model -> (input, output) tokens of one model call: the messages' ``usage_metadata``,
    else the ``token_usage`` (or ``usage``) of ``llm_output``."""
    llm_output = response.llm_output if isinstance(response.llm_output, Mapping) else {}
    default = _model_name(llm_output) or hint or "unknown"
    found: dict[str, tuple[int, int]] = {}
    for generations in response.generations:
        for generation in generations:
            message = getattr(generation, "message", None)
            usage = getattr(message, "usage_metadata", None)
            if not isinstance(usage, Mapping):
                continue
            model = _model_name(getattr(message, "response_metadata", None)) or default
            before = found.get(model, (0, 0))
            found[model] = (
                before[0] + _tokens(usage.get("input_tokens")),
                before[1] + _tokens(usage.get("output_tokens")),
            )
    if not found:
        usage = llm_output.get("token_usage") or llm_output.get("usage")
        if isinstance(usage, Mapping):
            input_tokens = _tokens(usage.get("prompt_tokens")) or _tokens(usage.get("input_tokens"))
            output_tokens = _tokens(usage.get("completion_tokens")) or _tokens(
                usage.get("output_tokens")
            )
            if input_tokens or output_tokens:
                found[default] = (input_tokens, output_tokens)
    return found
