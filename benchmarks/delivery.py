"""Delivery benchmark: overhead per call, throughput, and memory while the wallet is down.

    python benchmarks/delivery.py [--calls N] [--rounds R] [--passes P] [--records N]
                                  [--queued N]

1. Overhead of a metered call with the exporter as sink, beside the offline wallet and an
   OpenTelemetry SDK span, measured in the same run: wall time per call
   (``benchmarks/overhead.py``, which counts the exporter thread's work too, as it competes
   for the GIL), and CPU time of the caller's thread alone (``time.thread_time``).
2. Throughput: 4 threads meter calls into an `HttpWallet` whose wallet service (the loopback
   stub of ``tests/wallet_stub.py``) runs in another process; records per second from the first
   call until the wallet acknowledged the last record (target: at least 50,000).
3. Memory: with the wallet down, queue a million records; the peak resident memory stays within
   the in-memory cap (``max_queue`` records) while the rest waits in the outbox on disk.
"""

from __future__ import annotations

import argparse
import functools
import gc
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import flexcredits_sdk as fc  # noqa: E402
from benchmarks import overhead  # noqa: E402
from flexcredits_sdk.wallets import HttpWallet  # noqa: E402


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _start_stub() -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "wallet_stub.py"), "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert process.stdout is not None
    return process, process.stdout.readline().strip()


def caller_cpu(calls: int, rounds: int, passes: int) -> None:
    """Print the CPU time a metered call costs its own thread, beside an OTel span's.

    Measured like `overhead.main`: the best round of each pass, with a fresh sink each pass.
    """
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from benchmarks._exporter_sink import exporter_sink

    provider = TracerProvider()
    processor = BatchSpanProcessor(overhead._DropExporter())
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("benchmark")
    best: dict[str, float] = {}

    def measure(name: str, func: Any, settle: Any = None) -> None:
        for _ in range(rounds):
            if settle is not None:
                settle()
            gc.collect()
            start = time.thread_time()
            for _ in range(calls):
                func()
            took = (time.thread_time() - start) / calls * 1e9
            best[name] = min(best.get(name, float("inf")), took)

    def bare() -> int:
        return 1

    def span() -> int:
        with tracer.start_as_current_span("action"):
            return 1

    sinks = {"offline wallet": fc.OfflineWallet, "exporter": exporter_sink}
    for _ in range(passes):
        measure("bare", bare)
        measure("span", span)
        for name, make in sinks.items():
            meter = fc.Meter(wallet=make())
            measure(name, meter.metered_action(bare), functools.partial(meter.flush, 60))
            meter.shutdown(timeout=30)
    processor.shutdown()  # type: ignore[no-untyped-call]
    base, otel = best["bare"], best["span"] - best["bare"]
    print(
        f"caller-thread CPU per call (time.thread_time), {calls:,} calls x {rounds} rounds x "
        f"{passes} passes"
    )
    print(f"{'sink':<16} {'overhead ns':>12} {'OTel span ns':>13} {'ratio':>7}")
    for name in sinks:
        cost = best[name] - base
        print(f"{name:<16} {cost:>12.0f} {otel:>13.0f} {cost / otel:>7.3f}")


def delivery_cpu(records: int) -> None:
    """Print the CPU time delivery costs per record on the exporter's threads."""
    from benchmarks._exporter_sink import exporter_sink

    wallet = exporter_sink()
    meter = fc.Meter(wallet=wallet)

    @meter.metered_action
    def identify_customer() -> int:
        return 1

    wallet.flush(timeout=60)
    process, caller = time.process_time(), time.thread_time()
    for _ in range(records):
        identify_customer()
    caller = time.thread_time() - caller
    delivered = wallet.flush(timeout=120)
    process = time.process_time() - process
    meter.shutdown(timeout=30)
    background = (process - caller) / records * 1e9
    print(
        f"delivery work: {records:,} records ({delivered=}), {background:,.0f} ns CPU per record "
        "on the exporter's threads (encoding, outbox, HTTP, answers), beside "
        f"{caller / records * 1e9:,.0f} ns on the caller's thread"
    )


