"""The llama-index-core adapter: `FunctionTool`s under `metered_action`, `metered_tools`, and
the instrumentation handlers, driven by llama-index's mock LLMs and a real `FunctionAgent`
workflow (no network)."""

from __future__ import annotations

import importlib
import logging
import sys
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from decimal import Decimal
from typing import Any

import pytest
from llama_index.core.agent.workflow import FunctionAgent, ReActAgent, ToolCallResult
from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    ChatResponseAsyncGen,
    CompletionResponse,
    MessageRole,
    ToolCallBlock,
)
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.events.llm import (
    LLMChatEndEvent,
    LLMChatStartEvent,
    LLMCompletionEndEvent,
)
from llama_index.core.llms import MockFunctionCallingLLM, MockLLM
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from llama_index.core.tools import AsyncBaseTool, FunctionTool, ToolMetadata, ToolOutput
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import Field

import flexcredits_sdk as fc
from flexcredits_sdk import otel
from flexcredits_sdk.integrations import ToolAction
from flexcredits_sdk.integrations.llama_index import (
    FlexCreditsEventHandler,
    FlexCreditsSpanHandler,
    instrument,
    metered_tools,
    uninstrument,
)

#: llama-index-workflows finds an agent's steps with ``inspect.getmembers``, which reads the
#: deprecated attributes of pydantic models (pydantic's warnings about llama-index, not us).
pytestmark = [
    pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecatedSince20"),
    pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecatedSince211"),
]

CARD = fc.RateCard(
    action_types={"standard": {"production": 20}, "premium": {"production": 50}},
    models={"gpt-test": {"input": "3", "output": "15"}},
)
#: 30 input and 12 output tokens of gpt-test: (30 * 3 + 12 * 15) / 1e6 USD.
COST = Decimal("0.00027")


@pytest.fixture(autouse=True)
def _no_handlers_left() -> Iterator[None]:
    """Every test starts and ends with llama-index's root dispatcher free of our handlers."""
    uninstrument()
    yield
    uninstrument()


@pytest.fixture
def wallet() -> Iterator[fc.OfflineWallet]:
    wallet = fc.OfflineWallet(rate_card=CARD)
    yield wallet
    wallet.shutdown()


@pytest.fixture
def meter(wallet: fc.OfflineWallet) -> fc.Meter:
    return fc.Meter(rate_card=CARD, wallet=wallet, spans="never")


def records(wallet: fc.OfflineWallet) -> list[fc.UsageRecord]:
    return sorted(wallet.records(), key=lambda r: (r.start_time_ns, r.action))


def described(t: FunctionTool) -> dict[str, Any]:
    """What an agent reads of a tool: its type, name, description and argument schema."""
    schema = t.metadata.fn_schema
    return {
        "type": type(t),
        "name": t.metadata.name,
        "description": t.metadata.description,
        "schema": schema.model_json_schema() if schema is not None else None,
        "parameters": t.metadata.get_parameters_dict(),
        "openai": t.metadata.to_openai_tool(),
    }


# --- the tools and the scripted model ---------------------------------------------------------

CALLS: list[str] = []  # what the tools' bodies saw: their action and the thread


def lookup_order(order_id: str, verbose: bool = False) -> str:
    """Find an order by its id."""
    action = fc.current_action()
    CALLS.append(f"lookup_order:{action.name if action else None}")
    return f"order {order_id}: shipped"


async def track_parcel(parcel_id: str) -> str:
    """Say where a parcel is."""
    action = fc.current_action()
    CALLS.append(f"track_parcel:{action.name if action else None}")
    return f"parcel {parcel_id}: in Oslo"


def refund(order_id: str) -> str:
    """Refund an order."""
    raise ValueError(f"order {order_id} cannot be refunded")


@pytest.fixture(autouse=True)
def _fresh_calls() -> None:
    CALLS.clear()


def usage() -> dict[str, int]:
    """The usage an OpenAI-like model reports for one call (a new dict every call)."""
    return {"prompt_tokens": 30, "completion_tokens": 12, "total_tokens": 42}


