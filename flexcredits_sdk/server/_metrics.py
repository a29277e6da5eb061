"""Prometheus metrics of the wallet service, served at ``GET /metrics``.

Each application has its own registry, so several applications in one process (tests) do not
collide. Counters and the ingest histogram are kept by the process; when
``PROMETHEUS_MULTIPROC_DIR`` is set (``flexcredits wallet serve --workers N`` sets it to a fresh
directory for N > 1), prometheus-client's multiprocess mode sums them over every worker, so any
worker answers for all. Balances are read from the database when scraped, and so are the same
from every worker and every machine.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client import generate_latest as _generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from ._config import MULTIPROC_VARIABLE

if TYPE_CHECKING:
    from .._models import Balance

__all__ = ["CONTENT_TYPE_LATEST", "ServiceMetrics"]

#: Seconds; a 5,000-record batch takes about 65 ms on SQLite.
_INGEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class _Balances(Collector):
    """The balance and held credits of every tenant (or their totals), read when scraped."""

    def __init__(self, balances: Callable[[], list[tuple[str, Balance]]], per_tenant: bool):
        self._balances = balances
        self._per_tenant = per_tenant

    def collect(self) -> Iterator[Metric]:
        labels = ["tenant"] if self._per_tenant else []
        balance = GaugeMetricFamily(
            "flexcredits_wallet_balance_credits",
            "Credits left to spend (negative when overdrawn), per tenant or in total.",
            labels=labels,
        )
        held = GaugeMetricFamily(
            "flexcredits_wallet_held_credits",
            "Credits reserved by holds of actions still running, per tenant or in total.",
            labels=labels,
        )
        tenants = GaugeMetricFamily("flexcredits_wallet_tenants", "Tenants in the database.")
        found = self._balances()
        if self._per_tenant:
            for name, each in found:
                balance.add_metric([name], float(each.credits))
                held.add_metric([name], float(each.held))
        else:
            balance.add_metric([], float(sum((Decimal(b.credits) for _, b in found), Decimal())))
            held.add_metric([], float(sum((Decimal(b.held) for _, b in found), Decimal())))
        tenants.add_metric([], len(found))
        yield from (balance, held, tenants)


class ServiceMetrics:
    """The metrics of one application, in a registry of its own.

    Args:
        per_tenant: Label balances with the tenant's name (otherwise totals only).
    """

    def __init__(self, *, per_tenant: bool = False) -> None:
        self.per_tenant = per_tenant
        own = CollectorRegistry()
        if os.environ.get(MULTIPROC_VARIABLE):
            # The values live in files that every worker writes; the registry that answers
            # reads them all, and the metrics' own registry is never exposed (no double count).
            self.registry = CollectorRegistry()
            MultiProcessCollector(self.registry)  # type: ignore[no-untyped-call]
        else:
            self.registry = own
        self.requests = Counter(
            "flexcredits_wallet_requests",
            "HTTP requests answered, by method, route template and status.",
            ["method", "route", "status"],
            registry=own,
        )
        self.records = Counter(
            "flexcredits_wallet_records",
            "Usage records received, by result: accepted, duplicate, rejected, not_booked.",
            ["result"],
            registry=own,
        )
        self.ingest_seconds = Histogram(
            "flexcredits_wallet_ingest_seconds",
            "Seconds to validate and book one batch of records (POST /v1/records).",
            buckets=_INGEST_BUCKETS,
            registry=own,
        )
        self.repriced = Counter(
            "flexcredits_wallet_repriced_records",
            "Records booked at the service's price because the credits they claimed differ.",
            registry=own,
        )
        self.webhook_deliveries = Counter(
            "flexcredits_wallet_webhook_deliveries",
            "Webhook delivery attempts, by result: delivered, retry, failed (given up).",
            ["result"],
            registry=own,
        )
        self.holds = Counter(
            "flexcredits_wallet_holds",
            "Hold requests and ends, by result: granted, repeated (same id again), "
            "refused_balance, refused_budget, released, expired.",
            ["result"],
            registry=own,
        )
        for result in (
            "granted",
            "repeated",
            "refused_balance",
            "refused_budget",
            "released",
            "expired",
        ):
            self.holds.labels(result)
        for result in ("accepted", "duplicate", "rejected", "not_booked"):
            self.records.labels(result)
        for result in ("delivered", "retry", "failed"):
            self.webhook_deliveries.labels(result)

    def watch_balances(self, balances: Callable[[], list[tuple[str, Balance]]]) -> None:
        """Report the balances that `balances` returns (tenant, balance) at each scrape."""
        self.registry.register(_Balances(balances, self.per_tenant))

    def count_records(self, answer: dict[str, object]) -> None:
        """Count the results of one `IngestResponse`'s data."""
        counts: dict[str, int] = {}
        repriced = 0
        results = answer.get("results")
        assert isinstance(results, list)
        for result in results:
            counts[result["status"]] = counts.get(result["status"], 0) + 1
            repriced += "priced" in result
        for status, count in counts.items():
            self.records.labels(status).inc(count)
        if repriced:
            self.repriced.inc(repriced)

    def exposition(self) -> bytes:
        """Return every metric in Prometheus's text format."""
        return _generate_latest(self.registry)
