"""A wallet that runs for months: memory and per-call cost over millions of actions, in one run.

    python benchmarks/wallet.py [--actions N] [--round R]

Meters N actions (10,000,000 by default) through the default in-memory `OfflineWallet`, in
rounds of R calls, and prints the growth of the process's resident memory (RSS) from the first
action to the last, the wallet's own answers (records held and let go; usage still exact), and
the per-call overhead beside an OpenTelemetry SDK span's, each the best round of the run (bare
calls and spans are measured before, in the middle of and after the metered rounds).
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import time
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

import flexcredits_sdk as fc

_MIB = 1 << 20


class _DropExporter(SpanExporter):
    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None


def rss_bytes() -> int:
    """The resident memory of this process now (Linux), else its peak."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def per_call_ns(func: Callable[[], Any], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        func()
    return (time.perf_counter() - start) / calls * 1e9


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--actions", type=int, default=10_000_000)
    parser.add_argument("--round", type=int, default=50_000)
    args = parser.parse_args(argv)
    rounds = max(1, args.actions // args.round)

    provider = TracerProvider()
    processor = BatchSpanProcessor(_DropExporter())
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("benchmark")

    def bare() -> int:
        return 1

    def span() -> int:
        with tracer.start_as_current_span("action"):
            return 1

    references: dict[str, float] = {"bare": float("inf"), "span": float("inf")}

    def measure_references() -> None:
        for _ in range(3):
            gc.collect()
            references["bare"] = min(references["bare"], per_call_ns(bare, args.round))
            references["span"] = min(references["span"], per_call_ns(span, args.round))

    wallet = fc.OfflineWallet()
    meter = fc.Meter(wallet=wallet)
    departments = ("hr", "sales", "it", "ops")

    @meter.metered_action
    def answer() -> int:
        return 1

    measure_references()
    gc.collect()
    rss_before = rss_bytes()
    best = float("inf")
    started = time.perf_counter()
    for number in range(rounds):
        with fc.tags(department=departments[number % len(departments)]):
            best = min(best, per_call_ns(answer, args.round))
        if number == rounds // 2:
            measure_references()
    elapsed = time.perf_counter() - started
    gc.collect()
    rss_after = rss_bytes()
    measure_references()
    processor.shutdown()

    metered = rounds * args.round
    held, dropped = len(list(wallet.records())), wallet.dropped_records
    usage = wallet.usage(["department"])
    overhead = best - references["bare"]
    span_overhead = references["span"] - references["bare"]
    print(f"{metered:,} actions through the default in-memory OfflineWallet in {elapsed:.1f} s")
    print(
        f"  records held {held:,} (keep_records={wallet.keep_records:,}), let go {dropped:,}; "
        f"usage by department counts {sum(r.records for r in usage):,} records, "
        f"complete={usage.complete}"
    )
    growth = (rss_after - rss_before) / _MIB
    print(
        f"  RSS {rss_before / _MIB:.0f} MiB -> {rss_after / _MIB:.0f} MiB: growth {growth:.1f} MiB"
    )
    print(
        f"  per call, best round of {args.round:,}: bare {references['bare']:.0f} ns, "
        f"metered overhead {overhead:.0f} ns, OTel span overhead {span_overhead:.0f} ns, "
        f"ratio {overhead / span_overhead:.3f}"
    )
    print("targets: RSS growth <= 64 MiB; ratio better than 0.095")


if __name__ == "__main__":
    main()