class ScriptedLLM(MockFunctionCallingLLM):
    """A function-calling LLM that answers from a script and reports token usage in ``raw``.

    Turn n (counted by the assistant messages so far) answers with ``turns[n]``: a list of
    tool calls ``(name, arguments)``, or a text. After the script it answers ``"done"``.
    """

    turns: list[Any] = Field(default_factory=list)
    model: str = "gpt-test"

    def _answer(self, messages: Sequence[ChatMessage]) -> ChatResponse:
        turn = sum(1 for m in messages if m.role == MessageRole.ASSISTANT)
        step = self.turns[turn] if turn < len(self.turns) else "done"
        if isinstance(step, str):
            message = ChatMessage(role=MessageRole.ASSISTANT, content=step)
        else:
            message = ChatMessage(
                role=MessageRole.ASSISTANT,
                blocks=[
                    ToolCallBlock(tool_call_id=f"call-{turn}-{i}", tool_name=name, tool_kwargs=args)
                    for i, (name, args) in enumerate(step)
                ],
            )
        return ChatResponse(
            message=message,
            delta=message.content or "",
            raw={"model": self.model, "usage": usage()},
        )

    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        return self._answer(messages)

    @llm_chat_callback()
    async def astream_chat(
        self, messages: Sequence[ChatMessage], **kwargs: Any
    ) -> ChatResponseAsyncGen:
        response = self._answer(messages)

        async def stream() -> AsyncIterator[ChatResponse]:
            yield response

        return stream()


def agent_llm() -> ScriptedLLM:
    """Calls lookup_order and track_parcel in parallel, then refund, then answers."""
    return ScriptedLLM(
        turns=[
            [("lookup_order", {"order_id": "A1"}), ("track_parcel", {"parcel_id": "P9"})],
            [("refund", {"order_id": "A1"})],
            "all done",
        ]
    )


def originals() -> list[FunctionTool]:
    return [FunctionTool.from_defaults(f) for f in (lookup_order, track_parcel, refund)]


async def run_agent(
    tools: Sequence[Any], llm: Any = None, *, streaming: bool = True
) -> tuple[str, str, list[ToolCallResult]]:
    """Run a FunctionAgent: its answer, its run id, and the tool results it saw, in order."""
    agent = FunctionAgent(tools=list(tools), llm=llm or agent_llm(), streaming=streaming)
    handler = agent.run("Where is order A1? Refund it.")
    results = [ev async for ev in handler.stream_events() if isinstance(ev, ToolCallResult)]
    answer = await handler
    assert handler.run_id is not None
    return str(answer), handler.run_id, sorted(results, key=lambda r: r.tool_id)


def seen(results: list[ToolCallResult]) -> list[tuple[str, str, bool, str]]:
    """What the agent saw of each tool call: name, content, error, exception type."""
    return [
        (
            r.tool_name,
            r.tool_output.content,
            r.tool_output.is_error,
            type(r.tool_output.exception).__name__,
        )
        for r in results
    ]


# --- metered_action on FunctionTool ------------------------------------------------------------


@pytest.mark.parametrize("func", [lookup_order, track_parcel], ids=["sync", "async"])
async def test_metered_action_above_and_below_from_defaults_keeps_the_tool(
    meter: fc.Meter, wallet: fc.OfflineWallet, func: Any
) -> None:
    plain = FunctionTool.from_defaults(func)
    above = meter.metered_action(FunctionTool.from_defaults(func))
    below = FunctionTool.from_defaults(meter.metered_action(func))

    assert isinstance(above, FunctionTool)
    assert described(above) == described(plain) == described(below)
    assert above.metadata.fn_schema.model_json_schema()["required"] == [  # type: ignore[union-attr]
        "order_id" if func is lookup_order else "parcel_id"
    ]
    arg = {"order_id": "A1"} if func is lookup_order else {"parcel_id": "P9"}
    for t in (above, below):
        assert (await t.acall(**arg)).content == (await plain.acall(**arg)).content
        assert t.call(**arg).content == plain.call(**arg).content
        assert t(**arg).content == plain(**arg).content

    name = func.__name__
    assert [(r.action, r.credits, r.outcome) for r in records(wallet)] == [(name, 20, "ok")] * 6
    assert CALLS.count(f"{name}:{name}") == 6  # the action is current in the tool's body


