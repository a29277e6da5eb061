"""OpenTelemetry bridge: the credit cost of each action on its span, and usage metrics.

Needs only ``opentelemetry-api``. Once an OpenTelemetry SDK is configured (a global tracer or
meter provider, or providers passed to `instrument`), every metered action:

- annotates the current span, or opens its own child span, as the meter's ``spans=`` setting
  says (``"auto"``, ``"always"``, ``"never"``), with ``flexcredits.*`` attributes;
- writes that span's ``trace_id`` and ``span_id`` into its `UsageRecord`;
- counts ``flexcredits.credits``, ``flexcredits.actions`` and ``flexcredits.action.duration``.

Until then the bridge is idle and costs nothing per call. Metering never depends on it: the
credit record is the same with an SDK, with a sampled-out span, or with no SDK at all.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import TracerProvider

from .._exceptions import ConfigurationError
from .._telemetry import SpanMode
from . import _bridge
from ._metrics import DELIVERY, DURATION_BUCKETS
from ._spans import (
    ACTION,
    ACTION_TYPE,
    CONVERSATION_ID,
    COST,
    CREDITS,
    CURRENCY,
    ENVIRONMENT,
    ERROR_TYPE,
    GEN_AI_COST_AMOUNT,
    GEN_AI_COST_CURRENCY,
    INPUT_TOKENS,
    MODEL_COST,
    MODELS,
    OUTCOME,
    OUTPUT_TOKENS,
    RECORD_ID,
    TAG_PREFIX,
    UNITS,
)

if TYPE_CHECKING:
    from .._meter import Meter

__all__ = [
    "ACTION",
    "ACTION_TYPE",
    "CONVERSATION_ID",
    "COST",
    "CREDITS",
    "CURRENCY",
    "DELIVERY",
    "DURATION_BUCKETS",
    "ENVIRONMENT",
    "ERROR_TYPE",
    "GEN_AI_COST_AMOUNT",
    "GEN_AI_COST_CURRENCY",
    "INPUT_TOKENS",
    "MODELS",
    "MODEL_COST",
    "OUTCOME",
    "OUTPUT_TOKENS",
    "RECORD_ID",
    "TAG_PREFIX",
    "UNITS",
    "SpanMode",
    "instrument",
    "uninstrument",
]


def instrument(
    meter: Meter | None = None,
    *,
    tracer_provider: TracerProvider | None = None,
    meter_provider: MeterProvider | None = None,
    genai_cost: bool = False,
) -> None:
    """Report a meter's actions to these OpenTelemetry providers.

    Not needed with global providers (``trace.set_tracer_provider``): every meter follows
    those by itself, even when they are set after the meter was made. Call it to use other
    providers, or to turn on the GenAI cost attributes. The meter's ``spans=`` and
    ``metric_tags=`` settings apply either way.

    Args:
        meter: The meter; the global default meter when omitted.
        tracer_provider: The tracer provider; the global one when omitted.
        meter_provider: The meter provider; the global one when omitted.
        genai_cost: Also set ``gen_ai.usage.cost.amount`` and ``gen_ai.usage.cost.currency``,
            from a draft of the GenAI semantic conventions that may still change.

    Raises:
        ConfigurationError: A provider lacks ``get_tracer``/``get_meter``, or `genai_cost`
            is not a bool.
    """
    if tracer_provider is not None and not callable(getattr(tracer_provider, "get_tracer", None)):
        raise ConfigurationError("tracer_provider", tracer_provider, "must be a TracerProvider")
    if meter_provider is not None and not callable(getattr(meter_provider, "get_meter", None)):
        raise ConfigurationError("meter_provider", meter_provider, "must be a MeterProvider")
    if not isinstance(genai_cost, bool):
        raise ConfigurationError("genai_cost", genai_cost, "must be True or False")
    _bridge.instrument(
        _meter_or_default(meter),
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        genai_cost=genai_cost,
    )


def uninstrument(meter: Meter | None = None) -> None:
    """Stop reporting a meter's actions to OpenTelemetry, until `instrument` is called again.

    Args:
        meter: The meter; the global default meter when omitted.
    """
    _bridge.uninstrument(_meter_or_default(meter))


def _meter_or_default(meter: Any) -> Meter:
    from .._default import get_meter
    from .._meter import Meter

    if meter is None:
        return get_meter()
    if not isinstance(meter, Meter):
        raise ConfigurationError("meter", meter, "must be a flexcredits_sdk.Meter")
    return meter
