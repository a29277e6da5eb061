"""The MCP adapter: `meter_server` on an `MCPServer` and a low-level `Server`, `metered_tools`,
and `@fc.metered_action` with ``@server.tool()``, driven by a real mcp `Client` in process
(JSON-RPC over the in-memory transport, and the SDK's direct modern path), over stdio with a
server subprocess, and with OpenTelemetry (no network)."""

from __future__ import annotations

import functools
import importlib
import json
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import pytest
import uvicorn
from mcp import Client, StdioServerParameters
from mcp.server.lowlevel import Server
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.tools import Tool
from mcp.shared.exceptions import MCPError
from mcp_types import (
    CallToolResult,
    Implementation,
    ListToolsResult,
    TextContent,
)
from mcp_types import Tool as MCPTool

import flexcredits_sdk as fc
from flexcredits_sdk.integrations import ToolAction
from flexcredits_sdk.integrations._tools import meter_tool as route_tool_object
from flexcredits_sdk.integrations.mcp import (
    CLIENT_TAG,
    CONVERSATION_META_KEY,
    meter_server,
    metered_tools,
)

CARD = fc.RateCard(
    action_types={"standard": {"production": 20}, "premium": {"production": 50}},
    models={"m-test": {"input": "3", "output": "15"}},
)
#: 30 input and 12 output tokens of m-test: (30 * 3 + 12 * 15) / 1e6 USD.
COST = Decimal("0.00027")
#: The in-process client's two ways to reach a server: JSON-RPC over the in-memory transport
#: after an ``initialize`` handshake, and the SDK's direct path of the 2026 protocol.
MODES = ["legacy", "auto"]


@pytest.fixture
def wallet() -> Iterator[fc.OfflineWallet]:
    wallet = fc.OfflineWallet(rate_card=CARD)
    yield wallet
    wallet.shutdown()


@pytest.fixture
def meter(wallet: fc.OfflineWallet) -> fc.Meter:
    return fc.Meter(rate_card=CARD, wallet=wallet, spans="never")


def records(wallet: fc.OfflineWallet) -> list[fc.UsageRecord]:
    return sorted(wallet.records(), key=lambda r: r.start_time_ns)


@asynccontextmanager
async def client(
    server: MCPServer | Server[Any], mode: str = "legacy", name: str = "support-agent"
) -> AsyncIterator[Client]:
    info = Implementation(name=name, version="1.0")
    async with Client(server, mode=mode, client_info=info) as connected:  # type: ignore[arg-type]
        yield connected


def text(result: CallToolResult) -> str:
    (block,) = result.content
    assert isinstance(block, TextContent)
    return block.text


async def listing(server: MCPServer | Server[Any]) -> list[dict[str, Any]]:
    async with client(server) as c:
        return [t.model_dump() for t in (await c.list_tools()).tools]


# --- the tools of the examples ------------------------------------------------------------------


def lookup_order(order_id: str, verbose: bool = False) -> str:
    """Find an order by its id."""
    return f"order {order_id}: shipped"


async def alookup_order(order_id: str, verbose: bool = False) -> str:
    """Find an order by its id."""
    return f"order {order_id}: shipped"


def refund(order_id: str) -> str:
    """Refund an order."""
    raise ToolError(f"order {order_id} cannot be refunded")


async def broken(order_id: str) -> str:
    """Fail with an unexpected error."""
    raise KeyError(order_id)


def server_with(*tools: Callable[..., Any]) -> MCPServer:
    server = MCPServer("shop")
    for each in tools:
        server.add_tool(each)
    return server


# --- meter_server on an MCPServer ---------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_every_tool_before_and_after_is_metered_once_per_call(
    meter: fc.Meter, wallet: fc.OfflineWallet, mode: str
) -> None:
    server = server_with(lookup_order)
    meter_server(server, meter=meter)

    @server.tool()
    async def track(order_id: str) -> str:
        """Track a parcel."""
        return f"parcel {order_id}: in transit"

    async with client(server, mode) as c:
        first = await c.call_tool("lookup_order", {"order_id": "A1"})
        second = await c.call_tool("track", {"order_id": "A2"})
        third = await c.call_tool("lookup_order", {"order_id": "A3"})

    assert [text(r) for r in (first, second, third)] == [
        "order A1: shipped",
        "parcel A2: in transit",
        "order A3: shipped",
    ]
    assert [(r.action, r.outcome, r.credits, r.units) for r in records(wallet)] == [
        ("lookup_order", "ok", 20, 1),
        ("track", "ok", 20, 1),
        ("lookup_order", "ok", 20, 1),
    ]
    assert wallet.balance().credits == -60