def test_metered_action_over_a_tool_keeps_its_context_partials_and_callback(
    meter: fc.Meter, wallet: fc.OfflineWallet
) -> None:
    def quote(sku: str, currency: str) -> str:
        """Quote a price."""
        return f"{sku}: 9 {currency}"

    plain = FunctionTool.from_defaults(
        quote, partial_params={"currency": "EUR"}, callback=lambda out: f"<{out}>"
    )
    metered = meter.metered_action(name="pricing", action_type="premium")(plain)
    assert described(metered) == described(plain)
    assert metered.partial_params == {"currency": "EUR"}
    assert metered.requires_context is plain.requires_context is False
    assert metered(sku="S1").content == plain(sku="S1").content == "<S1: 9 EUR>"
    assert metered.real_fn("S2", "NOK") == "S2: 9 NOK"
    assert [(r.action, r.action_type, r.credits) for r in records(wallet)] == [
        ("pricing", "premium", 50)
    ] * 2


def test_metered_action_refuses_a_tool_object_it_does_not_know(meter: fc.Meter) -> None:
    class Echo(AsyncBaseTool):
        @property
        def metadata(self) -> ToolMetadata:
            return ToolMetadata(name="echo", description="Echo.")

        def call(self, input: Any) -> ToolOutput:
            return ToolOutput(content=str(input), tool_name="echo", raw_input={}, raw_output=input)

        async def acall(self, input: Any) -> ToolOutput:
            return self.call(input)

    with pytest.raises(fc.ConfigurationError, match="Echo object, not a function"):
        meter.metered_action(Echo())


# --- metered_tools ------------------------------------------------------------------------------


async def test_metered_tools_in_an_agent_meter_each_call_once_with_the_run_and_tags(
    meter: fc.Meter, wallet: fc.OfflineWallet
) -> None:
    plain_answer, _, plain_results = await run_agent(originals())
    CALLS.clear()
    tools = metered_tools(originals(), meter=meter, tags={"agent": "orders"})
    assert [described(t) for t in tools] == [described(t) for t in originals()]

    with fc.tags(tenant="acme"):
        answer, run_id, results = await run_agent(tools)

    # The agent behaves as without metering, the refund's error included.
    assert (answer, seen(results)) == (plain_answer, seen(plain_results))
    assert seen(results)[2] == ("refund", "order A1 cannot be refunded", True, "ValueError")
    assert [
        (r.action, r.credits, r.outcome, r.error_type, r.conversation_id, r.tags)
        for r in sorted(records(wallet), key=lambda r: r.action)
    ] == [
        (name, 20, outcome, error, run_id, {"agent": "orders", "tenant": "acme"})
        for name, outcome, error in [
            ("lookup_order", "ok", None),
            ("refund", "error", "ValueError"),
            ("track_parcel", "ok", None),
        ]
    ]
    # The sync tool ran in a worker thread, the async one in a task: each inside its action.
    assert sorted(CALLS) == ["lookup_order:lookup_order", "track_parcel:track_parcel"]


def test_metered_tools_with_predict_and_call_sync(
    meter: fc.Meter, wallet: fc.OfflineWallet
) -> None:
    tools = metered_tools(
        originals(), meter=meter, actions={"lookup_order": ToolAction("premium", units=2)}
    )
    llm = ScriptedLLM(turns=[[("lookup_order", {"order_id": "A1"})]])
    with fc.conversation("case-7"), fc.tags(tenant="acme"):
        assert str(llm.predict_and_call(tools, "Where is A1?")) == "order A1: shipped"
    (record,) = records(wallet)
    assert (record.action, record.action_type, record.units, record.credits) == (
        "lookup_order",
        "premium",
        2,
        100,
    )
    assert (record.conversation_id, record.tags) == ("case-7", {"tenant": "acme"})


