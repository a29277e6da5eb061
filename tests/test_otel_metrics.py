"""The OpenTelemetry bridge's metrics: counters, the duration histogram, delivery figures."""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader

import flexcredits_sdk as fc
from flexcredits_sdk import otel


class Metrics:
    """A meter provider read in memory."""

    def __init__(self) -> None:
        self.reader = InMemoryMetricReader()
        self.provider = MeterProvider(metric_readers=[self.reader])

    def points(self) -> dict[str, list[Any]]:
        data = self.reader.get_metrics_data()
        found: dict[str, list[Any]] = {}
        for resource in data.resource_metrics if data else []:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    found.setdefault(metric.name, []).extend(metric.data.data_points)
        return found

    def values(self, name: str) -> dict[tuple[tuple[str, Any], ...], Any]:
        return {tuple(sorted((p.attributes or {}).items())): p.value for p in self.points()[name]}


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


def test_each_record_counts_credits_actions_and_duration(metrics: Metrics) -> None:
    meter = fc.Meter(metric_tags=["department"])
    otel.instrument(meter, meter_provider=metrics.provider)

    @meter.metered_action(name="search", units=2)
    def search() -> None:
        return None

    @meter.metered_action(name="refund")
    def refund() -> None:
        raise RuntimeError("no")

    with fc.tags(department="billing", customer="c-1"):
        search()
        search()
    with fc.tags(department="sales", customer="c-2"):
        search()
        with pytest.raises(RuntimeError):
            refund()

    base = (
        ("flexcredits.action_type", "standard"),
        ("flexcredits.environment", "production"),
    )

    def key(action: str, department: str, outcome: str = "ok") -> tuple[tuple[str, Any], ...]:
        return tuple(
            sorted(
                (
                    *base,
                    ("flexcredits.action", action),
                    ("flexcredits.outcome", outcome),
                    ("flexcredits.tag.department", department),
                )
            )
        )

    assert metrics.values("flexcredits.credits") == {
        key("search", "billing"): 80,
        key("search", "sales"): 40,
        key("refund", "sales", "error"): 20,
    }
    assert metrics.values("flexcredits.actions") == {
        key("search", "billing"): 4,
        key("search", "sales"): 2,
        key("refund", "sales", "error"): 1,
    }
    histogram = metrics.points()["flexcredits.action.duration"]
    assert sum(p.count for p in histogram) == 4
    assert all(isinstance(p, HistogramDataPoint) for p in histogram)
    assert list(histogram[0].explicit_bounds) == list(otel.DURATION_BUCKETS)
    # customer is not on the allow-list: it never becomes a metric attribute.
    assert all(
        "flexcredits.tag.customer" not in (p.attributes or {})
        for points in metrics.points().values()
        for p in points
    )


def test_instrument_units_and_descriptions(metrics: Metrics) -> None:
    meter = fc.Meter()
    otel.instrument(meter, meter_provider=metrics.provider)
    meter.metered_action(name="a")(lambda: None)()
    data = metrics.reader.get_metrics_data()
    assert data is not None
    units = {m.name: m.unit for m in data.resource_metrics[0].scope_metrics[0].metrics}
    assert units["flexcredits.credits"] == "{credit}"
    assert units["flexcredits.actions"] == "{action}"
    assert units["flexcredits.action.duration"] == "s"
    assert units["flexcredits.export.sent"] == "{record}"


def test_fractional_credits_are_counted_as_floats(metrics: Metrics) -> None:
    card = fc.RateCard(
        name="fractional",
        pack_credits=1000,
        pack_price=Decimal(10),
        action_types={"standard": {"production": Decimal("0.5")}},
    )
    meter = fc.Meter(rate_card=card)
    otel.instrument(meter, meter_provider=metrics.provider)
    action = meter.metered_action(name="cheap")(lambda: None)
    for _ in range(3):
        action()
    (value,) = metrics.values("flexcredits.credits").values()
    assert value == 1.5


class StatsSink(fc.OfflineWallet):
    """A wallet that reports delivery figures, like the exporter."""

    def __init__(self, **figures: int) -> None:
        super().__init__()
        self.figures = figures

    def stats(self) -> dict[str, int]:
        return self.figures


def test_delivery_figures_are_observed_from_meter_stats(metrics: Metrics) -> None:
    production = fc.Meter(wallet=StatsSink(queued=3, in_outbox=5, sent=7, rejected=1, dropped=2))
    also_production = fc.Meter(wallet=StatsSink(queued=1, sent=10))
    sandbox = fc.Meter(environment="sandbox", wallet=StatsSink(sent=4))
    for meter in (production, also_production, sandbox):
        otel.instrument(meter, meter_provider=metrics.provider)

    env = "flexcredits.environment"
    assert metrics.values("flexcredits.export.queued") == {
        ((env, "production"),): 4,
        ((env, "sandbox"),): 0,
    }
    assert metrics.values("flexcredits.export.outbox")[((env, "production"),)] == 5
    assert metrics.values("flexcredits.export.sent") == {
        ((env, "production"),): 17,
        ((env, "sandbox"),): 4,
    }
    assert metrics.values("flexcredits.export.rejected")[((env, "production"),)] == 1
    assert metrics.values("flexcredits.export.dropped")[((env, "production"),)] == 2

    otel.uninstrument(sandbox)
    assert ((env, "sandbox"),) not in metrics.values("flexcredits.export.sent")


def test_meters_share_one_set_of_instruments_per_provider(
    metrics: Metrics, caplog: pytest.LogCaptureFixture
) -> None:
    first, second = fc.Meter(), fc.Meter()
    with caplog.at_level(logging.WARNING):
        otel.instrument(first, meter_provider=metrics.provider)
        otel.instrument(second, meter_provider=metrics.provider)
    assert caplog.records == []
    first.metered_action(name="a")(lambda: None)()
    second.metered_action(name="a")(lambda: None)()
    (value,) = metrics.values("flexcredits.credits").values()
    assert value == 40


def test_metrics_only_without_a_tracer_provider_leaves_records_without_span_ids(
    metrics: Metrics,
) -> None:
    meter = fc.Meter()
    otel.instrument(meter, meter_provider=metrics.provider)
    meter.metered_action(name="a")(lambda: None)()
    (record,) = list(meter.wallet.records())  # type: ignore[attr-defined]
    assert record.trace_id is None
    assert record.span_id is None
    assert metrics.values("flexcredits.credits")
