"""The spend-control guarantee, with real agent processes and real wallet services.

Agents in separate processes meter actions through `HttpWallet` (leases from the service's
holds) against one tenant. On SQLite one service process serves them; on PostgreSQL two service
processes share the database, half of the agents on each. The service must never let the
balance go below zero, must refuse every action past the credit or a hard budget before its
body runs, and must book every action that ran exactly once.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from server_fixtures import BACKENDS, ServerProcess, new_database, pg_cluster, running_server

__all__ = ["pg_cluster"]

AGENT = Path(__file__).resolve().parent / "lease_agent.py"
TIMEOUT = 120.0
_names = itertools.count(1)


@pytest.fixture(params=BACKENDS)
def services(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[list[ServerProcess]]:
    """One service process on SQLite; two sharing one database on PostgreSQL."""
    db = new_database(request, request.param, tmp_path)
    with contextlib.ExitStack() as stack:
        count = 1 if request.param == "sqlite" else 2
        yield [stack.enter_context(running_server(db)) for _ in range(count)]


def start_agent(
    service: ServerProcess, key: str, outbox: Path, **config: Any
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(AGENT), service.url, key, str(outbox), json.dumps(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )


def result(agent: subprocess.Popen[str]) -> dict[str, Any]:
    out, err = agent.communicate(timeout=TIMEOUT)
    assert agent.returncode == 0, err
    answer: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return answer


class Sampler:
    """Reads the balance every few milliseconds while agents run: its lowest figures."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client
        self.lowest_credits: float = float("inf")
        self.lowest_free: float = float("inf")  # credits less what holds reserve
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            data = self.client.get("/v1/balance").json()
            credits, held = float(data["credits"]), float(data["held"])
            self.lowest_credits = min(self.lowest_credits, credits)
            self.lowest_free = min(self.lowest_free, credits - held)
            self.samples += 1
            self._stop.wait(0.005)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def wait_until(check: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.05)


def booked_ids(client: httpx.Client) -> list[str]:
    ids: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 10_000}
        if cursor:
            params["cursor"] = cursor
        page = client.get("/v1/records", params=params).json()
        ids += [r["id"] for r in page["records"]]
        cursor = page["next_cursor"]
        if not cursor:
            return ids


def balance(client: httpx.Client) -> dict[str, Any]:
    data: dict[str, Any] = client.get("/v1/balance").json()
    return data


def test_sixteen_threads_in_four_processes_run_exactly_what_the_credit_pays_for(
    services: list[ServerProcess], tmp_path: Path
) -> None:
    name = f"g{next(_names)}"
    key = services[0].tenant(name, overdraft="deny")
    services[0].grant(name, 10_000)
    client = services[-1].client(key)
    stop = tmp_path / "stop"
    sampler = Sampler(client)
    agents = [
        start_agent(
            services[i % len(services)],
            key,
            tmp_path / f"outbox-{i}",
            threads=4,
            tags={"agent": f"a{i}"},
            stop_file=str(stop),
            lease_idle=0.5,
        )
        for i in range(4)
    ]
    try:
        wait_until(
            lambda: balance(client)["credits"] == 0 and balance(client)["held"] == 0,
            "every credit spent and no hold left",
        )
    finally:
        stop.touch()
        results = [result(agent) for agent in agents]
        sampler.stop()
    assert sum(r["bodies"] for r in results) == 500
    assert all(r["delivered"] for r in results)
    assert sum(r["refused"] for r in results) > 0  # every thread asked past the end
    assert any("overdraft policy is 'deny'" in m for r in results for m in r["refusals"])
    final = balance(client)
    assert (final["credits"], final["used"], final["held"]) == (0, 10_000, 0)
    ids = booked_ids(client)
    assert len(ids) == len(set(ids)) == 500
    assert sampler.samples > 10
    assert sampler.lowest_credits >= 0
    assert sampler.lowest_free >= 0
    # Most actions were authorized in the agents' own memory: far fewer holds than actions.
    assert sum(r["leases"]["holds"] for r in results) < 250


def test_a_hard_budget_stops_its_department_and_no_other(
    services: list[ServerProcess], tmp_path: Path
) -> None:
    name = f"g{next(_names)}"
    key = services[0].tenant(name)
    services[0].grant(name, 100_000)
    client = services[-1].client(key)
    answer = client.post(
        "/v1/budgets", json={"credits": 1_000, "tags": {"department": "service"}, "hard": True}
    )
    assert answer.status_code == 200, answer.text
    stop = tmp_path / "stop"
    service_agents = [
        start_agent(
            services[i % len(services)],
            key,
            tmp_path / f"service-{i}",
            threads=4,
            tags={"department": "service", "agent": f"s{i}"},
            stop_file=str(stop),
            lease_idle=0.5,
        )
        for i in range(2)
    ]
    sales_agents = [
        start_agent(
            services[i % len(services)],
            key,
            tmp_path / f"sales-{i}",
            threads=2,
            tags={"department": "sales"},
            actions=100,
        )
        for i in range(2)
    ]
    try:
        sales = [result(agent) for agent in sales_agents]

        def service_spent() -> bool:
            budgets = client.get("/v1/budgets").json()["budgets"]
            (budget,) = budgets
            return bool(budget["spent"] == 1_000 and budget["held"] == 0)

        wait_until(service_spent, "the service budget spent and no hold left in it")
    finally:
        stop.touch()
        service = [result(agent) for agent in service_agents]
    assert sum(r["bodies"] for r in service) == 50
    assert sum(r["bodies"] for r in sales) == 400  # the other department spent freely
    assert sum(r["refused"] for r in sales) == 0
    assert any("budget" in m for r in service for m in r["refusals"])
    final = balance(client)
    assert (final["used"], final["held"]) == ((50 + 400) * 20, 0)
    assert len(set(booked_ids(client))) == 450


def test_a_killed_agent_s_lease_expires_and_its_credit_goes_to_the_others(
    services: list[ServerProcess], tmp_path: Path
) -> None:
    name = f"g{next(_names)}"
    key = services[0].tenant(name, overdraft="deny")
    services[0].grant(name, 1_000)
    client = services[-1].client(key)
    victim = start_agent(
        services[0],
        key,
        tmp_path / "victim",
        threads=1,
        actions=5,
        hold=True,
        lease_ttl=3,
        lease_max_credits=400,
    )
    assert victim.stdout is not None
    ready = json.loads(victim.stdout.readline())
    assert ready["ready"] == 5
    (lease,) = ready["leases"]
    before = balance(client)
    assert before["used"] == 100  # its five records arrived
    assert before["held"] == lease["remaining"] > 0  # and it still holds a lease
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(TIMEOUT)
    victim.stdout.close()
    assert victim.stderr is not None
    victim.stderr.close()
    wait_until(lambda: balance(client)["held"] == 0, "the dead agent's lease expired", 30)
    assert client.get(f"/v1/holds/{lease['hold_id']}").json()["status"] == "expired"

    stop = tmp_path / "stop"
    heir = start_agent(
        services[-1],
        key,
        tmp_path / "heir",
        threads=2,
        stop_file=str(stop),
        lease_idle=0.5,
    )
    try:
        wait_until(lambda: balance(client)["credits"] == 0, "the rest spent")
    finally:
        stop.touch()
        after = result(heir)
    assert after["bodies"] == 45  # everything the dead agent did not spend
    final = balance(client)
    assert (final["credits"], final["used"], final["held"]) == (0, 1_000, 0)
    ids = booked_ids(client)
    assert len(ids) == len(set(ids)) == 50  # the dead agent's five booked once