async def test_metered_tools_with_apredict_and_call_and_an_error(
    meter: fc.Meter, wallet: fc.OfflineWallet
) -> None:
    tools = metered_tools(originals(), meter=meter)
    llm = ScriptedLLM(turns=[[("refund", {"order_id": "A1"})]])
    plain = await ScriptedLLM(turns=llm.turns).apredict_and_call(originals(), "Refund A1")
    answer = await llm.apredict_and_call(tools, "Refund A1")
    assert str(answer) == str(plain) == "Encountered error: order A1 cannot be refunded"
    (record,) = records(wallet)
    assert (record.action, record.outcome, record.error_type, record.conversation_id) == (
        "refund",
        "error",
        "ValueError",
        None,
    )


def test_metered_tools_keep_the_tags_in_threads(meter: fc.Meter, wallet: fc.OfflineWallet) -> None:
    (lookup,) = metered_tools([FunctionTool.from_defaults(lookup_order)], meter=meter)

    def worker(n: int) -> None:
        with fc.tags(worker=str(n)):
            lookup.call(order_id=f"A{n}")

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.tags["worker"] for r in records(wallet)) == ["0", "1", "2", "3"]


def test_metered_tools_refuses_bad_input(meter: fc.Meter) -> None:
    with pytest.raises(fc.ConfigurationError) as caught:
        metered_tools(FunctionTool.from_defaults(lookup_order), meter=meter)  # type: ignore[arg-type]
    assert caught.value.field == "tools"
    with pytest.raises(fc.ConfigurationError, match="not a llama-index FunctionTool") as caught:
        metered_tools([FunctionTool.from_defaults(lookup_order), lookup_order], meter=meter)  # type: ignore[list-item]
    assert (caught.value.field, caught.value.value) == ("tools[1]", lookup_order)
    tools = metered_tools(originals(), meter=meter)
    with pytest.raises(fc.ConfigurationError, match="metered already") as caught:
        metered_tools(tools[1:], meter=meter)
    assert caught.value.field == "tools[0]"
    with pytest.raises(fc.ConfigurationError) as caught:
        metered_tools(originals(), meter=meter, actions={"refund": 3})  # type: ignore[dict-item]
    assert (caught.value.field, caught.value.value) == ("actions['refund']", 3)
    with pytest.raises(fc.UnknownActionType, match="gold"):
        metered_tools(originals(), meter=meter, actions={"refund": "gold"})
    with pytest.raises(fc.ConfigurationError) as caught:
        metered_tools(originals(), meter="meter")  # type: ignore[arg-type]
    assert (caught.value.field, caught.value.value) == ("meter", "meter")


def test_metered_tools_refuses_a_function_tool_whose_init_did_not_run(meter: fc.Meter) -> None:
    bare = FunctionTool.__new__(FunctionTool)
    bare._metadata = ToolMetadata(name="bare", description="No function.")
    with pytest.raises(fc.ConfigurationError, match="without _fn, _async_fn, _real_fn") as caught:
        metered_tools([bare], meter=meter)
    assert (caught.value.field, caught.value.value) == ("tool", bare)


def test_metered_tools_use_the_global_meter_by_default() -> None:
    (lookup,) = metered_tools([FunctionTool.from_defaults(lookup_order)])
    lookup.call(order_id="A1")
    assert [r.action for r in fc.get_meter().wallet.records()] == ["lookup_order"]  # type: ignore[attr-defined]


def test_a_refused_action_stops_a_metered_tool() -> None:
    refusing = fc.OfflineWallet(rate_card=CARD, overdraft="deny")
    meter = fc.Meter(rate_card=CARD, wallet=refusing, spans="never")
    (lookup,) = metered_tools([FunctionTool.from_defaults(lookup_order)], meter=meter)
    with pytest.raises(fc.InsufficientCredits):
        lookup.call(order_id="A1")
    llm = ScriptedLLM(turns=[[("lookup_order", {"order_id": "A1"})]])
    answer = llm.predict_and_call([lookup], "Where is A1?")
    assert "Encountered error" in str(answer)
    assert CALLS == []
    assert list(refusing.records()) == []
    refusing.shutdown()


