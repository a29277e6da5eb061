"""Spend control's cost: actions authorized from leases, round trips, and holds on the service.

    python benchmarks/authorize.py [--calls N] [--rounds R] [--passes P] [--actions N]
                                   [--warmup N] [--hold-threads T] [--hold-seconds S]
                                   [--backends sqlite,postgresql] [--pg-workers W]

One run, against real wallet services on loopback (``tests/server_fixtures.py``):

1. The caller's cost of an action, through the exporter (`HttpWallet`, durable outbox), on a
   service on SQLite: tenant A allows overdraft and has no hard budget (no authorization;
   ``lease="off"``), tenant B denies overdraft and has a big grant (every action authorized
   from a lease). Measured like ``benchmarks/overhead.py``: each pass measures the bare call, an
   OpenTelemetry SDK span, the no-auth action and the leased action in turn, R rounds of N calls
   each, with fresh wallets; before each round the wallet delivers what earlier rounds left
   (for tenant B this also gives its lease back), then runs 2,000 untimed actions, so that a
   round measures the steady state: B's blocks already as large as its burn rate asks, the
   next one taken in the background while the actions draw on the current one.
   Reported: the median and the best round, as wall time per call (what the action waits,
   including a hold's round trip when its lease runs out) and as CPU time of the caller's
   thread (``time.thread_time``); a cost is the time per call less the bare call's.
2. Round trips to the service per 1,000 actions at steady state, from the wallet's lease stats
   (holds + releases + policy fetches) counted after a warm-up, with 1 and with 4 threads
   drawing on one wallet as fast as they can (the block size is then bound by
   ``lease_max_credits``).
3. Holds the service grants per second, on SQLite (1 service process) and on PostgreSQL (W
   processes, a throwaway durable cluster as in ``benchmarks/ingest.py``): T client threads
   each ``POST /v1/holds`` a small hold and ``DELETE`` it, for S seconds; with the p50 and p99
   of one hold's round trip (the POST) and of a release.

The load average (``uptime``) is printed at the start and the end: the machine may be shared.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from server_fixtures import PostgresCluster, ServerProcess  # noqa: E402

import flexcredits_sdk as fc  # noqa: E402
from benchmarks.overhead import _DropExporter  # noqa: E402
from flexcredits_sdk.wallets import HttpWallet  # noqa: E402
from flexcredits_sdk.wallets._holds import LeaseMode, LeaseSettings  # noqa: E402

#: What one action costs on the service's default card (a standard action in production).
CREDITS = 20
#: What tenant B is granted: far more than any run spends.
GRANT = 10**10


def _uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError) as exc:
        return f"(uptime: {exc})"


def _percentile(ordered: Sequence[float], share: float) -> float:
    return ordered[min(len(ordered) - 1, max(0, round(len(ordered) * share) - 1))]


class Service(ServerProcess):
    """The wallet service in a subprocess, listening on its own port (``--host``/``--port``),
    as a user runs it, or on the socket `ServerProcess` passes it (``--fd``).

    uvicorn takes a socket given by ``--fd`` for a unix socket, so its TCP connections do not
    get ``TCP_NODELAY``: each small answer on a kept-alive connection then waits for the
    client's delayed ACK (about 40 ms on Linux). ``--listen fd`` shows that.
    """

    listen = "port"

    def start(self) -> None:
        if self.listen == "fd":
            super().start()
            return
        self.sock.close()  # the server binds the port itself (SO_REUSEADDR on both)
        cmd = [sys.executable, "-m", "flexcredits_sdk.server", "serve"]
        cmd += [] if self.db is None else ["--db", self.db]
        cmd += ["--host", "127.0.0.1", "--port", str(self.port)]
        cmd += ["--workers", str(self.workers), "--log-level", "INFO"]
        with self._changed:
            self.logs.clear()
        self.proc = subprocess.Popen(
            cmd,
            env=self._env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        threading.Thread(target=self._read, args=(self.proc,), daemon=True).start()
        self.wait_for(lambda logs: sum(e.get("event") == "startup" for e in logs) >= self.workers)
        deadline = time.monotonic() + 60
        while True:  # the workers are up; the parent may still be binding
            try:
                httpx.get(self.url + "/healthz", timeout=5).raise_for_status()
                return
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)


@contextlib.contextmanager
def _tenants(db: str) -> Iterator[tuple[ServerProcess, str, str]]:
    """A service on `db` with tenant A (overdraft allowed) and B (denied, a big grant)."""
    server = Service(db)
    try:
        key_a = server.tenant("no-auth")
        server.grant("no-auth", GRANT)
        key_b = server.tenant("leased", overdraft="deny")
        server.grant("leased", GRANT)
        yield server, key_a, key_b
    finally:
        server.close()


# --- 1. the caller's cost -------------------------------------------------------------------


#: Untimed actions before each timed round of the caller's cost (both tenants alike).
_STEADY = 2_000


def caller_cost(
    url: str, key_a: str, key_b: str, calls: int, rounds: int, passes: int, leasing: dict[str, Any]
) -> None:
    """Print the cost of a leased action and of an action with no authorization."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider()
    processor = BatchSpanProcessor(_DropExporter())
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("benchmark")
    wall: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}
    stats: dict[str, Any] = {}

    def measure(name: str, func: Callable[[], Any], settle: Callable[[], Any] | None) -> None:
        for _ in range(rounds):
            if settle is not None:
                settle()
            gc.collect()
            start, start_cpu = time.perf_counter(), time.thread_time()
            for _ in range(calls):
                func()
            took_cpu, took = time.thread_time() - start_cpu, time.perf_counter() - start
            wall.setdefault(name, []).append(took / calls * 1e9)
            cpu.setdefault(name, []).append(took_cpu / calls * 1e9)

    def bare() -> int:
        return 1

    def span() -> int:
        with tracer.start_as_current_span("answer"):
            return 1

    tenants: dict[str, tuple[str, LeaseMode]] = {
        "no auth (A)": (key_a, "off"),
        "leased (B)": (key_b, "auto"),
    }
    with tempfile.TemporaryDirectory() as outboxes:
        for number in range(passes):
            measure("bare", bare, None)
            measure("span", span, None)
            for name, (key, lease) in tenants.items():
                outbox = Path(outboxes) / f"{number}-{lease}"
                options = leasing if lease == "auto" else {}
                wallet = HttpWallet(url, key, outbox_dir=outbox, lease=lease, **options)
                meter = fc.Meter(wallet=wallet)
                answer = meter.metered_action(name="answer")(bare)
                answer()  # the policy (and for B a first lease): asked once, untimed

                def settle(meter: fc.Meter = meter, answer: Callable[[], Any] = answer) -> None:
                    # Steady state: what was metered is delivered (which gives B's leases
                    # back), then untimed actions take B's leases again, as large as its
                    # burn rate asks, so a round times actions, not the first blocks' ramp.
                    meter.flush(60)
                    for _ in range(_STEADY):
                        answer()

                measure(name, answer, settle)
                assert meter.flush(60), f"{name}: records not delivered"
                stats[name] = wallet.stats()
                done = meter.stats()
                meter.shutdown(timeout=30)
                assert (done.metering_errors, done.refused, done.rejected) == (0, 0, 0), done
    processor.shutdown()  # type: ignore[no-untyped-call]
    leased = stats["leased (B)"]["leases"]
    assert leased["holds"] > 0, leased
    assert leased["refused"] == 0, leased
    assert stats["no auth (A)"]["leases"]["holds"] == 0, stats["no auth (A)"]

    print(
        f"1. caller's cost per action, through the exporter to a service on SQLite: {calls:,} "
        f"calls x {rounds} rounds x {passes} passes; cost = time per call - bare call"
    )
    header = ("", "wall median", "wall best", "CPU median", "CPU best")
    print("   {:<14}{:>13}{:>11}{:>12}{:>10}".format(*header))
    figures: dict[str, tuple[float, float, float, float]] = {}
    for name in ("bare", "span", *tenants):
        less = 0.0 if name == "bare" else 1.0
        row = (
            statistics.median(wall[name]) - less * statistics.median(wall["bare"]),
            min(wall[name]) - less * min(wall["bare"]),
            statistics.median(cpu[name]) - less * statistics.median(cpu["bare"]),
            min(cpu[name]) - less * min(cpu["bare"]),
        )
        figures[name] = row
        label = {"bare": "bare call", "span": "OTel span"}.get(name, name)
        print(
            f"   {label:<14}{row[0]:>10,.0f} ns{row[1]:>8,.0f} ns{row[2]:>9,.0f} ns"
            f"{row[3]:>7,.0f} ns"
        )
    a, b = figures["no auth (A)"], figures["leased (B)"]
    print(
        f"   leased/no-auth: {b[0] / a[0]:.2f} (wall, median), {b[1] / a[1]:.2f} (wall, best), "
        f"{b[2] / a[2]:.2f} (CPU, median), {b[3] / a[3]:.2f} (CPU, best); "
        f"leased/OTel span: {b[0] / figures['span'][0]:.2f} (wall, median)"
    )
    print(
        f"   tenant B's leases in the run: holds {leased['holds']:,}, released "
        f"{leased['released']:,}, policy fetches {leased['policy_fetches']:,}"
    )
    print("   target: leased/no-auth <= 1.5")


