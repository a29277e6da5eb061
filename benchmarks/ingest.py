"""Ingestion into the wallet service, end to end, on SQLite and on PostgreSQL.

    python benchmarks/ingest.py [--actions N] [--agents A] [--backends sqlite,postgresql]

For each backend: a real server (uvicorn, 1 worker on SQLite, 4 on PostgreSQL, on loopback),
A agent processes that each meter N actions through the SDK's exporter (`HttpWallet`, durable
outbox), and a reader that asks for the balance the whole time. Reported: records booked per
second end to end (from the agents' start to the last acknowledgement) and while the server was
busy (its first to last batch), the balance read's p50 and p99 latency under that load, and
where one 5,000-record batch spends its time inside the service. PostgreSQL runs in a
throwaway cluster (Debian's ``initdb``/``pg_ctl``) with its default durability settings.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

TESTS = Path(__file__).resolve().parent.parent / "tests"
sys.path.insert(0, str(TESTS))

from server_fixtures import PostgresCluster, ServerProcess  # noqa: E402

from flexcredits_sdk._records import UsageRecord, new_id  # noqa: E402

AGENT = TESTS / "server_agent.py"


def _reader(url: str, key: str, stop: threading.Event, latencies: list[float]) -> None:
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}) as client:
        while not stop.is_set() and len(latencies) < 100_000:
            start = time.perf_counter()
            client.get("/v1/balance").raise_for_status()
            latencies.append(time.perf_counter() - start)
            stop.wait(0.01)


def _server_seconds(logs: list[dict[str, Any]]) -> float:
    def at(entry: dict[str, Any]) -> float:
        stamp = _dt.datetime.strptime(entry["time"], "%Y-%m-%dT%H:%M:%S.%fZ")
        return stamp.replace(tzinfo=_dt.UTC).timestamp()

    starts = [at(e) for e in logs if e.get("event") == "ingest.start"]
    ends = [at(e) for e in logs if e.get("event") == "ingest.done"]
    return max(ends) - min(starts)


def run(
    backend: str, db: str, workers: int, actions: int, agents: int, root: Path
) -> dict[str, Any]:
    """Meter `agents` x `actions` actions into a fresh server; return the figures."""
    env = {"FLEXCREDITS_WALLET_LOG_LEVEL": "DEBUG", "FLEXCREDITS_WEBHOOK_INTERVAL": "1"}
    server = ServerProcess(db, workers=workers, env=env)
    try:
        key = server.tenant("bench")
        server.grant("bench", 10**9)
        stop, latencies = threading.Event(), []  # type: ignore[var-annotated]
        reader = threading.Thread(target=_reader, args=(server.url, key, stop, latencies))
        start = time.perf_counter()
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    str(AGENT),
                    server.url,
                    key,
                    str(root / f"{backend}-{i}"),
                    str(actions),
                    "production",
                    f"agent-{i}",
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
            for i in range(agents)
        ]
        reader.start()
        reports = [json.loads(p.communicate(timeout=600)[0]) for p in procs]
        elapsed = time.perf_counter() - start
        stop.set()
        reader.join()
        with server.client(key) as client:
            booked = client.get("/v1/usage").json()["rows"][0]["records"]
        total = actions * agents
        assert booked == total, (booked, total)
        assert all(r["delivered"] for r in reports)
        ordered = sorted(latencies)
        return {
            "backend": f"{backend} ({workers} worker{'s' if workers > 1 else ''})",
            "records": total,
            "end_to_end": total / elapsed,
            "server_busy": total / _server_seconds(server.logs),
            "p50_ms": statistics.median(ordered) * 1000,
            "p99_ms": ordered[int(len(ordered) * 0.99) - 1] * 1000,
            "reads": len(ordered),
        }
    finally:
        server.close()


def breakdown(db: str) -> dict[str, float]:
    """Return where one 5,000-record batch spends its time inside the service, in ms."""
    from flexcredits_sdk._wire import IngestRequest
    from flexcredits_sdk.server import WalletStore
    from flexcredits_sdk.server._ingest import _check, _price
    from flexcredits_sdk.server._insert import insert_records
    from flexcredits_sdk.server._ledgers import change_ledger

    store = WalletStore(db)
    store.migrate()
    store.create_tenant("phases")
    tenant = store.tenant("phases").id
    times: dict[str, list[float]] = {}

    def clock(name: str, start: float) -> float:
        now = time.perf_counter()
        times.setdefault(name, []).append((now - start) * 1000)
        return now

    for _ in range(5):
        now = time.time_ns()
        body = json.dumps(
            {
                "records": [
                    UsageRecord(
                        new_id(),
                        "answer",
                        "standard",
                        1,
                        20,
                        "production",
                        {"team": "a"},
                        None,
                        now,
                        1000,
                    ).to_dict()
                    for _ in range(5000)
                ]
            }
        ).encode()
        t = time.perf_counter()
        batch = IngestRequest.model_validate_json(body)
        t = clock("validate (pydantic)", t)
        nul = b"\\u0000" in body
        records = [_check(m, nul) for m in batch.records]
        t = clock("to records", t)
        pricer = store.cards.pricer(tenant)
        records = [_price(r, pricer, now)[0] for r in records]  # type: ignore[arg-type, index]
        t = clock("price", t)
        after: list[Any] = []
        with store.engine.connect().execution_options(flexcredits_write=True) as conn:
            with conn.begin():
                inserted = insert_records(conn, tenant, records)  # type: ignore[arg-type]
                t = clock("insert rows", t)
                added = [r for r in records if r.id in inserted]  # type: ignore[union-attr]

                def change(ledger: Any, added: Any = added, now: int = now) -> Any:
                    return None, ledger.book_many(added, now)

                change_ledger(conn, tenant, store._cache, store.rate_card, change, after)
                t = clock("ledger update", t)
            t = clock("commit", t)
        json.dumps({"results": [{"id": r.id, "status": "accepted"} for r in added]})
        clock("answer JSON", t)
    store.close()
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--actions", type=int, default=50_000, help="actions per agent")
    parser.add_argument("--agents", type=int, default=4)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--pg-workers", type=int, default=4, help="server processes on PostgreSQL")
    args = parser.parse_args()
    rows, phases = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for backend in args.backends.split(","):
            if backend == "sqlite":
                db, workers = str(root / "wallet.db"), 1
                phases[backend] = breakdown(str(root / "phases.db"))
            else:
                cluster = PostgresCluster(durable=True)
                db, workers = cluster.create_database(), args.pg_workers
                phases[backend] = breakdown(cluster.create_database())
            try:
                rows.append(run(backend, db, workers, args.actions, args.agents, root))
            finally:
                if backend != "sqlite":
                    cluster.stop()
    header = f"{'backend':<28}{'records':>9}{'e2e rec/s':>11}{'busy rec/s':>12}"
    print(header + f"{'read p50':>10}{'read p99':>10}{'reads':>7}")
    for r in rows:
        print(
            f"{r['backend']:<28}{r['records']:>9,}{r['end_to_end']:>11,.0f}"
            f"{r['server_busy']:>12,.0f}{r['p50_ms']:>8.1f}ms{r['p99_ms']:>8.1f}ms{r['reads']:>7}"
        )
    print("\none 5,000-record batch inside the service (median of 5, ms):")
    for backend, times in phases.items():
        parts = ", ".join(f"{name} {ms:.1f}" for name, ms in times.items())
        print(f"  {backend}: {parts}")


if __name__ == "__main__":
    main()