class ReActLLM(MockLLM):
    """A text-completion LLM that answers a ReAct agent: one tool call, then the answer."""

    turns: int = 0

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        self.turns += 1
        if self.turns == 1:
            text = (
                'Thought: I need the order.\nAction: lookup_order\nAction Input: {"order_id": "A1"}'
            )
        else:
            text = "Thought: I can answer without using any more tools.\nAnswer: shipped"
        return CompletionResponse(text=text)

    @llm_completion_callback()
    def stream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> Iterator[CompletionResponse]:
        text = self.complete(prompt).text

        def stream() -> Iterator[CompletionResponse]:
            yield CompletionResponse(text=text, delta=text)

        return stream()


#: ReActAgent asks its workflow ``is_running`` from a step, which llama-index-workflows deprecates.
@pytest.mark.filterwarnings("ignore:is_running called from within a step:DeprecationWarning")
@pytest.mark.parametrize("by", ["metered_tools", "instrument"])
async def test_a_react_agent_meters_its_tool_call_once(
    meter: fc.Meter, wallet: fc.OfflineWallet, by: str
) -> None:
    tools = [FunctionTool.from_defaults(lookup_order)]
    if by == "metered_tools":
        tools = metered_tools(tools, meter=meter)
    else:
        instrument(meter=meter)
    handler = ReActAgent(tools=tools, llm=ReActLLM()).run("Where is order A1?")
    assert str(await handler) == "shipped"
    (record,) = records(wallet)
    assert (record.action, record.credits, record.conversation_id) == (
        "lookup_order",
        20,
        handler.run_id,
    )
    assert CALLS == ["lookup_order:lookup_order"]


# --- the span handler (instrument) ------------------------------------------------------------


async def test_instrument_meters_each_tool_call_of_an_agent_once(
    meter: fc.Meter, wallet: fc.OfflineWallet
) -> None:
    plain_answer, _, plain_results = await run_agent(originals())
    CALLS.clear()
    handler = instrument(meter=meter, tags={"agent": "orders"})
    assert handler in get_dispatcher().span_handlers

    with fc.tags(tenant="acme"):
        answer, run_id, results = await run_agent(originals())

    assert (answer, seen(results)) == (plain_answer, seen(plain_results))
    assert [
        (r.action, r.credits, r.outcome, r.error_type, r.conversation_id, r.tags)
        for r in sorted(records(wallet), key=lambda r: r.action)
    ] == [
        (name, 20, outcome, error, run_id, {"agent": "orders", "tenant": "acme"})
        for name, outcome, error in [
            ("lookup_order", "ok", None),
            ("refund", "error", "ValueError"),
            ("track_parcel", "ok", None),
        ]
    ]
    assert sorted(CALLS) == ["lookup_order:lookup_order", "track_parcel:track_parcel"]


def test_instrument_meters_predict_and_call_once_despite_nested_spans(
    meter: fc.Meter, wallet: fc.OfflineWallet
) -> None:
    instrument(meter=meter, actions={"lookup_order": "premium"})
    llm = ScriptedLLM(turns=[[("lookup_order", {"order_id": "A1"})]])
    with fc.conversation("case-7"):
        llm.predict_and_call(originals(), "Where is A1?")  # tool.__call__ -> tool.call
    (record,) = records(wallet)
    assert (record.action, record.credits, record.conversation_id) == ("lookup_order", 50, "case-7")