async def test_tools_list_is_unchanged(meter: fc.Meter) -> None:
    def build() -> MCPServer:
        server = server_with(lookup_order, alookup_order, refund)

        @server.tool(name="status", description="The shop's status.")
        async def status(ctx: Context, detail: int = 0) -> dict[str, int]:
            return {"detail": detail}

        return server

    before = await listing(build())
    metered = meter_server(build(), meter=meter)
    async with client(metered) as c:  # called once: the functions are metered now
        await c.call_tool("lookup_order", {"order_id": "A1"})
        await c.call_tool("status", {"detail": 2})
    assert await listing(metered) == before
    assert {t["name"] for t in before} == {"lookup_order", "alookup_order", "refund", "status"}


@pytest.mark.parametrize("mode", MODES)
async def test_a_failing_tool_gives_the_same_result_and_one_error_record(
    meter: fc.Meter, wallet: fc.OfflineWallet, mode: str
) -> None:
    plain = server_with(refund, broken)
    metered = meter_server(server_with(refund, broken), meter=meter)
    results = []
    for server in (plain, metered):
        async with client(server, mode) as c:
            results.append(
                [
                    (await c.call_tool("refund", {"order_id": "A1"})).model_dump(),
                    (await c.call_tool("broken", {"order_id": "A2"})).model_dump(),
                ]
            )

    assert results[0] == results[1]
    assert [r["is_error"] for r in results[1]] == [True, True]
    assert [(r.action, r.outcome, r.error_type, r.credits) for r in records(wallet)] == [
        ("refund", "error", "ToolError", 20),
        ("broken", "error", "KeyError", 20),
    ]


async def test_unknown_tools_and_bad_arguments_are_not_metered(
    meter: fc.Meter, wallet: fc.OfflineWallet
) -> None:
    calls: list[str] = []

    def counted(order_id: int) -> str:
        """Count calls."""
        calls.append("ran")
        return "ok"

    server = meter_server(server_with(counted), meter=meter)
    async with client(server) as c:
        unknown = await c.call_tool("nothing_here", {})
        bad = await c.call_tool("counted", {"order_id": "not a number"})

    assert unknown.is_error
    assert text(unknown) == "Unknown tool: nothing_here"
    assert bad.is_error
    assert text(bad).startswith("Error executing tool counted:")
    assert calls == []
    assert records(wallet) == []


async def test_actions_map_tools_to_action_types_and_units(
    meter: fc.Meter, wallet: fc.OfflineWallet
) -> None:
    server = server_with(lookup_order, alookup_order)
    meter_server(
        server,
        meter=meter,
        actions={
            "lookup_order": "premium",
            "alookup_order": ToolAction("standard", units=3, name="order_lookup"),
        },
        tags={"team": "shop"},
    )
    async with client(server) as c:
        await c.call_tool("lookup_order", {"order_id": "A1"})
        await c.call_tool("alookup_order", {"order_id": "A2"})

    assert [(r.action, r.action_type, r.units, r.credits, r.tags) for r in records(wallet)] == [
        ("lookup_order", "premium", 1, 50, {"team": "shop", CLIENT_TAG: "support-agent"}),
        ("order_lookup", "standard", 3, 60, {"team": "shop", CLIENT_TAG: "support-agent"}),
    ]


class Quote:
    """An object with an async __call__ registered as a tool."""

    __name__ = "quote"

    async def __call__(self, order_id: str) -> str:
        return f"quote for {order_id}"


