"""The exporter: overflow policies, durability levels, fork safety, exit and the env default."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import pytest
from fixtures import MakeExporter, MakeWallet, new_record
from wallet_stub import StubServer, StubWallet

import flexcredits_sdk as fc
from flexcredits_sdk._export import Exporter
from flexcredits_sdk._export._transport import parse_retry_after
from flexcredits_sdk.wallets._env import EnvWallet


class _Jumps:
    """A monotonic clock that jumps three seconds every time it is read."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 3.0
        return self.now


def test_drop_newest_counts_and_logs_every_drop(
    make_exporter: MakeExporter, caplog: pytest.LogCaptureFixture
) -> None:
    exporter = make_exporter(max_queue=10, overflow="drop_newest", durability="memory")
    for _ in range(15):
        exporter.submit(new_record())
    stats = exporter.stats()
    assert (stats["queued"], stats["dropped"]) == (10, 5)
    assert "5 records dropped" in stats["last_error"]
    assert "records dropped" in caplog.text


def test_block_waits_up_to_its_deadline_then_drops(make_exporter: MakeExporter) -> None:
    exporter = make_exporter(max_queue=10, overflow="block", block_timeout=2.0, clock=_Jumps())
    for _ in range(12):
        exporter.submit(new_record())
    assert exporter.stats()["dropped"] == 2


def test_a_flush_waits_for_the_commit_that_took_its_records(
    make_exporter: MakeExporter, tmp_path: Path
) -> None:
    stub = StubWallet(api_key=None)
    exporter = make_exporter(stub, outbox_path=tmp_path / "o.sqlite3", commit_interval=60.0)
    exporter.start()
    boxes = exporter._boxes
    add = boxes.add
    writing = threading.Event()

    def slow_add(ids: list[str], bodies: list[str]) -> None:
        writing.set()
        time.sleep(0.5)  # the records left the queue and are not in the outbox yet
        add(ids, bodies)

    boxes.add = slow_add  # type: ignore[method-assign]
    for _ in range(100):
        exporter.submit(new_record())
    committing = threading.Thread(target=exporter._committer.commit)
    committing.start()
    assert writing.wait(5)
    assert exporter.flush(timeout=10)
    assert stub.booked == 100  # a flush that returned True delivered every record before it
    committing.join()


def test_block_makes_room_by_committing_to_disk(
    make_exporter: MakeExporter, tmp_path: Path
) -> None:
    stub = StubWallet(api_key=None)
    exporter = make_exporter(
        stub, max_queue=100, outbox_path=tmp_path / "o.sqlite3", block_timeout=5.0
    )
    exporter.start()
    for _ in range(1_000):
        exporter.submit(new_record())
    assert exporter.flush(timeout=10)
    assert exporter.stats()["dropped"] == 0
    assert stub.booked == 1_000
    assert exporter.shutdown(timeout=5)


def test_a_full_outbox_applies_the_policy(make_exporter: MakeExporter, tmp_path: Path) -> None:
    exporter = make_exporter(
        outbox_path=tmp_path / "o.sqlite3",
        max_queue=5,
        max_outbox=20,
        overflow="drop_newest",
    )
    for _ in range(4):
        for _ in range(5):
            exporter.submit(new_record())
        exporter._committer.commit()
    assert exporter.stats()["in_outbox"] == 20
    for _ in range(10):
        exporter.submit(new_record())
    exporter._committer.commit()  # no room on disk: the queue keeps its records
    stats = exporter.stats()
    assert (stats["in_outbox"], stats["queued"], stats["dropped"]) == (20, 5, 5)


