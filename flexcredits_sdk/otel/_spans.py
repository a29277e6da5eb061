"""The tracing side of the bridge: each action annotates a span or opens its own.

Every attribute lives under the ``flexcredits.`` namespace. On a span it opened, the bridge sets
the status and records the exception of a failed action; on a span it only annotates, it leaves
both to the span's owner, which sees the exception when it propagates (so the exception is
recorded once per span).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import (
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    Tracer,
    format_span_id,
    format_trace_id,
)
from opentelemetry.util.types import AttributeValue

from .._telemetry import SpanMode

if TYPE_CHECKING:
    from .._action import Action
    from .._meter import Meter

__all__ = [
    "ACTION",
    "ACTION_TYPE",
    "CONVERSATION_ID",
    "COST",
    "CREDITS",
    "CURRENCY",
    "ENVIRONMENT",
    "ERROR_TYPE",
    "GEN_AI_COST_AMOUNT",
    "GEN_AI_COST_CURRENCY",
    "INPUT_TOKENS",
    "MODELS",
    "MODEL_COST",
    "OUTPUT_TOKENS",
    "OUTCOME",
    "RECORD_ID",
    "TAG_PREFIX",
    "UNITS",
    "SpanTracker",
    "to_number",
]

ACTION = "flexcredits.action"
ACTION_TYPE = "flexcredits.action_type"
UNITS = "flexcredits.units"
CREDITS = "flexcredits.credits"
COST = "flexcredits.cost"
CURRENCY = "flexcredits.currency"
ENVIRONMENT = "flexcredits.environment"
CONVERSATION_ID = "flexcredits.conversation_id"
RECORD_ID = "flexcredits.record_id"
OUTCOME = "flexcredits.outcome"
ERROR_TYPE = "flexcredits.error_type"
TAG_PREFIX = "flexcredits.tag."
MODELS = "flexcredits.models"
INPUT_TOKENS = "flexcredits.input_tokens"
OUTPUT_TOKENS = "flexcredits.output_tokens"
MODEL_COST = "flexcredits.model_cost"
#: Draft GenAI semantic-convention cost attributes, mirrored only when asked for.
GEN_AI_COST_AMOUNT = "gen_ai.usage.cost.amount"
GEN_AI_COST_CURRENCY = "gen_ai.usage.cost.currency"


def to_number(value: int | Decimal) -> int | float:
    """Return credits or money as a telemetry number: an int when whole, else a float.

    Telemetry backends add and compare numbers, not decimal strings; the record keeps the
    exact value.
    """
    if isinstance(value, int):
        return value
    if value == value.to_integral_value():
        return int(value)
    return float(value)


def _carry_ids(act: Action, context: SpanContext) -> None:
    if context.is_valid:
        act.trace_id = format_trace_id(context.trace_id)
        act.span_id = format_span_id(context.span_id)


def _failed(exc: BaseException | None) -> bool:
    return exc is not None and not isinstance(exc, GeneratorExit)


class SpanTracker:
    """Opens, annotates and ends the spans of one meter's actions.

    Args:
        tracer: The tracer to open spans with; ``None`` when no tracer provider is configured
            (the tracker then only copies the current span's ids into records).
        mode: The meter's `SpanMode`.
        genai_cost: Also set the draft GenAI cost attributes.
    """

    __slots__ = ("_meter", "_open", "genai_cost", "mode", "tracer")

    def __init__(
        self, meter: Meter, tracer: Tracer | None, mode: SpanMode, genai_cost: bool
    ) -> None:
        self._meter = weakref.ref(meter)
        self.tracer = tracer
        self.mode: SpanMode = mode
        self.genai_cost = genai_cost
        self._open: dict[Action, tuple[Span, bool, object]] = {}

    def start(self, act: Action) -> None:
        """Pick the action's span, make a span it opens current, and copy the span's ids."""
        current = trace.get_current_span()
        tracer = self.tracer
        if tracer is None or self.mode == "never":
            _carry_ids(act, current.get_span_context())
            return
        if self.mode == "auto" and current.is_recording() and _claim(current):
            self._open[act] = (current, False, None)
            _carry_ids(act, current.get_span_context())
            return
        span = tracer.start_span(act.name, kind=SpanKind.INTERNAL)
        _claim(span)
        token = None
        if act._token is not None:  # the action runs in this context (not a generator)
            token = otel_context.attach(trace.set_span_in_context(span))
        self._open[act] = (span, True, token)
        _carry_ids(act, span.get_span_context())

    def end(self, act: Action, exc: BaseException | None, credits: int | Decimal) -> None:
        """Set the action's attributes on its span; end the span if the tracker opened it."""
        entry = self._open.pop(act, None)
        if entry is None:
            return
        span, owned, token = entry
        try:
            if span.is_recording():
                span.set_attributes(self.attributes(act, credits, exc))
                if owned and exc is not None and _failed(exc):
                    span.set_attribute("error.type", type(exc).__qualname__)
                    span.set_status(Status(StatusCode.ERROR, f"{type(exc).__qualname__}: {exc}"))
                    span.record_exception(exc)
        finally:
            if token is not None:
                otel_context.detach(token)  # type: ignore[arg-type]
            if owned:
                span.end()

    def attributes(
        self, act: Action, credits: int | Decimal, exc: BaseException | None
    ) -> dict[str, AttributeValue]:
        """Return the ``flexcredits.*`` attributes of a finished action."""
        meter = self._meter()
        assert meter is not None, "the meter calls its observers"
        cost = to_number(meter.rate_card.usd(credits))
        attributes: dict[str, AttributeValue] = {
            ACTION: act.name,
            ACTION_TYPE: act.action_type,
            UNITS: act.units,
            CREDITS: to_number(credits),
            COST: float(cost),
            CURRENCY: meter.rate_card.currency,
            ENVIRONMENT: meter.environment,
            RECORD_ID: act.id,
            OUTCOME: "error" if _failed(exc) else "ok",
        }
        if act.conversation_id is not None:
            attributes[CONVERSATION_ID] = act.conversation_id
        if _failed(exc):
            attributes[ERROR_TYPE] = type(exc).__qualname__
        _add_tags(attributes, act.tags)
        if act._models:
            _add_models(attributes, act._models, meter)
        if self.genai_cost:
            attributes[GEN_AI_COST_AMOUNT] = float(cost)
            attributes[GEN_AI_COST_CURRENCY] = meter.rate_card.currency
        return attributes


def _add_models(
    attributes: dict[str, AttributeValue], models: dict[str, list[int]], meter: Meter
) -> None:
    """The tokens of the action's model calls, summed, and what the priced ones cost."""
    attributes[MODELS] = list(models)
    attributes[INPUT_TOKENS] = sum(i for i, _ in models.values())
    attributes[OUTPUT_TOKENS] = sum(o for _, o in models.values())
    costs = [meter.rate_card.model_cost(m, i, o) for m, (i, o) in models.items()]
    priced = [c for c in costs if c is not None]
    if priced:
        attributes[MODEL_COST] = float(sum(priced))


# Spans that already carry an action's attributes (of any meter): a later action opens a child.
_CLAIMED: weakref.WeakSet[Span] = weakref.WeakSet()
_CLAIMED_LOCK = threading.Lock()


def _claim(span: Span) -> bool:
    """Mark `span` as carrying an action; return whether it was free."""
    with _CLAIMED_LOCK:
        try:
            if span in _CLAIMED:
                return False
            _CLAIMED.add(span)
        except TypeError:  # a span type without weak references: never share it
            return False
        return True


def _add_tags(attributes: dict[str, AttributeValue], tags: Mapping[str, Any]) -> None:
    for key, value in tags.items():
        attributes[TAG_PREFIX + key] = value