# --- 2. round trips at steady state -----------------------------------------------------------


def round_trips(
    url: str, key: str, threads: int, warmup: int, actions: int, leasing: dict[str, Any]
) -> None:
    """Print the round trips a wallet makes per 1,000 actions after `warmup` actions."""
    with tempfile.TemporaryDirectory() as outbox:
        wallet = HttpWallet(url, key, outbox_dir=outbox, **leasing)
        meter = fc.Meter(wallet=wallet)

        @meter.metered_action(name="answer")
        def answer() -> int:
            return 1

        def run(total: int) -> float:
            each = total // threads

            def work() -> None:
                for _ in range(each):
                    answer()

            workers = [threading.Thread(target=work) for _ in range(threads)]
            start = time.perf_counter()
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()
            return time.perf_counter() - start

        run(warmup)
        before = wallet.stats()["leases"]
        elapsed = run(actions)
        after = wallet.stats()["leases"]
        done = actions // threads * threads
        assert meter.flush(120), "records not delivered"
        meter.shutdown(timeout=30)
    counted = ("holds", "released", "policy_fetches")
    made = {name: after[name] - before[name] for name in counted}
    assert (after["refused"], after["errors"]) == (0, 0), after
    per = 1000 * sum(made.values()) / done
    print(
        f"   {threads} thread{'s' if threads > 1 else ' '}: {per:5.1f} per 1,000 actions "
        f"(holds {made['holds']:,}, released {made['released']:,}, policy fetches "
        f"{made['policy_fetches']:,} in {done:,} actions after {warmup:,} of warm-up; "
        f"{done / elapsed:,.0f} actions/s, {sum(made.values()) / elapsed:,.0f} round trips/s)"
    )