async def test_instrument_meters_any_tool_and_its_async_adapter(
    meter: fc.Meter, wallet: fc.OfflineWallet
) -> None:
    class Echo(AsyncBaseTool):
        """A tool that is not a FunctionTool."""

        @property
        def metadata(self) -> ToolMetadata:
            return ToolMetadata(name="echo", description="Echo the input.")

        def call(self, input: Any) -> ToolOutput:
            return ToolOutput(content=str(input), tool_name="echo", raw_input={}, raw_output=input)

        async def acall(self, input: Any) -> ToolOutput:
            return self.call(input)

    instrument(meter=meter)
    echo = Echo()
    assert echo("hi").content == "hi"
    assert (await echo.acall("hi")).content == "hi"
    from llama_index.core.tools.types import BaseToolAsyncAdapter

    assert (await BaseToolAsyncAdapter(echo).acall("hi")).content == "hi"  # in a thread
    assert [r.action for r in records(wallet)] == ["echo"] * 3


async def test_instrument_and_metered_tools_together_meter_a_call_once(
    meter: fc.Meter, wallet: fc.OfflineWallet
) -> None:
    instrument(meter=meter)
    tools = metered_tools(originals(), meter=meter)
    await run_agent(tools)
    ScriptedLLM(turns=[[("lookup_order", {"order_id": "A2"})]]).predict_and_call(tools, "A2?")
    assert sorted(r.action for r in records(wallet)) == [
        "lookup_order",
        "lookup_order",
        "refund",
        "track_parcel",
    ]


def test_instrument_again_replaces_the_handlers_and_uninstrument_removes_them(
    meter: fc.Meter, wallet: fc.OfflineWallet
) -> None:
    dispatcher = get_dispatcher()
    first = instrument(meter=meter)
    second = instrument(meter=meter)
    ours = [h for h in dispatcher.span_handlers if isinstance(h, FlexCreditsSpanHandler)]
    assert ours == [second]
    assert first is not second
    assert sum(isinstance(h, FlexCreditsEventHandler) for h in dispatcher.event_handlers) == 1
    FunctionTool.from_defaults(lookup_order).call(order_id="A1")
    uninstrument()
    FunctionTool.from_defaults(lookup_order).call(order_id="A1")
    assert [r.action for r in records(wallet)] == ["lookup_order"]
    assert not any(isinstance(h, FlexCreditsSpanHandler) for h in dispatcher.span_handlers)
    assert not any(isinstance(h, FlexCreditsEventHandler) for h in dispatcher.event_handlers)


def test_instrument_refuses_bad_input_and_uses_the_global_meter(meter: fc.Meter) -> None:
    with pytest.raises(fc.ConfigurationError) as caught:
        instrument(meter=meter, actions="lookup_order")  # type: ignore[arg-type]
    assert (caught.value.field, caught.value.value) == ("actions", "lookup_order")
    with pytest.raises(fc.UnknownActionType, match="gold"):
        FlexCreditsSpanHandler(meter=meter, actions={"lookup_order": "gold"})
    with pytest.raises(fc.ConfigurationError) as caught:
        instrument(meter=meter, tags={"team": 3})  # type: ignore[dict-item]
    assert caught.value.field.startswith("tags")
    assert not any(isinstance(h, FlexCreditsSpanHandler) for h in get_dispatcher().span_handlers)

    instrument()
    FunctionTool.from_defaults(lookup_order).call(order_id="A1")
    assert [r.action for r in fc.get_meter().wallet.records()] == ["lookup_order"]  # type: ignore[attr-defined]


def test_a_refusal_cannot_stop_a_tool_through_the_handler(
    caplog: pytest.LogCaptureFixture,
) -> None:
    refusing = fc.OfflineWallet(rate_card=CARD, overdraft="deny")
    instrument(meter=fc.Meter(rate_card=CARD, wallet=refusing, spans="never"))
    with caplog.at_level(logging.WARNING, logger="flexcredits_sdk"):
        assert FunctionTool.from_defaults(lookup_order).call(order_id="A1").content == (
            "order A1: shipped"
        )
    assert "runs anyway" in caplog.text
    assert "metered_tools" in caplog.text
    assert CALLS == ["lookup_order:None"]
    assert list(refusing.records()) == []
    refusing.shutdown()


