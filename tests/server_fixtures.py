"""Real wallet servers and databases for the server tests.

`PostgresCluster` runs a throwaway PostgreSQL (initdb + pg_ctl from Debian's packages) in a
temporary directory, listening only on a unix socket. `ServerProcess` runs the wallet service
(``python -m flexcredits_sdk.server serve``) on a loopback socket that the test binds, so the
port is known before the server starts and survives a restart of the server.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

ADMIN_KEY = "admin-key-for-tests-0123456789"
TIMEOUT = 60.0


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


class PostgresCluster:
    """A PostgreSQL cluster of its own, in a temporary directory, on a unix socket.

    Args:
        durable: Keep PostgreSQL's default durability (fsync, synchronous commit), as a
            benchmark should; tests turn it off, since nothing here outlives them.
    """

    def __init__(self, *, durable: bool = False) -> None:
        initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
        if initdb is None or pg_ctl is None:
            raise FileNotFoundError("PostgreSQL's initdb and pg_ctl are not installed")
        self._pg_ctl = pg_ctl
        self.root = Path(tempfile.mkdtemp(prefix="flexcredits-pg-"))
        self.data = self.root / "data"
        self._as: list[str] = []
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            self._as = ["runuser", "-u", "postgres", "--"]
            shutil.chown(self.root, "postgres")
        self._run(initdb, "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync")
        options = f"-k {self.root} -c listen_addresses='' -c max_connections=200"
        if not durable:
            options += " -c fsync=off -c full_page_writes=off -c synchronous_commit=off"
        log = str(self.root / "log")
        self._run(pg_ctl, "start", "-D", str(self.data), "-o", options, "-w", "-l", log)
        self._names = itertools.count(1)

    def _run(self, *cmd: str) -> None:
        subprocess.run([*self._as, *cmd], check=True, capture_output=True, timeout=120)

    def url(self, database: str = "postgres") -> str:
        """Return the ``postgresql://`` URL of `database` in this cluster."""
        return f"postgresql://postgres@/{database}?host={self.root}"

    def create_database(self) -> str:
        """Create a fresh database; return its URL."""
        import psycopg

        name = f"wallet_{next(self._names)}"
        with psycopg.connect(f"host={self.root} user=postgres dbname=postgres") as conn:
            conn.autocommit = True
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        """Stop the cluster and delete its files."""
        with contextlib.suppress(subprocess.SubprocessError):
            subprocess.run(
                [*self._as, self._pg_ctl, "stop", "-D", str(self.data), "-m", "immediate"],
                check=False,
                capture_output=True,
                timeout=60,
            )
        shutil.rmtree(self.root, ignore_errors=True)