async def test_a_callable_object_with_an_async_call_is_metered_around_its_coroutine(
    meter: fc.Meter, wallet: fc.OfflineWallet
) -> None:
    server = meter_server(MCPServer("shop"), meter=meter)
    server.add_tool(Quote(), name="quote", description="Quote an order.")
    async with client(server) as c:
        result = await c.call_tool("quote", {"order_id": "A1"})

    assert text(result) == "quote for A1"
    (record,) = records(wallet)
    assert (record.action, record.outcome) == ("quote", "ok")


#: A name MCP registers (with a logged warning), too long for an action.
LONG_NAME = "lookup_" * 30


async def test_a_tool_name_no_record_may_have_is_refused_or_left_unmetered(
    meter: fc.Meter, wallet: fc.OfflineWallet, caplog: pytest.LogCaptureFixture
) -> None:
    def build() -> MCPServer:
        server = MCPServer("shop")
        server.add_tool(lookup_order, name=LONG_NAME)
        return server

    with pytest.raises(fc.ConfigurationError, match="at most 200 characters"):
        meter_server(build(), meter=meter)
    later = meter_server(MCPServer("shop"), meter=meter)
    later.add_tool(lookup_order, name=LONG_NAME)
    for _ in range(2):
        async with client(later) as c:
            result = await c.call_tool(LONG_NAME, {"order_id": "A1"})
        assert text(result) == "order A1: shipped"

    assert records(wallet) == []
    warnings = [r.getMessage() for r in caplog.records if r.name == "flexcredits_sdk"]
    assert len(warnings) == 1
    assert warnings[0].startswith(f"MCP tool {LONG_NAME!r} is not metered")


# --- who called: conversation and client ---------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_the_request_meta_is_the_conversation_and_the_client_a_tag(
    meter: fc.Meter, wallet: fc.OfflineWallet, mode: str
) -> None:
    server = meter_server(server_with(lookup_order), meter=meter)
    async with client(server, mode, name="claude-desktop") as c:
        await c.call_tool("lookup_order", {"order_id": "A1"}, meta={CONVERSATION_META_KEY: "t-7"})
        await c.call_tool("lookup_order", {"order_id": "A2"})

    assert [(r.conversation_id, r.tags) for r in records(wallet)] == [
        ("t-7", {CLIENT_TAG: "claude-desktop"}),
        (None, {CLIENT_TAG: "claude-desktop"}),
    ]


async def test_the_users_conversation_and_tags_around_the_server_win(
    meter: fc.Meter, wallet: fc.OfflineWallet
) -> None:
    server = meter_server(server_with(lookup_order), meter=meter)
    with fc.conversation("case-1"), fc.tags(department="service"):
        async with client(server) as c:  # the server's tasks start here
            await c.call_tool(
                "lookup_order", {"order_id": "A1"}, meta={CONVERSATION_META_KEY: "t-7"}
            )

    (record,) = records(wallet)
    assert record.conversation_id == "case-1"
    assert record.tags == {"department": "service", CLIENT_TAG: "support-agent"}


async def test_a_conversation_id_no_record_may_carry_is_left_out(
    meter: fc.Meter, wallet: fc.OfflineWallet
) -> None:
    server = meter_server(server_with(lookup_order), meter=meter)
    async with client(server, name="x" * 300) as c:
        result = await c.call_tool(
            "lookup_order", {"order_id": "A1"}, meta={CONVERSATION_META_KEY: "bad\nid"}
        )

    assert text(result) == "order A1: shipped"
    (record,) = records(wallet)
    assert (record.conversation_id, record.tags) == (None, {})


