"""Faults: killed servers, lost answers, racing servers, shutdown mid-batch.

In every case nothing is lost and nothing is booked twice. Senders here resend a batch until
they get an answer, as the SDK's exporter does; a test of the exporter itself is in
``test_server_e2e.py``.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import threading

import httpx
import pytest
from server_fixtures import PostgresCluster, ServerProcess, db_url, pg_cluster, running_server

from flexcredits_sdk._records import UsageRecord, new_id

__all__ = ["db_url", "pg_cluster"]

T0 = 1_780_000_000 * 10**9


def batch(n: int, credits: int = 20) -> list[UsageRecord]:
    return [
        UsageRecord(new_id(), "answer", "standard", 1, credits, "production", {}, None, T0, 1)
        for _ in range(n)
    ]


def body(records: list[UsageRecord]) -> dict[str, object]:
    return {"records": [r.to_dict() for r in records]}


def make_tenant(server: ServerProcess, name: str = "acme") -> str:
    return server.tenant(name)


def send_until_answered(url: str, key: str, records: list[UsageRecord], tries: int = 200) -> int:
    """Send a batch until a 200 answer; return how many records it says were accepted."""
    payload = body(records)
    for _ in range(tries):
        try:
            with httpx.Client(base_url=url, timeout=10.0) as client:
                response = client.post(
                    "/v1/records", json=payload, headers={"Authorization": f"Bearer {key}"}
                )
        except httpx.TransportError:
            continue
        if response.status_code == 200:
            accepted: int = response.json()["accepted"]
            return accepted
    raise AssertionError("the batch was never answered")


def totals(server: ServerProcess, key: str) -> tuple[int, int]:
    with server.client(key) as client:
        used = client.get("/v1/balance").json()["used"]
        rows = client.get("/v1/usage").json()["rows"]
    return used, rows[0]["records"] if rows else 0


def test_sigkill_and_restart_lose_nothing_and_book_nothing_twice(db_url: str) -> None:
    with running_server(db_url) as server:
        key = make_tenant(server)
        batches = [batch(400) for _ in range(24)]
        accepted = [0] * len(batches)

        def sender(first: int) -> None:
            for i in range(first, len(batches), 4):
                accepted[i] = send_until_answered(server.url, key, batches[i])

        threads = [threading.Thread(target=sender, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        # Kill while batches are in flight: after some were booked, with more arriving.
        server.wait_for(lambda logs: sum(e.get("event") == "ingest.start" for e in logs) >= 6)
        server.kill()
        server.start()
        for t in threads:
            t.join(120)
        assert not any(t.is_alive() for t in threads)
        used, count = totals(server, key)
    assert count == 24 * 400
    assert used == 24 * 400 * 20
    assert sum(accepted) <= count  # a batch answered after the restart may show duplicates


class _AnswerDroppingProxy:
    """A TCP proxy that withholds the server's answers on the connection of the first batch
    (``POST /v1/records``) it forwards, from that batch on."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.forwarded = 0
        self.withheld = threading.Event()
        self._batch_seen = False
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []
        self._acceptor = threading.Thread(target=self._accept, daemon=True)
        self._acceptor.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.forwarded += 1
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            self._sockets += [client, upstream]
            dropping: list[bool] = []  # set once this connection carries the first batch
            for src, dst, is_answer in ((client, upstream, False), (upstream, client, True)):
                t = threading.Thread(
                    target=self._pipe, args=(src, dst, dropping, is_answer), daemon=True
                )
                t.start()
                self._threads.append(t)

    def _pipe(
        self, src: socket.socket, dst: socket.socket, dropping: list[bool], is_answer: bool
    ) -> None:
        try:
            while data := src.recv(65536):
                if not is_answer and not self._batch_seen and data.startswith(b"POST /v1/records"):
                    self._batch_seen = True  # before it is forwarded: its answer comes after
                    dropping.append(True)
                if is_answer and dropping:
                    self.withheld.set()  # the server answered: it has committed
                    continue
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        self._acceptor.join(10)
        for s in self._sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
        for t in self._threads:
            t.join(10)
        for s in self._sockets:
            s.close()


def test_a_client_timing_out_after_the_commit_books_once(db_url: str) -> None:
    with running_server(db_url) as server:
        key = make_tenant(server)
        proxy = _AnswerDroppingProxy(server.port)
        records = batch(300)
        headers = {"Authorization": f"Bearer {key}"}
        url = f"http://127.0.0.1:{proxy.port}"
        with httpx.Client(base_url=url, headers=headers, timeout=30.0) as client:
            # The answer is withheld; the client gives up once the server has answered.
            timeout = httpx.Timeout(30.0, read=2.0)
            with pytest.raises(httpx.ReadTimeout):
                client.post("/v1/records", json=body(records), timeout=timeout)
            assert proxy.withheld.wait(30)  # the server has committed and answered
            retry = client.post("/v1/records", json=body(records))
        proxy.close()
        assert retry.json()["duplicates"] == 300
        assert totals(server, key) == (300 * 20, 300)


@pytest.mark.parametrize("rounds", [3])
def test_two_servers_ingesting_the_same_batch_at_once_book_it_once(
    db_url: str, rounds: int
) -> None:
    with running_server(db_url) as one, running_server(db_url) as two:
        key = make_tenant(one)
        accepted: list[int] = []
        for _ in range(rounds):
            records = batch(2000)
            start = threading.Barrier(2)

            def send(
                server: ServerProcess,
                records: list[UsageRecord] = records,
                start: threading.Barrier = start,
            ) -> None:
                start.wait()
                accepted.append(send_until_answered(server.url, key, records))

            threads = [threading.Thread(target=send, args=(s,)) for s in (one, two)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
        assert sum(accepted) == rounds * 2000
        assert totals(one, key) == totals(two, key) == (rounds * 2000 * 20, rounds * 2000)


def test_graceful_shutdown_finishes_the_batch_in_flight(db_url: str) -> None:
    with running_server(db_url) as server:
        key = make_tenant(server)
        records = batch(5000)
        answer: list[httpx.Response] = []

        def send() -> None:
            with server.client(key) as client:
                answer.append(client.post("/v1/records", json=body(records)))

        sender = threading.Thread(target=send)
        sender.start()
        server.wait_for(lambda logs: any(e.get("event") == "ingest.start" for e in logs))
        code = server.stop()
        sender.join(60)
        assert code in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once it is done
        assert any(e.get("event") == "shutdown" for e in server.logs)
        assert answer[0].status_code == 200
        assert answer[0].json()["accepted"] == 5000
        server.start()
        assert totals(server, key) == (5000 * 20, 5000)


def test_readiness_follows_the_database(pg_cluster: PostgresCluster) -> None:
    import psycopg

    db = pg_cluster.create_database()
    name = db.split("@/")[1].split("?")[0]
    with running_server(db) as server, server.client() as client:
        assert client.get("/readyz").status_code == 200
        with psycopg.connect(f"host={pg_cluster.root} user=postgres dbname=postgres") as admin:
            admin.autocommit = True
            admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
        down = client.get("/readyz")
        assert down.status_code == 503
        assert down.json()["error"]["code"] == "unavailable"
        assert client.get("/healthz").status_code == 200
