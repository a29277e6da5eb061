"""Credit cost on OpenTelemetry spans and metrics, printed to the console.

    pip install flexcredits-sdk opentelemetry-sdk
    python examples/otel_console.py

The OpenTelemetry SDK is set up as an application would (global providers, console exporters).
A small support agent runs one conversation; each metered action's span carries its credit
cost under ``flexcredits.*``, each usage record carries the span's ``trace_id`` and
``span_id``, and the metrics reader prints ``flexcredits.credits`` and its siblings.
"""

from __future__ import annotations

import contextlib

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import ConsoleMetricExporter, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

import flexcredits_sdk as fc

resource = Resource.create({"service.name": "support-agent"})
tracer_provider = TracerProvider(resource=resource)
tracer_provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
trace.set_tracer_provider(tracer_provider)
reader = PeriodicExportingMetricReader(ConsoleMetricExporter(), export_interval_millis=60_000)
meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
metrics.set_meter_provider(meter_provider)

# Only the "department" tag becomes a metric attribute; spans carry every tag.
fc.configure(metric_tags=["department"])
tracer = trace.get_tracer("support-agent")


@fc.metered_action(name="identify_customer")
def identify_customer(email: str) -> str:
    return email.split("@")[0]


@fc.metered_action(name="search_knowledge", units=2)
def search_knowledge(question: str) -> list[str]:
    with tracer.start_as_current_span("vector search"):  # a child of the action's span
        return ["refund policy", "shipping times"]


@fc.metered_action(name="issue_refund")
def issue_refund(customer: str) -> None:
    raise PermissionError(f"{customer} needs a supervisor")


def main() -> None:
    with (
        fc.conversation("case-1042"),
        fc.tags(department="billing", customer="c-88"),
        tracer.start_as_current_span("handle case"),  # annotated by the first action
    ):
        customer = identify_customer("ada@example.com")
        search_knowledge("can I get a refund?")
        with contextlib.suppress(PermissionError):  # its own span records it
            issue_refund(customer)
    meter_provider.shutdown()  # prints the metrics once
    tracer_provider.shutdown()
    print("records:")
    for record in fc.get_meter().wallet.records():  # type: ignore[attr-defined]
        print(
            f"  {record.action:<18} {record.credits:>3} credits  {record.outcome:<5}  "
            f"trace_id={record.trace_id} span_id={record.span_id}"
        )


if __name__ == "__main__":
    main()
