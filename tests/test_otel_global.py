"""The bridge follows OpenTelemetry's global providers, even ones set after the meter was made.

A process can set its global providers once, so each scenario runs in a fresh interpreter.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

SCENARIO = textwrap.dedent(
    """
    import json

    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    import flexcredits_sdk as fc
    from flexcredits_sdk import _records
    from flexcredits_sdk.testing import FakeClock

    clock = FakeClock()
    fc.configure(clock=clock)
    meter = fc.get_meter()


    @fc.metered_action(name="act")
    def act():
        return None


    def last_trace_id():
        return list(meter.wallet.records())[-1].trace_id


    out = {}
    act()
    out["idle"] = [len(meter.observers), last_trace_id(), len(_records.ID_STATE.ticks)]

    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(tracer_provider)
    act()  # the same millisecond: not checked again yet
    out["same_ms"] = last_trace_id()
    clock.advance(ns=1_000_000)
    act()  # the first action of a new millisecond notices the provider
    out["new_ms"] = [last_trace_id() is not None, len(exporter.get_finished_spans())]

    reader = InMemoryMetricReader()
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    clock.advance(ns=1_000_000)
    act()
    data = reader.get_metrics_data().resource_metrics[0].scope_metrics[0].metrics
    credits = next(m for m in data if m.name == "flexcredits.credits")
    out["metrics"] = [p.value for p in credits.data.data_points]
    out["done_watching"] = len(_records.ID_STATE.ticks)

    later = fc.Meter(clock=clock)
    later.metered_action(name="later")(lambda: None)()
    out["later"] = list(later.wallet.records())[0].span_id is not None
    print(json.dumps(out))
    """
)


def test_global_providers_set_later_are_picked_up() -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCENARIO], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["idle"] == [0, None, 1]
    assert out["same_ms"] is None
    assert out["new_ms"] == [True, 1]
    assert out["metrics"] == [20]
    assert out["done_watching"] == 0
    assert out["later"] is True