def throughput(records: int, threads: int = 4) -> None:
    """Meter `records` calls from `threads` threads and time their delivery."""
    stub, url = _start_stub()
    try:
        with tempfile.TemporaryDirectory() as outbox:
            wallet = HttpWallet(url, "test-key", outbox_dir=outbox)
            meter = fc.Meter(wallet=wallet)

            @meter.metered_action
            def identify_customer() -> int:
                return 1

            per_thread = records // threads

            def work() -> None:
                for _ in range(per_thread):
                    identify_customer()

            workers = [threading.Thread(target=work) for _ in range(threads)]
            start = time.perf_counter()
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()
            metered = time.perf_counter() - start
            delivered = wallet.flush(timeout=120)
            elapsed = time.perf_counter() - start
            booked = wallet.balance().used // 20
            stats = wallet.stats()
            wallet.shutdown(timeout=10)
        total = per_thread * threads
        print(
            f"throughput: {total:,} records from {threads} threads, metered in {metered:.2f} s, "
            f"delivered in {elapsed:.2f} s ({delivered=}): {total / elapsed:,.0f} records/s; "
            f"booked by the wallet: {booked:,}; sent={stats['sent']:,} "
            f"duplicates={stats['duplicates']} dropped={stats['dropped']}"
        )
        print("target: >= 50,000 records/s")
    finally:
        stub.terminate()
        stub.wait()


def memory(queued: int, max_queue: int) -> None:
    """Queue `queued` records with the wallet down; report peak memory and where they wait."""
    with tempfile.TemporaryDirectory() as outbox:
        wallet = HttpWallet(
            "http://127.0.0.1:9", "test-key", outbox_dir=outbox, max_queue=max_queue, timeout=1.0
        )
        meter = fc.Meter(wallet=wallet)

        @meter.metered_action
        def identify_customer() -> int:
            return 1

        identify_customer()
        before = _rss_kib("VmRSS")
        start = time.perf_counter()
        for _ in range(queued - 1):
            identify_customer()
        elapsed = time.perf_counter() - start
        wallet.flush(timeout=0.5)  # let the last group commit happen; nothing can be delivered
        time.sleep(0.5)
        stats = wallet.stats()
        peak = _rss_kib("VmHWM")
        size = sum(p.stat().st_size for p in Path(outbox).iterdir()) / 2**20
        print(
            f"memory: {queued:,} records queued in {elapsed:.1f} s with the wallet down; "
            f"RSS before {before / 1024:.0f} MiB, peak {peak / 1024:.0f} MiB "
            f"(+{(peak - before) / 1024:.0f} MiB); in memory {stats['queued']:,} "
            f"(cap {max_queue:,}), on disk {stats['in_outbox']:,} ({size:.0f} MiB), "
            f"dropped {stats['dropped']:,}"
        )
        wallet.shutdown(timeout=0)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--records", type=int, default=400_000)
    parser.add_argument("--queued", type=int, default=1_000_000)
    parser.add_argument("--max-queue", type=int, default=50_000)
    parser.add_argument("--part", choices=["all", "overhead", "throughput", "memory"])
    args = parser.parse_args(argv)
    part = args.part or "all"
    if part in ("all", "overhead"):
        passes = ["--passes", str(args.passes)]
        overhead.main(["--calls", str(args.calls), "--rounds", str(args.rounds), *passes])
        caller_cpu(args.calls, args.rounds, args.passes)
        delivery_cpu(args.records // 2)
    if part in ("all", "throughput"):
        throughput(args.records)
    if part == "memory":
        memory(args.queued, args.max_queue)
    elif part == "all":  # a fresh process, so that its peak memory is its own
        subprocess.run(
            [
                sys.executable,
                __file__,
                "--part",
                "memory",
                "--queued",
                str(args.queued),
                "--max-queue",
                str(args.max_queue),
            ],
            check=True,
        )


if __name__ == "__main__":
    main()