def test_a_tool_the_handler_cannot_name_runs_unmetered(
    meter: fc.Meter, wallet: fc.OfflineWallet
) -> None:
    instrument(meter=meter)
    long_name = FunctionTool.from_defaults(lookup_order, name="x" * 300)
    assert long_name.call(order_id="A1").content == "order A1: shipped"
    assert list(wallet.records()) == []
    assert meter.stats().metering_errors == 1


# --- model usage --------------------------------------------------------------------------------


@pytest.mark.parametrize("streaming", [True, False], ids=["astream_chat", "achat"])
async def test_model_usage_goes_to_the_action_around_the_agent_run(
    meter: fc.Meter, wallet: fc.OfflineWallet, streaming: bool
) -> None:
    instrument(meter=meter)
    tools = [FunctionTool.from_defaults(lookup_order)]
    llm = ScriptedLLM(turns=[[("lookup_order", {"order_id": "A1"})], "shipped"])
    with meter.action("answer"):
        await run_agent(tools, llm, streaming=streaming)

    answer, lookup = sorted(records(wallet), key=lambda r: r.action)
    # Two model calls (the tool call, then the answer), each 30 + 12 tokens, each once, though
    # the mock's achat reports the chat it calls as a second call of its own.
    assert answer.model_usage == (fc.ModelUsage("gpt-test", 60, 24, 2 * COST),)
    assert (answer.action, answer.credits) == ("answer", 20)
    assert (lookup.action, lookup.model_usage) == ("lookup_order", ())


def test_model_usage_inside_a_tool_goes_to_the_tool_action(
    meter: fc.Meter, wallet: fc.OfflineWallet
) -> None:
    inner = ScriptedLLM(turns=["a summary"])

    def summarize(text: str) -> str:
        """Summarize a text with a model."""
        return str(inner.chat([ChatMessage(role=MessageRole.USER, content=text)]).message.content)

    instrument(meter=meter)
    outer = ScriptedLLM(turns=[[("summarize", {"text": "long"})]])
    for tools in (
        [FunctionTool.from_defaults(summarize)],
        metered_tools([FunctionTool.from_defaults(summarize)], meter=meter),
    ):
        with meter.action("answer"):
            outer.predict_and_call(tools, "Summarize")

    by_name = sorted(records(wallet), key=lambda r: r.action)
    assert [(r.action, r.model_usage) for r in by_name] == [
        ("answer", (fc.ModelUsage("gpt-test", 30, 12, COST),)),
        ("answer", (fc.ModelUsage("gpt-test", 30, 12, COST),)),
        ("summarize", (fc.ModelUsage("gpt-test", 30, 12, COST),)),
        ("summarize", (fc.ModelUsage("gpt-test", 30, 12, COST),)),
    ]


class UsageMockLLM(MockLLM):
    """llama-index's `MockLLM` (a `CustomLLM`) with usage in its completions' ``raw``."""

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return CompletionResponse(text=prompt, raw={"model": "gpt-test", "usage": usage()})


async def test_model_usage_of_a_custom_llm_that_reports_one_call_three_times(
    meter: fc.Meter, wallet: fc.OfflineWallet
) -> None:
    instrument(meter=meter)
    llm = UsageMockLLM()
    with meter.action("answer"):
        # achat -> chat -> complete: three end events of one model call
        await llm.achat([ChatMessage(role=MessageRole.USER, content="hi")])
        llm.complete("again")
    (record,) = records(wallet)
    assert record.model_usage == (fc.ModelUsage("gpt-test", 60, 24, 2 * COST),)


def test_model_usage_outside_any_action_is_dropped(
    meter: fc.Meter, wallet: fc.OfflineWallet
) -> None:
    instrument(meter=meter)
    ScriptedLLM(turns=["hi"]).chat([ChatMessage(role=MessageRole.USER, content="hi")])
    assert list(wallet.records()) == []


class Usage:
    """A usage object with attributes, as provider SDKs return."""

    def __init__(self, input_tokens: int, output_tokens: int) -> None:
        self.input_tokens = input_tokens
        self.output_tokens = output_tokens