@pytest.mark.parametrize("mode", MODES)
async def test_concurrent_calls_keep_their_own_conversation_client_and_action(
    meter: fc.Meter, wallet: fc.OfflineWallet, mode: str
) -> None:
    calls = 6
    started = 0
    all_started = anyio.Event()
    barrier = threading.Barrier(calls, timeout=10)

    async def slow(i: int) -> str:
        """Wait until every call has started."""
        nonlocal started
        started += 1
        if started == calls:
            all_started.set()
        await all_started.wait()
        fc.current_action().tag(seen=str(i))  # type: ignore[union-attr]
        return str(i)

    def blocking(i: int) -> str:
        """Wait in a worker thread until every call has started."""
        barrier.wait()
        fc.current_action().tag(seen=str(i))  # type: ignore[union-attr]
        return str(i)

    server = meter_server(server_with(slow, blocking), meter=meter)
    for tool in ("slow", "blocking"):
        async with client(server, mode, name="even") as even, client(server, mode, "odd") as odd:
            with anyio.fail_after(10):
                async with anyio.create_task_group() as tg:
                    for i in range(calls):
                        c = even if i % 2 == 0 else odd
                        meta = {CONVERSATION_META_KEY: f"conv-{i}"}
                        tg.start_soon(functools.partial(c.call_tool, tool, {"i": i}, meta=meta))

    seen = {
        (r.action, r.tags["seen"], r.conversation_id, r.tags[CLIENT_TAG]) for r in records(wallet)
    }
    assert seen == {
        (tool, str(i), f"conv-{i}", "even" if i % 2 == 0 else "odd")
        for tool in ("slow", "blocking")
        for i in range(calls)
    }
    assert len(records(wallet)) == 2 * calls


# --- spend control ----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_a_refused_call_is_an_error_result_and_the_tool_does_not_run(
    mode: str,
) -> None:
    ran: list[str] = []

    def charge(order_id: str) -> str:
        """Charge an order."""
        ran.append(order_id)
        return "charged"

    wallet = fc.OfflineWallet(rate_card=CARD, overdraft="deny")
    try:
        wallet.grant(20)
        meter = fc.Meter(rate_card=CARD, wallet=wallet, spans="never")
        server = meter_server(server_with(charge), meter=meter)
        async with client(server, mode) as c:
            first = await c.call_tool("charge", {"order_id": "A1"})
            refused = await c.call_tool("charge", {"order_id": "A2"})

        assert (first.is_error, text(first)) == (False, "charged")
        assert refused.is_error
        assert text(refused) == (
            "Error executing tool charge: credits ran out: action 'charge' needs 20 credits "
            "but the balance is 0 and the wallet's overdraft policy is 'deny'"
        )
        assert ran == ["A1"]
        assert [(r.action, r.credits) for r in wallet.records()] == [("charge", 20)]
        assert meter.stats().refused == 1
    finally:
        wallet.shutdown()


async def test_a_hard_budget_per_client_refuses_that_client_only(
    meter: fc.Meter, wallet: fc.OfflineWallet
) -> None:
    wallet.set_budget(40, tags={CLIENT_TAG: "trial-user"}, name="trial")
    server = meter_server(server_with(alookup_order), meter=meter)
    async with client(server, name="trial-user") as trial, client(server, name="paying") as pay:
        trial_results = [
            await trial.call_tool("alookup_order", {"order_id": f"T{i}"}) for i in range(3)
        ]
        paying = [await pay.call_tool("alookup_order", {"order_id": f"P{i}"}) for i in range(3)]

    assert [r.is_error for r in trial_results] == [False, False, True]
    assert text(trial_results[2]) == (
        "Error executing tool alookup_order: credits ran out (budget 'trial'): action "
        "'alookup_order' needs 20 credits but budget 'trial' has 0 of 40 left this period"
    )
    assert [r.is_error for r in paying] == [False, False, False]
    assert sum(r.credits for r in wallet.records()) == 100


# --- model usage, a tool's own action ----------------------------------------------------------


async def test_a_tool_that_calls_a_model_adds_its_tokens_to_its_action(
    meter: fc.Meter, wallet: fc.OfflineWallet
) -> None:
    def summarize(text: str) -> str:
        """Summarize a text with a model (a worker thread)."""
        fc.integrations.record_model_usage("m-test", input_tokens=30, output_tokens=12)
        return text[:5]

    async def asummarize(text: str) -> str:
        """Summarize a text with a model."""
        fc.integrations.record_model_usage("m-test", input_tokens=20, output_tokens=8)
        fc.integrations.record_model_usage("m-test", input_tokens=10, output_tokens=4)
        return text[:5]

    server = meter_server(server_with(summarize, asummarize), meter=meter)
    async with client(server) as c:
        await c.call_tool("summarize", {"text": "a long text"})
        await c.call_tool("asummarize", {"text": "a long text"})

    assert [(r.action, r.credits, r.model_usage) for r in records(wallet)] == [
        (name, 20, (fc.ModelUsage("m-test", 30, 12, COST),)) for name in ("summarize", "asummarize")
    ]


