"""A wallet that runs for months: memory and per-call cost over millions of actions, in one run.

    python benchmarks/wallet.py [--actions N] [--round R] [--file-actions F]

Meters N actions (10,000,000 by default) through the default in-memory `OfflineWallet`, in
rounds of R calls, and prints the growth of the process's resident memory (RSS) from the first
action to the last, the wallet's own answers (records held and let go; usage still exact), and
the per-call overhead beside an OpenTelemetry SDK span's, each the best round of the run (bare
calls and spans are measured before, in the middle of and after the metered rounds).

Then meters F actions (N by default) through `OfflineWallet(path=...)` in a temporary directory
(best round, against the in-memory wallet's), and opens the file F records make in a new process:
the time and memory that opening takes, and the time of ``usage(group_by=["department"])``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
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
    parser.add_argument("--file-actions", type=int, default=None)
    args = parser.parse_args(argv)
    if args.file_actions is None:
        args.file_actions = args.actions
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
    metered_ns = 0.0  # the time of the metered rounds, without the references between them
    started = time.perf_counter()
    for number in range(rounds):
        with fc.tags(department=departments[number % len(departments)]):
            this_round = per_call_ns(answer, args.round)
            best = min(best, this_round)
            metered_ns += this_round * args.round
        if number == rounds // 2:
            measure_references()
    elapsed = time.perf_counter() - started
    gc.collect()
    rss_after = rss_bytes()
    measure_references()
    processor.shutdown()

    metered = rounds * args.round
    mean = metered_ns / metered
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
        f"ratio {overhead / span_overhead:.3f}; mean per call over the run {mean:.0f} ns"
    )
    print("targets: RSS growth <= 64 MiB; ratio better than 0.095")

    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "wallet.db"
        file_wallet = fc.OfflineWallet(path=path)
        file_meter = fc.Meter(wallet=file_wallet)
        file_answer = file_meter.metered_action(bare)
        file_rounds = max(1, args.file_actions // args.round)
        file_best = float("inf")
        started = time.perf_counter()
        for number in range(file_rounds):
            with fc.tags(department=departments[number % len(departments)]):
                file_best = min(file_best, per_call_ns(file_answer, args.round))
        file_wallet.shutdown()  # writes what is left: part of the cost
        elapsed = time.perf_counter() - started
        file_overhead = file_best - references["bare"]
        size = path.stat().st_size / _MIB
        print(
            f"{file_rounds * args.round:,} actions through OfflineWallet(path=...) in "
            f"{elapsed:.1f} s ({size:,.0f} MiB file)"
        )
        file_mean = elapsed * 1e9 / (file_rounds * args.round)
        print(
            f"  per call, best round: metered overhead {file_overhead:.0f} ns, "
            f"{file_overhead / overhead:.2f}x the in-memory wallet's; mean over the whole run "
            f"(with the last write) {file_mean:.0f} ns, {file_mean / mean:.2f}x"
        )
        opened = json.loads(
            subprocess.run(
                [sys.executable, __file__, "--open", str(path)],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
        print(
            f"  opening it: {opened['open_s']:.3f} s, RSS +{opened['open_mib']:.1f} MiB; "
            f"usage(group_by=['department']): {opened['usage_s']:.3f} s "
            f"({opened['records']:,} records)"
        )
    print("targets: per call <= 2x in memory; open < 1 s and < 64 MiB; usage < 1 s")


def open_file(path: str) -> None:
    """Open a wallet file, in a process of its own: print what it took, as JSON."""
    gc.collect()
    before = rss_bytes()
    started = time.perf_counter()
    wallet = fc.OfflineWallet(path=path)
    open_s = time.perf_counter() - started
    after = rss_bytes()
    started = time.perf_counter()
    rows = wallet.usage(["department"])
    usage_s = time.perf_counter() - started
    wallet.shutdown()
    print(
        json.dumps(
            {
                "open_s": open_s,
                "open_mib": (after - before) / _MIB,
                "usage_s": usage_s,
                "records": sum(row.records for row in rows),
            }
        )
    )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--open"]:
        open_file(sys.argv[2])
    else:
        main()
