"""The OpenTelemetry bridge: spans per action, records' span ids, settings and bad input."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Generator, Iterator
from decimal import Decimal

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import StatusCode, Tracer, format_span_id, format_trace_id

import flexcredits_sdk as fc
from flexcredits_sdk import otel
from flexcredits_sdk.otel._bridge import bridge_of


class Traces:
    """A tracer provider that keeps finished spans in memory."""

    def __init__(self, **provider_options: object) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider(**provider_options)  # type: ignore[arg-type]
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer: Tracer = self.provider.get_tracer("app")

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def named(self, name: str) -> ReadableSpan:
        (span,) = [s for s in self.spans() if s.name == name]
        return span


@pytest.fixture
def traces() -> Traces:
    return Traces()


@pytest.fixture
def meter(traces: Traces) -> fc.Meter:
    meter = fc.Meter(tags={"team": "support"})
    otel.instrument(meter, tracer_provider=traces.provider)
    return meter


def ids_of(span: ReadableSpan) -> tuple[str, str]:
    assert span.context is not None
    return format_trace_id(span.context.trace_id), format_span_id(span.context.span_id)


def parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def only_record(meter: fc.Meter) -> fc.UsageRecord:
    (record,) = list(meter.wallet.records())  # type: ignore[attr-defined]
    return record  # type: ignore[no-any-return]


# --- own spans and annotated spans ------------------------------------------------------------


def test_an_action_outside_any_span_opens_one_with_the_cost(
    meter: fc.Meter, traces: Traces
) -> None:
    @meter.metered_action(name="answer_question", tags={"department": "billing"})
    def answer() -> str:
        with fc.conversation("case-7"):
            return "ok"

    with fc.conversation("case-1"):
        assert answer() == "ok"

    span = traces.named("answer_question")
    record = only_record(meter)
    assert dict(span.attributes or {}) == {
        "flexcredits.action": "answer_question",
        "flexcredits.action_type": "standard",
        "flexcredits.units": 1,
        "flexcredits.credits": 20,
        "flexcredits.cost": 0.1,
        "flexcredits.currency": "USD",
        "flexcredits.environment": "production",
        "flexcredits.conversation_id": "case-1",
        "flexcredits.record_id": record.id,
        "flexcredits.outcome": "ok",
        "flexcredits.tag.team": "support",
        "flexcredits.tag.department": "billing",
    }
    assert span.status.status_code is StatusCode.UNSET
    assert (record.trace_id, record.span_id) == ids_of(span)
    assert re.fullmatch("[0-9a-f]{32}", record.trace_id or "")
    assert re.fullmatch("[0-9a-f]{16}", record.span_id or "")


def test_an_action_annotates_the_current_span_instead_of_opening_one(
    meter: fc.Meter, traces: Traces
) -> None:
    @meter.metered_action(name="lookup")
    def lookup() -> None:
        return None

    with traces.tracer.start_as_current_span("tool call"):
        lookup()

    (span,) = traces.spans()
    assert span.name == "tool call"
    assert (span.attributes or {})["flexcredits.action"] == "lookup"
    assert (only_record(meter).trace_id, only_record(meter).span_id) == ids_of(span)


def test_a_second_action_in_the_same_span_gets_a_child_span(
    meter: fc.Meter, traces: Traces
) -> None:
    @meter.metered_action(name="first")
    def first() -> None:
        return None

    @meter.metered_action(name="second", units=3)
    def second() -> None:
        return None

    with traces.tracer.start_as_current_span("turn"):
        first()
        second()

    turn, child = traces.named("turn"), traces.named("second")
    assert (turn.attributes or {})["flexcredits.action"] == "first"
    assert (child.attributes or {})["flexcredits.units"] == 3
    assert (child.attributes or {})["flexcredits.credits"] == 60
    assert parent_id(child) == turn.context.span_id


def test_nested_actions_nest_their_spans_and_the_body_spans(
    meter: fc.Meter, traces: Traces
) -> None:
    @meter.metered_action(name="inner")
    def inner() -> None:
        with traces.tracer.start_as_current_span("llm call"):
            pass

    @meter.metered_action(name="outer")
    def outer() -> None:
        inner()

    outer()

    outer_span, inner_span, llm = (
        traces.named("outer"),
        traces.named("inner"),
        traces.named("llm call"),
    )
    assert outer_span.parent is None
    assert parent_id(inner_span) == outer_span.context.span_id
    assert parent_id(llm) == inner_span.context.span_id
    assert (outer_span.attributes or {})["flexcredits.action"] == "outer"
    assert (inner_span.attributes or {})["flexcredits.action"] == "inner"
    by_action = {r.action: r for r in meter.wallet.records()}  # type: ignore[attr-defined]
    assert by_action["inner"].span_id == ids_of(inner_span)[1]
    assert by_action["outer"].span_id == ids_of(outer_span)[1]
    assert by_action["inner"].trace_id == by_action["outer"].trace_id


def test_spans_always_opens_a_child_even_inside_a_span(meter: fc.Meter, traces: Traces) -> None:
    meter.configure(spans="always")

    @meter.metered_action(name="act")
    def act() -> None:
        return None

    with traces.tracer.start_as_current_span("parent"):
        act()

    parent, child = traces.named("parent"), traces.named("act")
    assert "flexcredits.action" not in (parent.attributes or {})
    assert parent_id(child) == parent.context.span_id


def test_spans_never_touches_no_span_but_records_carry_the_current_ids(
    meter: fc.Meter, traces: Traces
) -> None:
    meter.configure(spans="never")

    @meter.metered_action(name="act")
    def act() -> None:
        return None

    act()
    assert only_record(meter).trace_id is None
    with traces.tracer.start_as_current_span("parent"):
        act()

    (parent,) = traces.spans()
    assert "flexcredits.action" not in (parent.attributes or {})
    assert list(meter.wallet.records())[-1].span_id == ids_of(parent)[1]  # type: ignore[attr-defined]


def test_the_context_manager_opens_a_span_around_the_block(meter: fc.Meter, traces: Traces) -> None:
    with meter.action("block") as act:
        act.units = 2
        with traces.tracer.start_as_current_span("inside"):
            pass

    block, inside = traces.named("block"), traces.named("inside")
    assert parent_id(inside) == block.context.span_id
    assert (block.attributes or {})["flexcredits.units"] == 2


# --- async and generators ---------------------------------------------------------------------


async def test_async_actions_are_current_in_their_body(meter: fc.Meter, traces: Traces) -> None:
    @meter.metered_action(name="fetch")
    async def fetch() -> int:
        await asyncio.sleep(0)
        with traces.tracer.start_as_current_span("http"):
            return 1

    async with meter.action("turn"):
        results = await asyncio.gather(fetch(), fetch())

    assert list(results) == [1, 1]
    turn = traces.named("turn")
    fetches = [s for s in traces.spans() if s.name == "fetch"]
    https = [s for s in traces.spans() if s.name == "http"]
    assert len(fetches) == 2
    assert len(https) == 2
    assert {parent_id(s) for s in fetches} == {turn.context.span_id}
    assert {parent_id(s) for s in https} == {s.context.span_id for s in fetches}


def test_a_generator_span_covers_the_generation_but_is_not_current_for_the_consumer(
    meter: fc.Meter, traces: Traces
) -> None:
    meter.configure(spans="always")

    @meter.metered_action(name="stream")
    def stream() -> Iterator[int]:
        yield 1
        yield 2

    with traces.tracer.start_as_current_span("consumer"):
        for _ in stream():
            with traces.tracer.start_as_current_span("per item"):
                pass

    consumer, gen = traces.named("consumer"), traces.named("stream")
    items = [s for s in traces.spans() if s.name == "per item"]
    assert len(items) == 2
    assert {parent_id(s) for s in items} == {consumer.context.span_id}
    assert parent_id(gen) == consumer.context.span_id
    assert gen.end_time is not None
    assert items[-1].end_time is not None
    assert gen.end_time >= items[-1].end_time
    assert only_record(meter).span_id == ids_of(gen)[1]


def test_a_generator_in_a_span_annotates_it(meter: fc.Meter, traces: Traces) -> None:
    @meter.metered_action(name="stream")
    def stream() -> Iterator[int]:
        yield 1

    with traces.tracer.start_as_current_span("consumer"):
        assert list(stream()) == [1]

    (consumer,) = traces.spans()
    assert (consumer.attributes or {})["flexcredits.action"] == "stream"
    assert only_record(meter).span_id == ids_of(consumer)[1]


def test_a_generator_outside_spans_gets_a_span_ended_on_close(
    meter: fc.Meter, traces: Traces
) -> None:
    @meter.metered_action(name="stream")
    def stream() -> Generator[int, None, None]:
        yield from range(10)

    gen = stream()
    assert next(gen) == 0
    assert traces.spans() == []
    gen.close()

    span = traces.named("stream")
    assert (span.attributes or {})["flexcredits.outcome"] == "ok"
    assert only_record(meter).span_id == ids_of(span)[1]


async def test_an_async_generator_gets_a_span(meter: fc.Meter, traces: Traces) -> None:
    @meter.metered_action(name="astream")
    async def astream() -> AsyncIterator[int]:
        yield 1
        raise ValueError("upstream broke")

    with pytest.raises(ValueError, match="upstream broke"):
        async for _ in astream():
            pass

    span = traces.named("astream")
    assert span.status.status_code is StatusCode.ERROR
    assert [e.name for e in span.events] == ["exception"]
    assert only_record(meter).outcome == "error"


# --- errors -----------------------------------------------------------------------------------


class Boom(Exception):
    pass


def test_a_failed_action_sets_the_status_and_records_the_exception_once(
    meter: fc.Meter, traces: Traces
) -> None:
    @meter.metered_action(name="charge")
    def charge() -> None:
        raise Boom("card declined")

    with pytest.raises(Boom):
        charge()

    span = traces.named("charge")
    attributes = span.attributes or {}
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "Boom: card declined"
    assert [e.name for e in span.events] == ["exception"]
    assert attributes["error.type"] == "Boom"
    assert attributes["flexcredits.outcome"] == "error"
    assert attributes["flexcredits.error_type"] == "Boom"
    assert attributes["flexcredits.credits"] == 20  # failed actions are billed by default


def test_an_annotated_span_records_the_exception_once_through_its_owner(
    meter: fc.Meter, traces: Traces
) -> None:
    @meter.metered_action(name="charge")
    def charge() -> None:
        raise Boom("card declined")

    with pytest.raises(Boom), traces.tracer.start_as_current_span("tool call"):
        charge()

    (span,) = traces.spans()
    assert [e.name for e in span.events] == ["exception"]
    assert span.status.status_code is StatusCode.ERROR
    assert (span.attributes or {})["flexcredits.outcome"] == "error"


def test_a_handled_failure_leaves_the_status_of_an_annotated_span_to_its_owner(
    meter: fc.Meter, traces: Traces
) -> None:
    @meter.metered_action(name="charge")
    def charge() -> None:
        raise Boom("card declined")

    with traces.tracer.start_as_current_span("tool call"), pytest.raises(Boom):
        charge()

    (span,) = traces.spans()
    assert span.events == ()
    assert span.status.status_code is StatusCode.UNSET
    assert (span.attributes or {})["flexcredits.error_type"] == "Boom"


# --- metering never depends on the span -------------------------------------------------------


def _run_agent(meter: fc.Meter) -> list[tuple[object, ...]]:
    @meter.metered_action(name="plan", units=2)
    def plan() -> None:
        return None

    @meter.metered_action(name="fail")
    def fail() -> None:
        raise Boom

    plan()
    with pytest.raises(Boom):
        fail()
    records = list(meter.wallet.records())  # type: ignore[attr-defined]
    return [(r.action, r.units, r.credits, r.outcome, r.error_type) for r in records]


def test_records_are_the_same_with_an_sdk_sampled_out_spans_or_no_sdk() -> None:
    plain = fc.Meter()
    with_sdk = fc.Meter()
    otel.instrument(with_sdk, tracer_provider=Traces().provider)
    sampled_out_traces = Traces(sampler=ALWAYS_OFF)
    sampled_out = fc.Meter()
    otel.instrument(sampled_out, tracer_provider=sampled_out_traces.provider)

    expected = [("plan", 2, 40, "ok", None), ("fail", 1, 20, "error", "Boom")]
    assert _run_agent(plain) == expected
    assert _run_agent(with_sdk) == expected
    assert _run_agent(sampled_out) == expected
    assert sampled_out_traces.spans() == []
    # A sampled-out span still has ids, which propagate: the records keep them.
    assert all(r.trace_id for r in sampled_out.wallet.records())  # type: ignore[attr-defined]
    assert all(r.trace_id is None for r in plain.wallet.records())  # type: ignore[attr-defined]
    assert all(r.trace_id for r in with_sdk.wallet.records())  # type: ignore[attr-defined]


def test_without_an_sdk_the_bridge_stays_out_of_the_call_path() -> None:
    meter = fc.Meter(spans="always")
    assert meter.observers == ()
    bridge = bridge_of(meter)
    assert bridge is not None
    assert not bridge.installed


def test_uninstrument_stops_and_instrument_resumes(meter: fc.Meter, traces: Traces) -> None:
    @meter.metered_action(name="act")
    def act() -> None:
        return None

    otel.uninstrument(meter)
    meter.configure(environment="sandbox")  # a configure does not bring the bridge back
    act()
    assert traces.spans() == []
    assert meter.observers == ()
    otel.instrument(meter, tracer_provider=traces.provider, genai_cost=True)
    act()
    attributes = traces.named("act").attributes or {}
    assert attributes["flexcredits.credits"] == 16
    assert attributes["gen_ai.usage.cost.amount"] == 0.08
    assert attributes["gen_ai.usage.cost.currency"] == "USD"


def test_fractional_credits_become_floats_only_on_the_span(traces: Traces) -> None:
    card = fc.RateCard(
        name="fractional",
        pack_credits=1000,
        pack_price=Decimal(10),
        action_types={"standard": {"production": Decimal("2.5")}},
    )
    meter = fc.Meter(rate_card=card)
    otel.instrument(meter, tracer_provider=traces.provider)
    meter.metered_action(name="half")(lambda: None)()
    assert only_record(meter).credits == Decimal("2.5")
    attributes = traces.named("half").attributes or {}
    assert attributes["flexcredits.credits"] == 2.5
    assert attributes["flexcredits.cost"] == 0.025


# --- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"spans": "sometimes"}, "spans"),
        ({"spans": True}, "spans"),
        ({"metric_tags": "department"}, "metric_tags"),
        ({"metric_tags": 3}, "metric_tags"),
        ({"metric_tags": ["ok", 1]}, "metric_tags key"),
        ({"metric_tags": [""]}, "metric_tags key"),
        ({"metric_tags": ["k" * 65]}, "metric_tags key"),
        ({"metric_tags": [f"k{i}" for i in range(33)]}, "metric_tags"),
    ],
)
def test_bad_otel_settings_are_refused(settings: dict[str, object], field: str) -> None:
    with pytest.raises(fc.ConfigurationError) as info:
        fc.Meter(**settings)  # type: ignore[arg-type]
    assert info.value.field == field
    meter = fc.Meter()
    with pytest.raises(fc.ConfigurationError):
        meter.configure(**settings)  # type: ignore[arg-type]
    assert (meter.spans, meter.metric_tags) == ("auto", ())


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"tracer_provider": object()}, "tracer_provider"),
        ({"meter_provider": "provider"}, "meter_provider"),
        ({"genai_cost": "yes"}, "genai_cost"),
        ({"meter": "default"}, "meter"),
    ],
)
def test_bad_instrument_arguments_are_refused(arguments: dict[str, object], field: str) -> None:
    with pytest.raises(fc.ConfigurationError) as info:
        otel.instrument(**arguments)  # type: ignore[arg-type]
    assert info.value.field == field
    assert isinstance(info.value, ValueError)


def test_metric_tags_are_deduplicated_in_order() -> None:
    meter = fc.Meter(metric_tags=["department", "agent", "department"])
    assert meter.metric_tags == ("department", "agent")
    fc.configure(metric_tags={"region"})
    assert fc.get_meter().metric_tags == ("region",)


def test_all_is_the_public_surface_sorted() -> None:
    exported = otel.__all__
    assert exported == sorted(exported, key=lambda n: (not n.isupper(), n[0].islower(), n))
    public = {
        name
        for name, value in vars(otel).items()
        if not name.startswith("_")
        and name != "TYPE_CHECKING"
        and (name.isupper() or getattr(value, "__module__", "").startswith(otel.__name__))
    }
    assert set(exported) == public | {"SpanMode"}
    names = [getattr(otel, n) for n in exported if isinstance(getattr(otel, n), str)]
    assert len(names) == 18
    assert all(name.startswith(("flexcredits.", "gen_ai.usage.cost.")) for name in names)


def test_the_default_meter_can_be_instrumented_and_put_back(traces: Traces) -> None:
    @fc.metered_action(name="decorated_early")
    def decorated_early() -> None:
        return None

    otel.instrument(tracer_provider=traces.provider)
    try:
        decorated_early()
        assert traces.named("decorated_early").attributes
    finally:
        otel.instrument()  # back to following the global providers (none here)
    assert fc.get_meter().observers == ()
    decorated_early()
    assert len(traces.spans()) == 1


def test_the_model_calls_of_an_action_are_on_its_span(traces: Traces) -> None:
    card = fc.RateCard(
        action_types={"standard": {"production": 20}},
        models={"big": {"input": "3", "output": "15"}},
    )
    meter = fc.Meter(rate_card=card, wallet=fc.OfflineWallet(rate_card=card))
    otel.instrument(meter, tracer_provider=traces.provider)
    with meter.action("answer") as act:
        act.add_model_usage("big", input_tokens=2_000, output_tokens=400)
        act.add_model_usage("unpriced", input_tokens=5, output_tokens=1)
    with meter.action("lookup"):
        pass
    attributes = traces.named("answer").attributes or {}
    assert attributes[otel.MODELS] == ("big", "unpriced")
    assert attributes[otel.INPUT_TOKENS] == 2_005
    assert attributes[otel.OUTPUT_TOKENS] == 401
    assert attributes[otel.MODEL_COST] == 0.012  # the priced model only
    assert otel.INPUT_TOKENS not in (traces.named("lookup").attributes or {})