# --- @fc.metered_action and @server.tool(), and Tool objects -----------------------------------


@pytest.mark.parametrize("metered_server", [False, True])
@pytest.mark.parametrize("func", [lookup_order, alookup_order])
async def test_metered_action_under_server_tool_meters_each_call_once(
    meter: fc.Meter, wallet: fc.OfflineWallet, func: Callable[..., Any], metered_server: bool
) -> None:
    plain = server_with(func)
    server = MCPServer("shop")
    if metered_server:
        meter_server(server, meter=meter)
    decorated = server.tool()(meter.metered_action(name="lookup")(func))

    assert decorated is not func
    assert await listing(server) == await listing(plain)
    async with client(server) as c:
        result = await c.call_tool(func.__name__, {"order_id": "A1"})
    assert text(result) == "order A1: shipped"
    (record,) = records(wallet)
    assert (record.action, record.credits) == ("lookup", 20)
    # With meter_server, the function's own action still learns who called.
    assert record.tags == ({CLIENT_TAG: "support-agent"} if metered_server else {})


@pytest.mark.parametrize("func", [lookup_order, alookup_order])
async def test_metered_action_over_server_tool_meters_only_with_meter_server(
    meter: fc.Meter, wallet: fc.OfflineWallet, func: Callable[..., Any]
) -> None:
    server = MCPServer("shop")
    decorated = meter.metered_action(name="lookup")(server.tool()(func))

    async with client(server) as c:
        await c.call_tool(func.__name__, {"order_id": "A1"})
    assert records(wallet) == []  # the server registered the undecorated function

    meter_server(server, meter=meter)
    async with client(server) as c:
        await c.call_tool(func.__name__, {"order_id": "A2"})
    assert [r.action for r in records(wallet)] == [func.__name__]

    direct = decorated("A3")  # a call in Python goes through the decorator
    if not isinstance(direct, str):
        direct = await direct
    assert direct == "order A3: shipped"
    assert [r.action for r in records(wallet)] == [func.__name__, "lookup"]


async def test_metered_tools_copies_tool_objects_and_a_metered_server_keeps_them_once(
    meter: fc.Meter, wallet: fc.OfflineWallet
) -> None:
    originals = [Tool.from_function(lookup_order), Tool.from_function(alookup_order)]
    copies = metered_tools(originals, meter=meter, actions={"lookup_order": "premium"})

    for original, copy in zip(originals, copies, strict=True):
        assert type(copy) is Tool
        assert copy is not original
        assert copy.fn is not original.fn
        assert (copy.name, copy.description, copy.parameters, copy.is_async) == (
            original.name,
            original.description,
            original.parameters,
            original.is_async,
        )
    server = meter_server(MCPServer("shop", tools=copies), meter=meter)
    async with client(server) as c:
        await c.call_tool("lookup_order", {"order_id": "A1"})
        await c.call_tool("alookup_order", {"order_id": "A2"})
    assert [(r.action, r.credits) for r in records(wallet)] == [
        ("lookup_order", 50),
        ("alookup_order", 20),
    ]
    assert metered_tools(copies, meter=meter)[0].fn is copies[0].fn  # not metered twice


def test_the_metered_action_route_copies_a_tool_object(
    meter: fc.Meter, wallet: fc.OfflineWallet
) -> None:
    original = Tool.from_function(lookup_order)
    wrapped: list[str] = []

    def wrap(func: Callable[..., Any], tool: str) -> Callable[..., Any]:
        wrapped.append(tool)
        return meter.action(tool)(func)

    copy = route_tool_object(original, wrap)

    assert type(copy) is Tool
    assert wrapped == ["lookup_order"]
    assert (copy.name, copy.parameters) == (original.name, original.parameters)
    assert copy.fn(order_id="A1") == "order A1: shipped"
    assert [r.action for r in records(wallet)] == ["lookup_order"]