def test_queued_records_keep_their_order_through_blocks_and_partial_commits(
    make_exporter: MakeExporter, tmp_path: Path
) -> None:
    exporter = make_exporter(
        outbox_path=tmp_path / "o.sqlite3",
        max_queue=400,
        max_outbox=200,
        overflow="drop_newest",
    )
    records = [tuple(new_record()) for _ in range(300)]  # the meter hands over plain tuples
    for record in records:
        exporter.submit(record)
    assert exporter._queue._in_blocks == 256  # two blocks of columns, 44 records as they came
    assert exporter.stats()["queued"] == 300
    exporter._committer.commit()  # room for 200: a block, and part of the next
    assert (exporter.stats()["in_outbox"], exporter.stats()["queued"]) == (200, 100)
    later = [tuple(new_record()._replace(tags={"team": str(i)})) for i in range(150)]
    for record in later:
        exporter.submit(record)
    for _ in range(100):  # the plain queue's 66 newest, then 34 from the newest block
        assert exporter._queue._drop_newest()
    assert exporter.stats()["queued"] == 150
    outbox = exporter.outbox
    assert outbox is not None
    first = outbox.claim(10_000, 10**9, 10**9)
    assert [i for chunk in first for i in chunk.ids] == [r[0] for r in records[:200]]
    outbox.ack(first)
    exporter._committer.commit(everything=True)
    chunks = outbox.claim(10_000, 10**9, 10**9)
    kept = [i for chunk in chunks for i in chunk.ids]
    assert kept == [r[0] for r in records[200:] + later[:50]]
    tags = [json.loads(body)["tags"] for chunk in chunks for body in chunk.bodies]
    assert tags == [{}] * 100 + [{"team": str(i)} for i in range(50)]


def test_flush_and_the_block_policy_hold_with_many_threads_and_a_full_outbox(
    make_exporter: MakeExporter,
) -> None:
    """Six threads into an in-memory outbox capped at 300: none dropped, flush sees them all."""
    import threading

    from wallet_stub import AcceptAll

    sent: list[str] = []

    class Counting(AcceptAll):
        def _ingest(self, body: bytes, batch_id: str | None, minimal: bool = False) -> Any:
            sent.extend(item["id"] for item in json.loads(body)["records"])
            return super()._ingest(body, batch_id, minimal)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # switch threads often, to meet the races
    try:
        for _ in range(2):
            sent.clear()
            exporter = make_exporter(
                Counting(api_key=None),
                durability="memory",
                max_queue=300,
                overflow="block",
                block_timeout=30.0,
                max_batch_records=100,
            )
            exporter.start()

            def work(thread: int, exporter: Exporter) -> None:
                for i in range(3_000):
                    exporter.submit((f"{thread}-{i}", *tuple(new_record())[1:]))

            threads = [threading.Thread(target=work, args=(n, exporter)) for n in range(6)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert exporter.flush(timeout=30)
            stats = exporter.stats()
            assert (stats["dropped"], stats["queued"], len(sent), len(set(sent))) == (
                0,
                0,
                18_000,
                18_000,
            )
            assert exporter.shutdown(timeout=5)
    finally:
        sys.setswitchinterval(interval)


def test_sync_durability_is_on_disk_when_submit_returns(
    make_exporter: MakeExporter, tmp_path: Path
) -> None:
    path = tmp_path / "o.sqlite3"
    exporter = make_exporter(outbox_path=path, durability="sync")
    one = new_record()
    exporter.submit(one)
    assert exporter.stats() == {**exporter.stats(), "queued": 0, "in_outbox": 1}
    with contextlib.closing(sqlite3.connect(path)) as conn:
        (ids,) = conn.execute("SELECT ids FROM chunks").fetchone()
    assert json.loads(ids) == [one.id]


def test_shutdown_without_a_thread_delivers_on_the_caller(
    make_exporter: MakeExporter, tmp_path: Path
) -> None:
    stub = StubWallet(api_key=None)
    exporter = make_exporter(stub, outbox_path=tmp_path / "o.sqlite3")
    for _ in range(3):
        exporter.submit(new_record())
    assert exporter.shutdown(timeout=5)
    assert stub.booked == 3
    assert exporter.shutdown(timeout=5)  # a second call is harmless


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("7", 7.0), ("0", 0.0), ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0), ("soon", None), (None, None)],
)
def test_retry_after_is_read_as_seconds_or_a_date(
    header: str | None, seconds: float | None
) -> None:
    assert parse_retry_after(header, now=1e10) == seconds


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX only")
def test_a_forked_child_sends_only_its_own_records(
    server: StubServer, make_wallet: MakeWallet
) -> None:
    # No group commit for an hour: the parent's records are still queued in memory when the
    # process forks (once committed, they are in the shared outbox, for either to send).
    wallet = make_wallet(server.url, linger=3600.0, commit_interval=3600.0)
    parent = [new_record() for _ in range(10)]
    for record in parent:
        wallet.submit(record)
    with warnings.catch_warnings():  # Python 3.12+ warns about forking a threaded process
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: fresh queue, thread and client
        code = 1
        try:
            assert wallet.stats()["queued"] == 0
            child = [new_record() for _ in range(5)]
            for record in child:
                wallet.submit(record)
            assert wallet.flush(timeout=10)
            assert wallet.stats()["sent"] == 5
            thread = wallet._exporter._threads[0]
            assert thread is not None
            assert thread.is_alive()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert wallet.flush(timeout=10)
    assert wallet.stats()["sent"] == 10
    assert server.stub.booked == 15
    assert all(count == 0 for count in [wallet.stats()["duplicates"]])
    wallet.shutdown(timeout=5)


