"""The SDK's exporter (`HttpWallet`) against a running wallet service, in real agent processes.

Each agent process (``server_agent.py``) meters actions through the exporter's durable outbox
and prints what it metered; the wallet's totals must equal the sum, to the credit.
"""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from server_fixtures import ServerProcess, db_url, pg_cluster, running_server
from test_server_faults import _AnswerDroppingProxy

__all__ = ["db_url", "pg_cluster"]

AGENT = str(Path(__file__).with_name("server_agent.py"))


def start_agents(
    url: str, key: str, outbox: Path, actions: int, count: int, timeout: float = 30.0
) -> list[subprocess.Popen[str]]:
    return [
        subprocess.Popen(
            [
                sys.executable,
                AGENT,
                url,
                key,
                str(outbox / f"agent-{i}"),
                str(actions),
                "sandbox" if i % 2 else "production",
                f"agent-{i}",
                str(timeout),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(count)
    ]


def finish(agents: list[subprocess.Popen[str]]) -> list[dict[str, Any]]:
    reports = []
    for agent in agents:
        out, _ = agent.communicate(timeout=300)
        assert agent.returncode == 0
        reports.append(json.loads(out))
    return reports


def assert_wallet_matches(server: ServerProcess, key: str, reports: list[dict[str, Any]]) -> None:
    for report in reports:
        assert report["delivered"] is True
        assert (report["rejected"], report["dropped"], report["in_outbox"]) == (0, 0, 0)
    with server.client(key) as client:
        balance = client.get("/v1/balance").json()
        by_agent = client.get("/v1/usage", params={"group_by": "agent"}).json()["rows"]
    metered = sum(Decimal(r["credits"]) for r in reports)
    assert sum(row["records"] for row in by_agent) == sum(r["records"] for r in reports)
    assert sum(Decimal(str(row["credits"])) for row in by_agent) == metered
    assert Decimal(str(balance["used"])) == metered
    for i, report in enumerate(reports):
        row = next(row for row in by_agent if row["key"] == {"agent": f"agent-{i}"})
        assert row["records"] == report["records"]
        assert Decimal(str(row["credits"])) == Decimal(report["credits"])


def test_200000_actions_from_4_processes_are_booked_exactly(db_url: str, tmp_path: Path) -> None:
    workers = 1 if "://" not in db_url else 4  # SQLite: one process; PostgreSQL: several
    with running_server(db_url, workers=workers) as server:
        key = server.tenant("acme")
        reports = finish(start_agents(server.url, key, tmp_path, 50_000, 4))
        assert sum(r["records"] for r in reports) == 200_000
        assert_wallet_matches(server, key, reports)
        with server.client(key) as client:
            envs = client.get("/v1/usage", params={"group_by": "environment"}).json()["rows"]
        assert {row["key"]["environment"]: row["credits"] for row in envs} == {
            "production": 100_000 * 20,
            "sandbox": 100_000 * 16,
        }


def test_exporters_lose_nothing_when_the_server_is_killed(db_url: str, tmp_path: Path) -> None:
    with running_server(db_url) as server:
        key = server.tenant("acme")
        agents = start_agents(server.url, key, tmp_path, 20_000, 2)
        server.wait_for(lambda logs: sum(e.get("event") == "ingest.start" for e in logs) >= 2)
        server.kill()
        server.start()
        reports = finish(agents)
        assert_wallet_matches(server, key, reports)


@pytest.mark.parametrize("actions", [3_000])
def test_an_exporter_timing_out_after_the_commit_books_once(
    db_url: str, tmp_path: Path, actions: int
) -> None:
    with running_server(db_url) as server:
        key = server.tenant("acme")
        proxy = _AnswerDroppingProxy(server.port)
        try:
            url = f"http://127.0.0.1:{proxy.port}"
            # The exporter gives up on the withheld answer after 2 seconds and sends again.
            reports = finish(start_agents(url, key, tmp_path, actions, 1, timeout=2.0))
            assert proxy.withheld.wait(30)
        finally:
            proxy.close()
        assert reports[0]["duplicates"] > 0  # the resent batch had been booked already
        assert_wallet_matches(server, key, reports)