def test_metered_action_refuses_a_tool_object_it_cannot_call() -> None:
    # A Tool is not callable, so metered_action takes it for a function and refuses it;
    # metered_tools (or meter_server) is the way to meter Tool objects.
    with pytest.raises(fc.ConfigurationError, match="func"):
        fc.metered_action(Tool.from_function(lookup_order))


# --- the low-level Server ---------------------------------------------------------------------

SCHEMA = {"type": "object", "properties": {"order_id": {"type": "string"}}}
LOW_TOOLS = ("lookup", "refund", "crash")


def low_level_server(ran: list[str]) -> Server[Any]:
    async def list_tools(ctx: Any, params: Any) -> ListToolsResult:
        return ListToolsResult(
            tools=[MCPTool(name=n, description=n, input_schema=SCHEMA) for n in LOW_TOOLS]
        )

    async def call_tool(ctx: Any, params: Any) -> CallToolResult:
        ran.append(params.name)
        order = (params.arguments or {}).get("order_id")
        if params.name == "refund":
            return CallToolResult(
                content=[TextContent(type="text", text=f"{order} cannot be refunded")],
                is_error=True,
            )
        if params.name == "crash":
            raise RuntimeError("crashed")
        return CallToolResult(content=[TextContent(type="text", text=f"order {order}")])

    return Server(
        "low",
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        get_tool_input_schema=lambda name: SCHEMA if name in LOW_TOOLS else None,
    )


async def outcomes(server: Server[Any], mode: str) -> list[Any]:
    got: list[Any] = []
    async with client(server, mode) as c:
        for name in (*LOW_TOOLS, "unknown"):
            try:
                got.append((await c.call_tool(name, {"order_id": "A1"})).model_dump())
            except MCPError as exc:
                got.append(("MCPError", exc.error.code, exc.error.message))
    return got


@pytest.mark.parametrize("mode", MODES)
async def test_a_low_level_server_is_metered_and_answers_as_before(
    meter: fc.Meter, wallet: fc.OfflineWallet, mode: str
) -> None:
    ran: list[str] = []
    plain = await outcomes(low_level_server(ran), mode)
    server = meter_server(low_level_server(ran), meter=meter)
    metered = await outcomes(server, mode)

    assert metered == plain
    assert await listing(server) == await listing(low_level_server(ran))
    assert [(r.action, r.outcome, r.error_type, r.tags) for r in records(wallet)] == [
        ("lookup", "ok", None, {CLIENT_TAG: "support-agent"}),
        ("refund", "error", "ToolError", {CLIENT_TAG: "support-agent"}),
        ("crash", "error", "RuntimeError", {CLIENT_TAG: "support-agent"}),
    ]


async def test_a_low_level_server_refuses_before_its_handler_runs() -> None:
    ran: list[str] = []
    wallet = fc.OfflineWallet(rate_card=CARD, overdraft="deny")
    try:
        meter = fc.Meter(rate_card=CARD, wallet=wallet, spans="never")
        server = meter_server(low_level_server(ran), meter=meter)
        async with client(server) as c:
            refused = await c.call_tool("lookup", {"order_id": "A1"}, meta={"x": "y"})
        assert refused.is_error
        assert text(refused) == (
            "Error executing tool lookup: credits ran out: action 'lookup' needs 20 credits "
            "but the balance is 0 and the wallet's overdraft policy is 'deny'"
        )
        assert ran == []
        assert list(wallet.records()) == []
    finally:
        wallet.shutdown()


# --- bad input --------------------------------------------------------------------------------


