"""Metering for MCP servers (the official ``mcp`` Python SDK, 2.x): every tool call one action.

A tool provider bills per call: `meter_server` meters every tool a server exposes, those
registered before the call and those registered after it, one action per ``tools/call``, named
after the tool. What ``tools/list`` shows (names, descriptions, input schemas) does not change.

- `MCPServer` (called ``FastMCP`` in mcp 1.x): `meter_server` adds a server middleware (the
  SDK's ``server.middleware``). At each ``tools/call`` of a tool the server has, it meters the
  tool's function (once per tool, with `ToolMeter.wrap`), so a tool that raises is recorded
  with its own exception, and a refusal of the wallet reaches the client as the tool's error
  result (a `ToolError` that says credits ran out) before the tool's body runs. A function
  that is metered already (``@server.tool()`` over ``@fc.metered_action``, or a tool of
  `metered_tools`) keeps its own metering: a call is metered once.
- The low-level `Server`: `meter_server` wraps its ``tools/call`` handler; a result with
  ``isError`` is recorded with outcome ``"error"`` (error type ``ToolError``).
- `metered_tools` (and `metered_action` on a `Tool`, through `meter_tool`): copies of `Tool`
  objects whose function is metered, for ``MCPServer(tools=[...])``.

Who called: the request's ``_meta`` entry `CONVERSATION_META_KEY` (a client's own conversation
id), else the transport's session id (the ``mcp-session-id`` header of streamable HTTP),
becomes the record's conversation id, unless the server runs inside the user's own
`conversation()`. The client's name from its ``clientInfo`` (``initialize``, or the request
envelope of the 2026 protocol) is the tag `CLIENT_TAG`. Both are what the client declares,
not an authenticated identity.

Needs mcp: ``pip install 'flexcredits-sdk[mcp]'``.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from contextlib import ExitStack, suppress
from typing import TYPE_CHECKING, Any, TypeVar

try:
    from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
    from mcp.server.lowlevel import Server
    from mcp.server.mcpserver import MCPServer
    from mcp.server.mcpserver.exceptions import ToolError
    from mcp.server.mcpserver.tools import Tool
    from mcp_types import CallToolResult, TextContent
except ImportError as exc:  # pragma: no cover - exercised with the framework hidden
    raise ImportError(
        "flexcredits_sdk.integrations.mcp needs mcp 2.x: pip install 'flexcredits-sdk[mcp]'"
    ) from exc

from .. import _meter, _wrap
from .._context import conversation, tags
from .._exceptions import ActionRefused, BudgetExceeded, ConfigurationError, InsufficientCredits
from ._common import ToolAction, ToolMeter, conversation_of

if TYPE_CHECKING:
    from .._meter import Meter
    from ._tools import Wrap

__all__ = [
    "CLIENT_TAG",
    "CONVERSATION_META_KEY",
    "SESSION_HEADER",
    "meter_server",
    "meter_tool",
    "metered_tools",
]

logger = logging.getLogger("flexcredits_sdk")

#: The tag that carries the calling client's name (``clientInfo.name``).
CLIENT_TAG = "mcp_client"
#: The request ``_meta`` key whose string value is the call's conversation id.
CONVERSATION_META_KEY = "flexcredits/conversation"
#: The streamable HTTP header of the session id, the conversation id when the request has none.
SESSION_HEADER = "mcp-session-id"

S = TypeVar("S", bound="MCPServer[Any] | Server[Any]")

#: The functions the engine wraps a metered function in: a tool whose function is (or wraps)
#: one of them is metered already.
_ENGINE_WRAPPERS = frozenset(
    {
        (_meter.__file__, "_Engine._decorate.<locals>.wrapper"),
        (_wrap.__file__, "generator_wrapper.<locals>.wrapper"),
        (_wrap.__file__, "async_generator_wrapper.<locals>.wrapper"),
    }
)


def meter_server(
    server: S,
    *,
    meter: Meter | None = None,
    actions: Mapping[str, str | ToolAction] | None = None,
    tags: Mapping[str, str] | None = None,
) -> S:
    """Meter every tool call of an MCP server: one action per call, named after the tool.

    Tools registered before and after this call are metered alike; ``tools/list`` is not
    changed. A call of a tool the server does not have is not metered.

    Args:
        server: An `MCPServer` or a low-level `Server` (with a ``tools/call`` handler).
        meter: The meter; the global default meter when ``None``.
        actions: Tool name -> action type, or `ToolAction`, for tools that are not one
            ``"standard"`` action each.
        tags: Tags of every tool call's record.

    Returns:
        The same server.

    Raises:
        ConfigurationError: `server` is not an MCP server, has no ``tools/call`` handler, or is
            metered already; a bad `actions` mapping or tag (`UnknownActionType` for an action
            type the rate card does not price).
    """
    if isinstance(server, MCPServer):
        manager = getattr(server, "_tool_manager", None)
        lookup = getattr(manager, "get_tool", None)
        if lookup is None:  # pragma: no cover - a version of mcp whose internals moved
            raise ConfigurationError(
                "server", server, "is an MCPServer of an mcp version this adapter does not know"
            )
        if any(isinstance(m, _Middleware) for m in server.middleware):
            raise ConfigurationError("server", server, "is metered already")
        tool_meter = ToolMeter(meter=meter, actions=actions, tags=tags)
        middleware = _Middleware(tool_meter, lookup)
        for tool in manager.list_tools():  # type: ignore[union-attr]
            middleware.meter(tool)
        server.middleware.append(middleware)
        return server
    if isinstance(server, Server):
        entry = server.get_request_handler("tools/call")
        if entry is None:
            raise ConfigurationError(
                "server", server, "has no tools/call handler: pass on_call_tool= to Server"
            )
        if isinstance(entry.handler, _Handler):
            raise ConfigurationError("server", server, "is metered already")
        handler = _Handler(ToolMeter(meter=meter, actions=actions, tags=tags), server, entry)
        server.add_request_handler("tools/call", entry.params_type, handler)
        return server
    raise ConfigurationError("server", server, "must be an mcp MCPServer or a low-level mcp Server")


def metered_tools(
    tools: Iterable[Tool],
    *,
    meter: Meter | None = None,
    actions: Mapping[str, str | ToolAction] | None = None,
    tags: Mapping[str, str] | None = None,
) -> list[Tool]:
    """Return copies of MCPServer `Tool` objects whose function is metered, for
    ``MCPServer(tools=...)``: same name, description and input schema.

    Raises:
        ConfigurationError: An item is not a `Tool`; a bad `actions` mapping or tag.
    """
    if isinstance(tools, Tool) or not isinstance(tools, Iterable):
        raise ConfigurationError("tools", tools, "must be a list of mcp Tool objects")
    listed = list(tools)
    for tool in listed:
        if not isinstance(tool, Tool):
            raise ConfigurationError(
                "tools item", tool, "must be an mcp Tool (Tool.from_function(f))"
            )
    tool_meter = ToolMeter(meter=meter, actions=actions, tags=tags)
    return [_copy(tool, tool_meter.wrap) for tool in listed]


def meter_tool(tool: Any, wrap: Wrap) -> Tool | None:
    """Return a copy of an MCPServer `Tool` whose function is metered through `wrap`; ``None``
    for any other object (what `metered_action` calls on a framework's tool object)."""
    if not isinstance(tool, Tool):
        return None
    return _copy(tool, wrap)


def _copy(tool: Tool, wrap: Wrap) -> Tool:
    if _is_metered(tool.fn):
        return tool.model_copy()
    return tool.model_copy(update={"fn": _tool_function(tool.fn, tool.name, wrap)})


def _is_metered(func: Any) -> bool:
    """Whether `func` is, or wraps, a function the meter's engine made."""
    for _ in range(64):
        code = getattr(func, "__code__", None)
        if code is not None and (code.co_filename, code.co_qualname) in _ENGINE_WRAPPERS:
            return True
        func = getattr(func, "__wrapped__", None)
        if func is None:
            return False
    return False


def _tool_function(func: Callable[..., Any], name: str, wrap: Wrap) -> Callable[..., Any]:
    """`func` metered as tool `name`; a refusal of the wallet raised as a `ToolError`, which
    MCPServer turns into the call's error result with this message."""
    if not inspect.isroutine(func) and inspect.iscoroutinefunction(type(func).__call__):
        target = func  # an object with an async __call__: metered as a coroutine function

        async def call(*args: Any, **kwargs: Any) -> Any:
            return await target(*args, **kwargs)

        func = call
    metered = wrap(func, name)
    tool: Callable[..., Any]
    if inspect.iscoroutinefunction(metered):

        async def tool(*args: Any, **kwargs: Any) -> Any:
            try:
                return await metered(*args, **kwargs)
            except ActionRefused as exc:
                raise ToolError(_refusal_message(exc)) from exc

    elif inspect.isgeneratorfunction(metered) or inspect.isasyncgenfunction(metered):
        return metered
    else:

        def tool(*args: Any, **kwargs: Any) -> Any:
            try:
                return metered(*args, **kwargs)
            except ActionRefused as exc:
                raise ToolError(_refusal_message(exc)) from exc

    return functools.wraps(metered)(tool)


def _refusal_message(exc: ActionRefused) -> str:
    """The text a client reads when the wallet refused a tool call before it ran."""
    if isinstance(exc, InsufficientCredits):
        return f"credits ran out: {exc}"
    if isinstance(exc, BudgetExceeded):
        return f"credits ran out (budget {exc.budget.name!r}): {exc}"
    return f"refused by the credit wallet: {exc}"


# --- who called -------------------------------------------------------------------------------


def _conversation_id(ctx: ServerRequestContext[Any, Any]) -> str | None:
    """The call's conversation id: the request's own, else the transport's session id."""
    meta = ctx.meta
    if meta:
        value = meta.get(CONVERSATION_META_KEY)
        if isinstance(value, str) and value:
            return conversation_of(value)
    headers = getattr(ctx.request, "headers", None)
    if headers is not None:
        session = headers.get(SESSION_HEADER)
        if isinstance(session, str) and session:
            return conversation_of(session)
    return None


def _client_name(ctx: ServerRequestContext[Any, Any]) -> str | None:
    params = ctx.session.client_params
    info = params.client_info if params is not None else None
    name = info.name if info is not None else None
    return name if isinstance(name, str) and name else None


def _call_context(ctx: ServerRequestContext[Any, Any]) -> ExitStack:
    """The `conversation()` and `tags()` scopes of one call (what the client sent that is not
    usable, such as an over-long name, is left out: the call runs on)."""
    stack = ExitStack()
    cid = _conversation_id(ctx)
    if cid is not None:
        with suppress(ConfigurationError):
            stack.enter_context(conversation(cid))
    client = _client_name(ctx)
    if client is not None:
        with suppress(ConfigurationError):
            stack.enter_context(tags(**{CLIENT_TAG: client}))
    return stack


# --- MCPServer: a middleware ------------------------------------------------------------------


class _Middleware:
    """Meters the function of each tool called (once per tool) and sets the call's context."""

    def __init__(self, tool_meter: ToolMeter, lookup: Callable[[str], Tool | None]) -> None:
        self._meter = tool_meter
        self._lookup = lookup
        self._unusable: set[str] = set()  # tool names no action may have (logged once)

    def meter(self, tool: Tool) -> None:
        """Meter `tool`'s function in place, unless it is metered already.

        Raises:
            ConfigurationError: The tool's name is not a usable action name (map it to one
                with ``actions={name: ToolAction(name=...)}``).
        """
        if not _is_metered(tool.fn):
            tool.fn = _tool_function(tool.fn, tool.name, self._meter.wrap)

    def meter_later(self, tool: Tool) -> None:
        """`meter` for a tool registered after `meter_server`: a failure is logged once, and
        the tool runs unmetered."""
        try:
            self.meter(tool)
        except ConfigurationError as exc:
            if tool.name not in self._unusable:
                self._unusable.add(tool.name)
                logger.warning("MCP tool %r is not metered: %s", tool.name, exc)

    async def __call__(
        self, ctx: ServerRequestContext[Any, Any], call_next: CallNext
    ) -> HandlerResult:
        if ctx.method != "tools/call" or not ctx.params:
            return await call_next(ctx)
        name = ctx.params.get("name")
        tool = self._lookup(name) if isinstance(name, str) else None
        if tool is None:
            return await call_next(ctx)
        self.meter_later(tool)
        with _call_context(ctx):
            return await call_next(ctx)


# --- the low-level Server: its tools/call handler ---------------------------------------------


class _Handler:
    """The ``tools/call`` handler of a low-level `Server`, metered: one action per call."""

    def __init__(self, tool_meter: ToolMeter, server: Server[Any], entry: Any) -> None:
        self._meter = tool_meter
        self._server = server
        self._handler: Callable[..., Awaitable[HandlerResult]] = entry.handler

    def _knows(self, name: str) -> bool:
        schema_of = self._server.get_tool_input_schema
        return schema_of is None or schema_of(name) is not None

    async def __call__(self, ctx: ServerRequestContext[Any, Any], params: Any) -> HandlerResult:
        name: str = params.name
        with _call_context(ctx):
            scope = None
            if self._knows(name):
                try:
                    scope = self._meter.scope(name)
                except ConfigurationError:
                    scope = None  # a name no action may have: the call runs unmetered
            if scope is None:
                return await self._handler(ctx, params)
            try:
                scope.__enter__()
            except ActionRefused as exc:
                text = f"Error executing tool {name}: {_refusal_message(exc)}"
                return CallToolResult(content=[TextContent(type="text", text=text)], is_error=True)
            try:
                result = await self._handler(ctx, params)
            except BaseException as exc:
                scope.__exit__(type(exc), exc, exc.__traceback__)
                raise
            failed = _error_of(result)
            scope.__exit__(None if failed is None else ToolError, failed, None)
            return result


def _error_of(result: Any) -> ToolError | None:
    """The `ToolError` an error result stands for (its text as the message), or ``None``."""
    if isinstance(result, CallToolResult):
        if not result.is_error:
            return None
        content: Any = result.content
    elif isinstance(result, Mapping) and result.get("isError") is True:
        content = result.get("content")
    else:
        return None
    texts = [
        getattr(block, "text", None) if not isinstance(block, Mapping) else block.get("text")
        for block in (content or ())
    ]
    return ToolError("; ".join(t for t in texts if isinstance(t, str)))
