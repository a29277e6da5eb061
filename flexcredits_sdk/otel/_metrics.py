"""The metrics side of the bridge: counters and a histogram per record, delivery gauges.

Instruments are made once per OpenTelemetry meter provider and shared by every flexcredits
meter that reports to it; the delivery figures are observed from each meter's `stats()`.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation
from opentelemetry.util.types import AttributeValue

from .._records import UsageRecord
from ._spans import ACTION, ACTION_TYPE, ENVIRONMENT, OUTCOME, TAG_PREFIX, to_number

if TYPE_CHECKING:
    from .._meter import Meter

__all__ = ["DELIVERY", "DURATION_BUCKETS", "Instruments", "instruments_for", "record_metrics"]

#: Histogram bucket boundaries for action durations, in seconds (agent actions run from
#: milliseconds to minutes).
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)

#: Delivery figures: instrument name, `MeterStats` field, and whether it only grows.
DELIVERY = (
    ("flexcredits.export.queued", "queued", False),
    ("flexcredits.export.outbox", "in_outbox", False),
    ("flexcredits.export.sent", "sent", True),
    ("flexcredits.export.rejected", "rejected", True),
    ("flexcredits.export.dropped", "dropped", True),
)


class Instruments:
    """The instruments of one OpenTelemetry meter provider.

    Args:
        provider: The meter provider to make them with.
        version: The version of the instrumentation scope.
    """

    def __init__(self, provider: MeterProvider, version: str | None) -> None:
        meter = provider.get_meter("flexcredits_sdk", version)
        self.credits = meter.create_counter(
            "flexcredits.credits", unit="{credit}", description="Credits charged for actions."
        )
        self.actions = meter.create_counter(
            "flexcredits.actions",
            unit="{action}",
            description="Billable actions (an action of N units counts N).",
        )
        self.duration = meter.create_histogram(
            "flexcredits.action.duration",
            unit="s",
            description="How long metered actions ran.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        #: The flexcredits meters whose delivery figures are observed.
        self.meters: weakref.WeakSet[Meter] = weakref.WeakSet()
        for name, field, monotonic in DELIVERY:
            make = (
                meter.create_observable_counter
                if monotonic
                else (meter.create_observable_up_down_counter)
            )
            make(
                name,
                callbacks=[self._observer(field)],
                unit="{record}",
                description=f"Usage records {field.replace('_', ' ')} (from Meter.stats()).",
            )

    def _observer(self, field: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            totals: dict[str, int] = {}
            for meter in list(self.meters):
                value = getattr(meter.stats(), field)
                totals[meter.environment] = totals.get(meter.environment, 0) + value
            return [Observation(value, {ENVIRONMENT: env}) for env, value in totals.items()]

        return observe


_REGISTRY: weakref.WeakKeyDictionary[MeterProvider, Instruments] = weakref.WeakKeyDictionary()
_REGISTRY_LOCK = threading.Lock()


def instruments_for(provider: MeterProvider, version: str | None) -> Instruments:
    """Return the instruments of `provider`, making them on first use."""
    with _REGISTRY_LOCK:
        instruments = _REGISTRY.get(provider)
        if instruments is None:
            instruments = _REGISTRY[provider] = Instruments(provider, version)
        return instruments


def record_metrics(
    instruments: Instruments, record: UsageRecord, metric_tags: tuple[str, ...]
) -> None:
    """Count one record: credits, billable actions and duration.

    Credits become an int, or a float when fractional, at this boundary (see `to_number`).
    """
    attributes: dict[str, AttributeValue] = {
        ACTION: record.action,
        ACTION_TYPE: record.action_type,
        ENVIRONMENT: record.environment,
        OUTCOME: record.outcome,
    }
    if metric_tags:
        tags = record.tags
        for key in metric_tags:
            value = tags.get(key)
            if value is not None:
                attributes[TAG_PREFIX + key] = value
    instruments.credits.add(to_number(record.credits), attributes)
    instruments.actions.add(record.units, attributes)
    instruments.duration.record(record.duration_ns / 1e9, attributes)