def bound_socket() -> socket.socket:
    """Return a listening TCP socket on 127.0.0.1 with an ephemeral port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(512)
    sock.set_inheritable(True)
    return sock


class ServerProcess:
    """The wallet service in a subprocess, serving a socket the test owns.

    Args:
        db: The database (SQLite path or PostgreSQL URL); ``None``: the server's default.
        env: Extra environment variables for the server.
        workers: uvicorn worker processes.
        cwd: The server's working directory.
    """

    def __init__(
        self,
        db: str | None,
        *,
        env: dict[str, str] | None = None,
        workers: int = 1,
        cwd: Path | None = None,
    ) -> None:
        self.db = db
        self.cwd = cwd
        self.sock = bound_socket()
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.workers = workers
        self._env = {
            **os.environ,
            "FLEXCREDITS_ADMIN_KEY": ADMIN_KEY,
            "FLEXCREDITS_WEBHOOK_INTERVAL": "0.05",
            "FLEXCREDITS_WEBHOOK_BACKOFF": "0.05",
            "FLEXCREDITS_WALLET_LOG_LEVEL": "DEBUG",
            **(env or {}),
        }
        self.logs: list[dict[str, Any]] = []
        self._changed = threading.Condition()
        self.proc: subprocess.Popen[bytes] | None = None
        self._clients: list[httpx.Client] = []
        self.start()

    def start(self) -> None:
        """Start the server and wait until every worker is ready."""
        fd = self.sock.fileno()
        cmd = [sys.executable, "-m", "flexcredits_sdk.server", "serve"]
        cmd += [] if self.db is None else ["--db", self.db]
        cmd += ["--fd", str(fd), "--workers", str(self.workers), "--log-level", "DEBUG"]
        with self._changed:
            self.logs.clear()
        self.proc = subprocess.Popen(
            cmd,
            env=self._env,
            cwd=self.cwd,
            pass_fds=(fd,),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,  # its own process group: signals reach every worker
        )
        threading.Thread(target=self._read, args=(self.proc,), daemon=True).start()
        self.wait_for(lambda logs: sum(e.get("event") == "startup" for e in logs) >= self.workers)

    def _read(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            try:
                entry = json.loads(line)
            except ValueError:
                entry = {"message": line.decode(errors="replace").rstrip()}
            with self._changed:
                self.logs.append(entry)
                self._changed.notify_all()
        proc.stderr.close()
        with self._changed:
            self.logs.append({"event": "exited"})
            self._changed.notify_all()

    def wait_for(
        self, predicate: Callable[[list[dict[str, Any]]], bool], timeout: float = TIMEOUT
    ) -> None:
        """Block until `predicate(logs)` holds, or fail the test with the logs."""
        with self._changed:
            if not self._changed.wait_for(lambda: predicate(self.logs), timeout):
                raise AssertionError(f"server never got there; logs: {self.logs[-20:]}")

    def client(self, key: str | None = None, **kwargs: Any) -> httpx.Client:
        """Return an HTTP client of this server, authenticated with `key`."""
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        client = httpx.Client(base_url=self.url, headers=headers, timeout=TIMEOUT, **kwargs)
        self._clients.append(client)
        return client

    def tenant(self, name: str, **body: Any) -> str:
        """Create tenant `name` through the admin API; return its key."""
        with self.client(ADMIN_KEY) as admin:
            response = admin.post("/v1/tenants", json={"name": name, **body})
            assert response.status_code == 200, response.text
            key: str = response.json()["api_key"]
            return key

    def grant(self, tenant: str, credits: int, **body: Any) -> dict[str, Any]:
        """Grant credits through the admin API."""
        with self.client(ADMIN_KEY) as admin:
            response = admin.post(
                "/v1/grants", params={"tenant": tenant}, json={"credits": credits, **body}
            )
            assert response.status_code == 200, response.text
            result: dict[str, Any] = response.json()
            return result

    def _signal(self, sig: int) -> None:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)

    def kill(self) -> None:
        """SIGKILL the server and every worker of it, as a crash of its machine would."""
        assert self.proc is not None
        self._signal(signal.SIGKILL)
        self.proc.wait(TIMEOUT)
        self.wait_for(lambda logs: bool(logs) and logs[-1].get("event") == "exited")

    def stop(self) -> int:
        """SIGTERM the server and wait for it to exit; return its exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.terminate()
        return self.proc.wait(TIMEOUT)

    def close(self) -> None:
        """Stop the server, close its socket and every client made by `client`."""
        for client in self._clients:
            client.close()
        if self.proc is not None:
            self._signal(signal.SIGKILL)
            self.proc.wait(TIMEOUT)
            self.wait_for(lambda logs: bool(logs) and logs[-1].get("event") == "exited")
        self.sock.close()


def postgres_or_fail() -> PostgresCluster:
    """Start a cluster; skip when PostgreSQL is missing, except in CI, where that fails."""
    try:
        return PostgresCluster()
    except FileNotFoundError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"{exc}: CI must run the PostgreSQL leg (.ci/services.sh installs it)")
        pytest.skip(str(exc))


@contextlib.contextmanager
def running_server(db: str, **kwargs: Any) -> Iterator[ServerProcess]:
    """Run a wallet server for the duration of a with-block."""
    server = ServerProcess(db, **kwargs)
    try:
        yield server
    finally:
        server.close()


BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PostgresCluster]:
    """A PostgreSQL cluster shared by the session's tests (each uses its own database)."""
    cluster = postgres_or_fail()
    yield cluster
    cluster.stop()


def new_database(request: pytest.FixtureRequest, backend: str, directory: Path) -> str:
    """Return a fresh, empty database of `backend`."""
    if backend == "sqlite":
        return str(directory / f"wallet-{next(_files)}.db")
    cluster: PostgresCluster = request.getfixturevalue("pg_cluster")
    return cluster.create_database()


_files = itertools.count(1)


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database, once on SQLite and once on PostgreSQL."""
    return new_database(request, request.param, tmp_path)


@pytest.fixture(scope="module", params=BACKENDS)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """A wallet server shared by a module's tests, once per backend; tests use own tenants."""
    db = new_database(request, request.param, tmp_path_factory.mktemp("wallet"))
    with running_server(db) as process:
        yield process
