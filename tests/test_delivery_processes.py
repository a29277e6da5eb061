"""Delivery across fork and multiprocessing, in real agent processes (``process_agent.py``)
against a real wallet service: every record metered is booked, once."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from server_fixtures import ServerProcess, running_server

AGENT = str(Path(__file__).with_name("process_agent.py"))

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


@pytest.fixture(scope="module")
def wallet_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(str(tmp_path_factory.mktemp("wallet") / "wallet.db")) as server:
        yield server


def run_agent(
    server: ServerProcess, tmp_path: Path, scenario: str, count: int
) -> tuple[str, list[str]]:
    """Run the agent as a new tenant; return the tenant's key and the agent's report lines."""
    key = server.tenant(f"{scenario}-{tmp_path.name}")
    report = tmp_path / "report.txt"
    outbox = str(tmp_path / "outbox")
    agent = subprocess.run(
        [sys.executable, AGENT, scenario, server.url, key, outbox, str(report), str(count)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert agent.returncode == 0, agent.stderr[-3000:]
    return key, report.read_text().splitlines()


def booked(server: ServerProcess, key: str) -> int:
    with server.client(key) as client:
        rows = client.get("/v1/usage").json()["rows"]
    return sum(int(row["records"]) for row in rows)


def metered(lines: list[str]) -> int:
    return sum(int(line.split()[1]) for line in lines if line.startswith("metered "))


def test_forks_of_a_busy_parent_never_stall_and_lose_nothing(
    wallet_service: ServerProcess, tmp_path: Path
) -> None:
    key, lines = run_agent(wallet_service, tmp_path, "forks", 25)
    forks = [float(line.split()[1]) for line in lines if line.startswith("fork ")]
    assert len(forks) == 25
    assert max(forks) < 5.0  # the busy timeout of an inherited transaction is 30 s
    assert metered(lines) > 25 * 100
    assert booked(wallet_service, key) == metered(lines)


def test_children_given_a_client_factory_make_their_own_and_send(
    wallet_service: ServerProcess, tmp_path: Path
) -> None:
    key, lines = run_agent(wallet_service, tmp_path, "factory", 4)
    assert [line for line in lines if line.startswith("error ")] == ["error None"] * 4
    assert booked(wallet_service, key) == metered(lines)


def test_children_never_send_through_the_parents_client(
    wallet_service: ServerProcess, tmp_path: Path
) -> None:
    key, lines = run_agent(wallet_service, tmp_path, "given", 4)
    errors = [line for line in lines if line.startswith("error ")]
    assert len(errors) == 4
    assert all("is a fork of it" in line and "client=<a function" in line for line in errors)
    assert booked(wallet_service, key) == metered(lines)  # the parent sent the children's


@pytest.mark.parametrize(("scenario", "count"), [("process", 11), ("pool-fork", 20)])
def test_multiprocessing_children_deliver_before_they_end(
    wallet_service: ServerProcess, tmp_path: Path, scenario: str, count: int
) -> None:
    key, lines = run_agent(wallet_service, tmp_path, scenario, count)
    assert metered(lines) == {"process": 2_200, "pool-fork": 2_000}[scenario]
    assert booked(wallet_service, key) == metered(lines)


def test_spawned_pool_workers_deliver_before_they_end(
    wallet_service: ServerProcess, tmp_path: Path
) -> None:
    key, lines = run_agent(wallet_service, tmp_path, "pool-spawn", 20)
    assert metered(lines) == 2_000
    assert booked(wallet_service, key) == 2_000


FORK_DURING_BUILD = """
import os, sys, time, warnings
import flexcredits_sdk as fc
meter = fc.Meter()  # FLEXCREDITS_URL is set: the wallet is built on a thread of its own
with meter.action("answer"):
    pass
warnings.simplefilter("ignore", DeprecationWarning)
pid = os.fork()  # most likely while that thread is still building the wallet
if pid == 0:
    meter.flush(timeout=2)
    os._exit(0)
for _ in range(200):
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        sys.exit(os.waitstatus_to_exitcode(status))
    time.sleep(0.1)
os.kill(pid, 9)
sys.exit("the child hung")
"""


def test_a_fork_while_the_environments_wallet_is_being_built_does_not_hang_the_child(
    tmp_path: Path,
) -> None:
    env = {
        **os.environ,
        "FLEXCREDITS_URL": "http://127.0.0.1:9",  # nothing listens there
        "FLEXCREDITS_OUTBOX_DIR": str(tmp_path / "outbox"),
    }
    for _ in range(3):
        run = subprocess.run(
            [sys.executable, "-c", FORK_DURING_BUILD],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert run.returncode == 0, run.stderr[-2000:]