def test_bad_input_gets_a_clear_error(meter: fc.Meter) -> None:
    with pytest.raises(fc.ConfigurationError, match="server"):
        meter_server(object(), meter=meter)  # type: ignore[type-var]
    with pytest.raises(fc.ConfigurationError, match="actions"):
        meter_server(MCPServer("a"), meter=meter, actions=["lookup"])  # type: ignore[arg-type]
    with pytest.raises(fc.ConfigurationError, match=r"actions\['lookup'\]"):
        meter_server(MCPServer("a"), meter=meter, actions={"lookup": 3})  # type: ignore[dict-item]
    with pytest.raises(fc.UnknownActionType, match="gold"):
        meter_server(MCPServer("a"), meter=meter, actions={"lookup": "gold"})
    with pytest.raises(fc.ConfigurationError, match="meter"):
        meter_server(MCPServer("a"), meter="global")  # type: ignore[arg-type]
    with pytest.raises(fc.ConfigurationError, match="tools item"):
        metered_tools([lookup_order], meter=meter)  # type: ignore[list-item]
    with pytest.raises(fc.ConfigurationError, match="tools"):
        metered_tools(Tool.from_function(lookup_order), meter=meter)  # type: ignore[arg-type]
    with pytest.raises(fc.ConfigurationError, match="no tools/call handler"):
        meter_server(Server("low"), meter=meter)

    twice = meter_server(MCPServer("a"), meter=meter)
    with pytest.raises(fc.ConfigurationError, match="metered already"):
        meter_server(twice, meter=meter)
    low = meter_server(low_level_server([]), meter=meter)
    with pytest.raises(fc.ConfigurationError, match="metered already"):
        meter_server(low, meter=meter)


async def test_the_global_meter_is_the_default(wallet: fc.OfflineWallet) -> None:
    fc.configure(rate_card=CARD, wallet=wallet, spans="never")
    server = meter_server(server_with(lookup_order))
    async with client(server) as c:
        await c.call_tool("lookup_order", {"order_id": "A1"})
    assert [(r.action, r.credits) for r in records(wallet)] == [("lookup_order", 20)]


# --- real processes: stdio, and OpenTelemetry with a global tracer provider -------------------

STDIO_SERVER = textwrap.dedent(
    """
    import sys

    from mcp.server.mcpserver import MCPServer

    import flexcredits_sdk as fc
    from flexcredits_sdk.integrations.mcp import meter_server

    wallet = fc.OfflineWallet(path=sys.argv[1], durability="each")
    server = meter_server(MCPServer("shop"), meter=fc.Meter(wallet=wallet, spans="never"))


    @server.tool()
    def lookup_order(order_id: str) -> str:
        "Find an order by its id."
        return f"order {order_id}: shipped"


    @server.tool()
    async def refund(order_id: str) -> str:
        "Refund an order."
        raise ValueError(order_id)


    server.run("stdio")
    """
)


@pytest.mark.parametrize("mode", MODES)
async def test_a_server_over_stdio_in_its_own_process(tmp_path: Path, mode: str) -> None:
    script = tmp_path / "server.py"
    script.write_text(STDIO_SERVER, encoding="utf-8")
    path = tmp_path / "wallet.db"
    params = StdioServerParameters(command=sys.executable, args=[str(script), str(path)])
    with anyio.fail_after(60):
        async with client(params, mode, name="cli") as c:  # type: ignore[arg-type]
            ok = await c.call_tool("lookup_order", {"order_id": "A1"})
            failed = await c.call_tool("refund", {"order_id": "A2"})
            tools = (await c.list_tools()).tools

    assert text(ok) == "order A1: shipped"
    assert (failed.is_error, text(failed)) == (True, "Error executing tool refund")
    assert [(t.name, t.description) for t in tools] == [
        ("lookup_order", "Find an order by its id."),
        ("refund", "Refund an order."),
    ]
    wallet = fc.OfflineWallet(path=path)
    try:
        assert [
            (r.action, r.outcome, r.error_type, r.credits, r.tags)
            for r in sorted(wallet.records(), key=lambda r: r.start_time_ns)
        ] == [
            ("lookup_order", "ok", None, 20, {CLIENT_TAG: "cli"}),
            ("refund", "error", "ValueError", 20, {CLIENT_TAG: "cli"}),
        ]
    finally:
        wallet.shutdown()


