"""Overhead of a metered call over a bare call, beside an OpenTelemetry SDK span, in one run.

    python benchmarks/overhead.py [--calls N] [--rounds R] [--passes P]

Each figure is the best of R rounds of N calls in each of P passes (the least disturbed by
other work on the machine). A pass measures everything once, in turn: the bare calls, the
spans, then each sink with a fresh sink, so that a machine busier in one part of the run
weighs on every figure alike. An exporting sink delivers what earlier rounds left before each
round starts (untimed); what it does during a round competes with the calls for the GIL and is
counted. Overheads are differences from the bare call, and the last column compares each
overhead with the OpenTelemetry span's.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import time
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

import flexcredits_sdk as fc


class _DropExporter(SpanExporter):
    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None


def _best(
    run: Callable[[int], float], calls: int, rounds: int, settle: Callable[[], Any] | None = None
) -> float:
    """Return the best time per call, in nanoseconds.

    `settle` runs before each round, untimed: an exporting sink delivers what earlier rounds
    left, so that every round starts alike (the round's own delivery work still counts).
    """
    best = float("inf")
    for _ in range(rounds):
        if settle is not None:
            settle()
        gc.collect()
        best = min(best, run(calls) / calls * 1e9)
    return best


def _sync_loop(func: Callable[[], Any]) -> Callable[[int], float]:
    def run(n: int) -> float:
        start = time.perf_counter()
        for _ in range(n):
            func()
        return time.perf_counter() - start

    return run


def _async_loop(func: Callable[[], Any]) -> Callable[[int], float]:
    async def body(n: int) -> float:
        start = time.perf_counter()
        for _ in range(n):
            await func()
        return time.perf_counter() - start

    return lambda n: asyncio.run(body(n))


def _gen_loop(func: Callable[[], Any]) -> Callable[[int], float]:
    def run(n: int) -> float:
        start = time.perf_counter()
        for _ in range(n):
            for _item in func():
                pass
        return time.perf_counter() - start

    return run


def _sinks() -> dict[str, Callable[[], Any]]:
    """The sinks to measure: name -> factory of a fresh sink."""
    sinks: dict[str, Callable[[], Any]] = {"offline wallet": fc.OfflineWallet}
    try:  # the exporting sink exists once delivery is installed
        from benchmarks._exporter_sink import exporter_sink
    except ImportError:
        pass
    else:
        sinks["exporter"] = exporter_sink
    return sinks


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--passes", type=int, default=3)
    args = parser.parse_args(argv)
    calls, rounds = args.calls, args.rounds

    provider = TracerProvider()
    processor = BatchSpanProcessor(_DropExporter())
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("benchmark")

    def bare() -> int:
        return 1

    async def abare() -> int:
        return 1

    def gbare() -> Any:
        yield 1

    def otel() -> int:
        with tracer.start_as_current_span("action"):
            return 1

    async def aotel() -> int:
        with tracer.start_as_current_span("action"):
            return 1

    def gotel() -> Any:
        with tracer.start_as_current_span("action"):
            yield 1

    kinds = {"sync": _sync_loop, "async": _async_loop, "generator": _gen_loop}
    bare_funcs = {"sync": bare, "async": abare, "generator": gbare}
    span_funcs = {"sync": otel, "async": aotel, "generator": gotel}
    sinks = _sinks()
    best: dict[tuple[str, str], float] = {}

    def measure(
        key: tuple[str, str], loop: Callable[[int], float], settle: Callable[[], Any] | None = None
    ) -> None:
        best[key] = min(best.get(key, float("inf")), _best(loop, calls, rounds, settle))

    for _ in range(args.passes):
        for kind, loop in kinds.items():
            measure(("bare", kind), loop(bare_funcs[kind]))
            measure(("span", kind), loop(span_funcs[kind]))
        for sink_name, make_sink in sinks.items():
            meter = fc.Meter(wallet=make_sink())
            for kind, loop in kinds.items():
                metered = loop(meter.metered_action(bare_funcs[kind]))
                measure((sink_name, kind), metered, functools.partial(meter.flush, 60))
            meter.shutdown(timeout=30)
    processor.shutdown()

    print(
        f"{calls:,} calls x {rounds} rounds x {args.passes} passes, best round; "
        "overhead = time per call - bare call"
    )
    header = ("kind", "sink", "bare ns", "overhead ns", "OTel span ns", "ratio")
    print("{:<10} {:<16} {:>9} {:>12} {:>13} {:>7}".format(*header))
    for sink_name in sinks:
        for kind in kinds:
            base = best[("bare", kind)]
            span = best[("span", kind)] - base
            overhead = best[(sink_name, kind)] - base
            print(
                f"{kind:<10} {sink_name:<16} {base:>9.0f} {overhead:>12.0f} "
                f"{span:>13.0f} {overhead / span:>7.3f}"
            )
    print("target: ratio <= 0.100 for the sync call with each sink")


if __name__ == "__main__":
    main()