def test_pending_records_are_delivered_at_exit(server: StubServer, tmp_path: Path) -> None:
    script = f"""
import sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
import flexcredits_sdk as fc
wallet = fc.wallets.HttpWallet({server.url!r}, "test-key", outbox_dir={str(tmp_path)!r})
fc.configure(wallet=wallet)

@fc.metered_action
def answer():
    return 42

for _ in range(25):
    answer()
"""
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    assert server.stub.booked == 25


def test_the_default_meter_uses_the_environment_wallet(
    monkeypatch: pytest.MonkeyPatch, server: StubServer, tmp_path: Path
) -> None:
    monkeypatch.setenv("FLEXCREDITS_URL", server.url)
    monkeypatch.setenv("FLEXCREDITS_API_KEY", "test-key")
    monkeypatch.setenv("FLEXCREDITS_OUTBOX_DIR", str(tmp_path))
    allowed = [True]
    wallet = EnvWallet(lambda: allowed[0])
    try:
        meter = fc.Meter(wallet=wallet)
        meter.metered_action(lambda: 1)()
        assert meter.flush(timeout=10)
        assert "HttpWallet" in repr(wallet)
        assert meter.stats().sent == 1
        assert server.stub.booked == 1
        assert wallet.balance().used == 20
    finally:
        stopped = wallet.shutdown(timeout=5)
    assert stopped


def test_the_environment_wallet_stays_offline_when_not_allowed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FLEXCREDITS_URL", "https://wallet.example.com")
    wallet = EnvWallet(lambda: False)
    meter = fc.Meter(wallet=wallet)
    meter.metered_action(lambda: 1)()
    assert isinstance(wallet.resolve(), fc.OfflineWallet)
    assert wallet.balance().used == 20


def test_the_delivery_example_runs(server: StubServer, tmp_path: Path) -> None:
    example = Path(__file__).parent.parent / "examples" / "delivery.py"
    env = {
        **os.environ,
        "FLEXCREDITS_URL": server.url,
        "FLEXCREDITS_API_KEY": "test-key",
        "FLEXCREDITS_OUTBOX_DIR": str(tmp_path),
    }
    done = subprocess.run(
        [sys.executable, str(example)], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "delivered: True, sent: 4, duplicates: 0" in done.stdout
    assert "used: 80 credits" in done.stdout
    assert server.stub.booked == 4


def test_the_unconfigured_default_meter_delivers_to_flexcredits_url(
    server: StubServer, tmp_path: Path
) -> None:
    script = """
import flexcredits_sdk as fc

@fc.metered_action
def answer():
    return 42

answer()
answer()
print(fc.flush(timeout=10), fc.get_meter().stats().sent)
"""
    env = {
        **os.environ,
        "FLEXCREDITS_URL": server.url,
        "FLEXCREDITS_API_KEY": "test-key",
        "FLEXCREDITS_OUTBOX_DIR": str(tmp_path),
    }
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "2"]
    assert server.stub.booked == 2