@pytest.fixture
def http_server(meter: fc.Meter) -> Iterator[str]:
    """A metered MCPServer over streamable HTTP on loopback (uvicorn); yields its URL."""
    server = meter_server(server_with(lookup_order), meter=meter)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    running = uvicorn.Server(uvicorn.Config(server.streamable_http_app(), log_level="warning"))
    thread = threading.Thread(target=running.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not running.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/mcp"
    finally:
        running.should_exit = True
        thread.join(10)
        sock.close()


async def test_over_streamable_http_the_session_id_is_the_conversation(
    http_server: str, wallet: fc.OfflineWallet
) -> None:
    for name in ("first", "second"):
        async with client(http_server, "legacy", name) as c:  # type: ignore[arg-type]
            for order in ("A1", "A2"):
                await c.call_tool("lookup_order", {"order_id": order})
    # The 2026 protocol has no session: a client sends its conversation in the request.
    async with client(http_server, "auto", "modern") as c:  # type: ignore[arg-type]
        await c.call_tool("lookup_order", {"order_id": "A3"})
        await c.call_tool("lookup_order", {"order_id": "A4"}, meta={CONVERSATION_META_KEY: "t-9"})

    got = [(r.conversation_id, r.tags[CLIENT_TAG]) for r in records(wallet)]
    sessions = [cid for cid, _ in got[:4]]
    assert all(isinstance(cid, str) and len(cid) >= 16 for cid in sessions)
    assert sessions[0] == sessions[1] != sessions[2] == sessions[3]
    assert [name for _, name in got] == [
        "first",
        "first",
        "second",
        "second",
        "modern",
        "modern",
    ]
    assert [cid for cid, _ in got[4:]] == [None, "t-9"]


OTEL_SCENARIO = textwrap.dedent(
    """
    import json

    import anyio
    from mcp import Client
    from mcp.server.mcpserver import MCPServer
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    import flexcredits_sdk as fc
    from flexcredits_sdk.integrations.mcp import meter_server

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)

    wallet = fc.OfflineWallet()
    server = meter_server(MCPServer("shop"), meter=fc.Meter(wallet=wallet))


    @server.tool()
    def lookup_order(order_id: str) -> str:
        "Find an order by its id."
        return "shipped"


    @server.tool()
    async def refund(order_id: str) -> str:
        "Refund an order."
        raise ValueError(order_id)


    async def main():
        async with Client(server, mode="legacy") as client:
            await client.call_tool("lookup_order", {"order_id": "A1"})
            await client.call_tool("refund", {"order_id": "A2"})


    anyio.run(main)
    spans = [
        {
            "name": s.name,
            "kind": s.kind.name,
            "span_id": format(s.context.span_id, "016x"),
            "attributes": {k: v for k, v in s.attributes.items()},
        }
        for s in exporter.get_finished_spans()
    ]
    records = [[r.action, r.outcome, r.span_id] for r in wallet.records()]
    print(json.dumps({"spans": spans, "records": records}))
    """
)


def test_the_sdks_tools_call_span_carries_the_credits() -> None:
    result = subprocess.run(
        [sys.executable, "-c", OTEL_SCENARIO], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    server_spans = {s["name"]: s for s in out["spans"] if s["kind"] == "SERVER"}

    ok = server_spans["tools/call lookup_order"]["attributes"]
    assert ok["gen_ai.tool.name"] == "lookup_order"
    assert ok["flexcredits.credits"] == 20
    assert ok["flexcredits.action"] == "lookup_order"
    failed = server_spans["tools/call refund"]["attributes"]
    assert failed["error.type"] == "tool_error"
    assert failed["flexcredits.credits"] == 20  # the rate card bills failed actions
    assert failed["flexcredits.outcome"] == "error"
    # The actions annotate the SDK's spans rather than open their own.
    assert not [s for s in out["spans"] if s["name"] in ("lookup_order", "refund")]
    assert out["records"] == [
        ["lookup_order", "ok", server_spans["tools/call lookup_order"]["span_id"]],
        ["refund", "error", server_spans["tools/call refund"]["span_id"]],
    ]


def test_without_mcp_the_import_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mcp.server.context", None)
    monkeypatch.delitem(sys.modules, "flexcredits_sdk.integrations.mcp")
    with pytest.raises(ImportError, match=r"pip install 'flexcredits-sdk\[mcp\]'"):
        importlib.import_module("flexcredits_sdk.integrations.mcp")