# --- 3. holds the service grants --------------------------------------------------------------


def hold_rate(label: str, db: str, workers: int, threads: int, seconds: float) -> dict[str, Any]:
    """Return the holds granted per second by a fresh service, and their latencies."""
    server = Service(db, workers=workers)
    try:
        key = server.tenant("holds", overdraft="deny")
        server.grant("holds", GRANT)
        takes: list[list[float]] = [[] for _ in range(threads)]
        gives: list[list[float]] = [[] for _ in range(threads)]
        failures: list[str] = []
        ready = threading.Barrier(threads + 1)
        stop = threading.Event()

        def work(number: int) -> None:
            body = {"credits": CREDITS, "tags": {"agent": f"t{number}"}, "ttl": 60}
            headers = {"Authorization": f"Bearer {key}"}
            with httpx.Client(base_url=server.url, headers=headers, timeout=60) as client:

                def once(record: bool) -> None:
                    start = time.perf_counter()
                    taken = client.post("/v1/holds", json=body)
                    took = time.perf_counter() - start
                    if taken.status_code != 201:
                        failures.append(f"POST {taken.status_code}: {taken.text[:200]}")
                        return
                    given = client.delete(f"/v1/holds/{taken.json()['id']}")
                    if given.status_code != 200 or given.json()["status"] != "released":
                        failures.append(f"DELETE {given.status_code}: {given.text[:200]}")
                        return
                    if record:
                        takes[number].append(took)
                        gives[number].append(time.perf_counter() - start - took)

                for _ in range(10):  # connections open, the service's caches warm
                    once(False)
                ready.wait()
                while not stop.is_set() and not failures:
                    once(True)

        workers_ = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
        for worker in workers_:
            worker.start()
        ready.wait()
        start = time.perf_counter()
        time.sleep(seconds)
        stop.set()
        for worker in workers_:
            worker.join()
        elapsed = time.perf_counter() - start
        assert not failures, failures[:3]
        with server.client(key) as client:
            balance = client.get("/v1/balance").json()
        assert (balance["held"], balance["credits"]) == (0, GRANT), balance
    finally:
        server.close()
    posts = sorted(t for each in takes for t in each)
    deletes = sorted(t for each in gives for t in each)
    return {
        "backend": label,
        "holds": len(posts),
        "per_second": len(posts) / elapsed,
        "p50": statistics.median(posts) * 1000,
        "p99": _percentile(posts, 0.99) * 1000,
        "release_p50": statistics.median(deletes) * 1000,
        "release_p99": _percentile(deletes, 0.99) * 1000,
    }