@pytest.mark.parametrize(
    ("raw", "additional", "model_dict", "expected"),
    [
        ({"model": "gpt-test", "usage": Usage(5, 7)}, {}, {}, ("gpt-test", 5, 7)),
        (
            {"usage_metadata": {"prompt_token_count": 4, "candidates_token_count": 2}},
            {},
            {"model": "gemini-x"},
            ("gemini-x", 4, 2),
        ),
        (
            None,
            {"prompt_tokens": 3, "completion_tokens": 1},
            {"model_name": "unknown", "class_name": "MyLLM"},
            ("MyLLM", 3, 1),
        ),
        ({"usage": {"input_tokens": True, "output_tokens": -1}}, {}, {}, None),
        ({"content": "no usage"}, {}, {"model": "m"}, None),
    ],
    ids=["object", "usage_metadata", "additional_kwargs", "bad counts", "none"],
)
def test_the_event_handler_reads_usage_and_model_where_providers_put_them(
    meter: fc.Meter,
    raw: Any,
    additional: dict[str, Any],
    model_dict: dict[str, Any],
    expected: tuple[str, int, int] | None,
) -> None:
    handler = FlexCreditsEventHandler()
    response = ChatResponse(
        message=ChatMessage(role=MessageRole.ASSISTANT, content="x"),
        raw=raw,
        additional_kwargs=additional,
    )
    with meter.action("answer") as act:
        handler.handle(
            LLMChatStartEvent(
                model_dict=model_dict, messages=[], additional_kwargs={}, span_id="s1"
            )
        )
        handler.handle(LLMChatEndEvent(messages=[], response=response, span_id="s1"))
        handler.handle(LLMChatEndEvent(messages=[], response=response, span_id="s2"))  # again
        completion = CompletionResponse(text="x", raw={"usage": {"input_tokens": 1}})
        handler.handle(LLMCompletionEndEvent(prompt="p", response=completion, span_id="s3"))
        handler.handle(LLMChatEndEvent(messages=[], response=None, span_id="s4"))
    found = {m: (i, o) for m, (i, o) in act.model_usage.items()}
    assert found.pop("unknown") == (1, 0)  # the completion, with no model named anywhere
    assert found == ({} if expected is None else {expected[0]: expected[1:]})


# --- OpenTelemetry ------------------------------------------------------------------------------


@pytest.mark.parametrize("by", ["instrument", "metered_tools"])
async def test_the_action_span_of_a_tool_call_carries_the_credits(
    wallet: fc.OfflineWallet, by: str
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    meter = fc.Meter(rate_card=CARD, wallet=wallet)
    otel.instrument(meter, tracer_provider=provider)
    tools = originals()[:1]
    if by == "metered_tools":
        tools = metered_tools(tools, meter=meter)
    else:
        instrument(meter=meter)
    _, run_id, _ = await run_agent(
        tools, ScriptedLLM(turns=[[("lookup_order", {"order_id": "A1"})]])
    )

    # llama-index opens no OpenTelemetry span of its own: the only span is the action's.
    (span,) = exporter.get_finished_spans()
    (record,) = wallet.records()
    assert span.name == "lookup_order"
    attributes = dict(span.attributes or {})
    assert attributes["flexcredits.credits"] == 20
    assert attributes["flexcredits.action"] == "lookup_order"
    assert attributes["flexcredits.outcome"] == "ok"
    assert attributes["flexcredits.conversation_id"] == run_id
    assert attributes["flexcredits.record_id"] == record.id
    provider.shutdown()


# --- without llama-index ------------------------------------------------------------------------


def test_importing_the_adapter_without_llama_index_names_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in [m for m in sys.modules if m == "llama_index" or m.startswith("llama_index.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "llama_index", None)
    monkeypatch.delitem(sys.modules, "flexcredits_sdk.integrations.llama_index")
    with pytest.raises(ImportError, match=r"pip install 'flexcredits-sdk\[llama-index\]'"):
        importlib.import_module("flexcredits_sdk.integrations.llama_index")
