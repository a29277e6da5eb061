"""Overhead of a metered call over a bare call, beside an OpenTelemetry SDK span, in one run.

    python benchmarks/overhead.py [--calls N] [--rounds R]

Each figure is the best of R rounds of N calls (the least disturbed by other work on the
machine); overheads are differences from the bare call measured in the same run, and the last
column compares each overhead with the OpenTelemetry span's.
"""

from __future__ import annotations

import argparse
import asyncio
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


def _best(run: Callable[[int], float], calls: int, rounds: int) -> float:
    """Return the best time per call, in nanoseconds."""
    best = float("inf")
    for _ in range(rounds):
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
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=7)
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

    base = {
        "sync": _best(_sync_loop(bare), calls, rounds),
        "async": _best(_async_loop(abare), calls, rounds),
        "generator": _best(_gen_loop(gbare), calls, rounds),
    }
    span = {
        "sync": _best(_sync_loop(otel), calls, rounds) - base["sync"],
        "async": _best(_async_loop(aotel), calls, rounds) - base["async"],
        "generator": _best(_gen_loop(gotel), calls, rounds) - base["generator"],
    }

    print(f"{calls:,} calls x {rounds} rounds, best round; overhead = time per call - bare call")
    header = ("kind", "sink", "bare ns", "overhead ns", "OTel span ns", "ratio")
    print("{:<10} {:<16} {:>9} {:>12} {:>13} {:>7}".format(*header))
    for sink_name, make_sink in _sinks().items():
        sink = make_sink()
        meter = fc.Meter(wallet=sink)
        metered = {
            "sync": _sync_loop(meter.metered_action(bare)),
            "async": _async_loop(meter.metered_action(abare)),
            "generator": _gen_loop(meter.metered_action(gbare)),
        }
        for kind, loop in metered.items():
            overhead = _best(loop, calls, rounds) - base[kind]
            ratio = overhead / span[kind]
            print(
                f"{kind:<10} {sink_name:<16} {base[kind]:>9.0f} {overhead:>12.0f} "
                f"{span[kind]:>13.0f} {ratio:>7.3f}"
            )
        meter.shutdown(timeout=30)
    processor.shutdown()
    print("target: ratio <= 0.100 for the sync call with each sink")


if __name__ == "__main__":
    main()