def holds(backends: Sequence[str], pg_workers: int, threads: int, seconds: float) -> None:
    """Print the holds per second each backend grants, and one hold's round trip."""
    print(
        f"3. holds granted per second: {threads} client threads, each POST /v1/holds "
        f"({CREDITS} credits) then DELETE it, for {seconds:g} s"
    )
    header = ("backend", "holds", "holds/s", "hold p50", "hold p99", "release p50", "p99")
    print("   {:<26}{:>7}{:>9}{:>10}{:>10}{:>13}{:>9}".format(*header))
    for backend in backends:
        with tempfile.TemporaryDirectory() as tmp:
            if backend == "sqlite":
                row = hold_rate("sqlite (1 process)", str(Path(tmp) / "w.db"), 1, threads, seconds)
            else:
                try:
                    cluster = PostgresCluster(durable=True)
                except FileNotFoundError as exc:
                    print(f"   {'postgresql':<26} not measured: {exc}")
                    continue
                try:
                    label = f"postgresql ({pg_workers} process{'es' if pg_workers > 1 else ''})"
                    row = hold_rate(label, cluster.create_database(), pg_workers, threads, seconds)
                finally:
                    cluster.stop()
        print(
            f"   {row['backend']:<26}{row['holds']:>7,}{row['per_second']:>9,.0f}"
            f"{row['p50']:>7.1f} ms{row['p99']:>7.1f} ms{row['release_p50']:>10.1f} ms"
            f"{row['release_p99']:>6.1f} ms"
        )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000, help="calls per round (1.)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--actions", type=int, default=100_000, help="measured actions (2.)")
    parser.add_argument("--warmup", type=int, default=20_000, help="warm-up actions (2.)")
    parser.add_argument("--hold-threads", type=int, default=4)
    parser.add_argument("--hold-seconds", type=float, default=10.0)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--pg-workers", type=int, default=4, help="service processes (3.)")
    parser.add_argument(
        "--lease-max-credits",
        type=int,
        default=None,
        help="HttpWallet(lease_max_credits=...) for tenant B (default: the wallet's default)",
    )
    parser.add_argument(
        "--listen",
        choices=["port", "fd"],
        default="port",
        help="the services listen on a port of their own, or on a socket passed by --fd",
    )
    args = parser.parse_args(argv)
    for name in ("calls", "rounds", "passes", "actions", "hold_threads", "pg_workers"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1: {getattr(args, name)}")
    backends = args.backends.split(",")
    unknown = sorted(set(backends) - {"sqlite", "postgresql"})
    if unknown:
        parser.error(f"--backends: unknown backend {unknown[0]!r} (sqlite, postgresql)")

    Service.listen = args.listen
    leasing: dict[str, Any] = {}
    if args.lease_max_credits is not None:
        leasing["lease_max_credits"] = args.lease_max_credits
    print(f"load at start: {_uptime()}")
    settings = LeaseSettings(**leasing)
    print(
        f"services on loopback (--{args.listen}); tenant B's wallet: lease_max_credits="
        f"{settings.lease_max_credits:,}, lease_ttl={settings.lease_ttl:g}, "
        f"lease_idle={settings.lease_idle:g}; an action costs {CREDITS} credits"
    )
    with tempfile.TemporaryDirectory() as tmp, _tenants(str(Path(tmp) / "w.db")) as service:
        server, key_a, key_b = service
        caller_cost(server.url, key_a, key_b, args.calls, args.rounds, args.passes, leasing)
        print(
            "2. round trips to the service per 1,000 actions at steady state (holds + releases "
            "+ policy fetches), tenant B, actions as fast as the threads go"
        )
        for threads in (1, 4):
            round_trips(server.url, key_b, threads, args.warmup, args.actions, leasing)
        print("   target: <= 20 per 1,000 actions")
    holds(backends, args.pg_workers, args.hold_threads, args.hold_seconds)
    print(f"load at end: {_uptime()}")


if __name__ == "__main__":
    main()
