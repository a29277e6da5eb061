"""Delivery under faults: every fault of the issue, against the loopback stub or respx."""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import socket
import threading
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from fixtures import KEY, new_record
from wallet_stub import Fault, StubServer, StubWallet

import flexcredits_sdk as fc
from flexcredits_sdk import UsageRecord
from flexcredits_sdk._export import DeadLetter, SqliteOutbox
from flexcredits_sdk.wallets import HttpWallet


def _submit(wallet: HttpWallet, n: int, **changes: Any) -> list[UsageRecord]:
    records = [new_record(**changes) for _ in range(n)]
    for record in records:
        wallet.submit(record)
    return records


def test_500_then_200_delivers_everything_once(server: StubServer, make_wallet: Any) -> None:
    server.stub.fail(Fault(status=500), Fault(status=503))
    wallet = make_wallet(server.url)
    _submit(wallet, 700)
    assert wallet.flush(timeout=10)
    stats = wallet.stats()
    assert (stats["sent"], stats["duplicates"], stats["queued"], stats["in_outbox"]) == (
        700,
        0,
        0,
        0,
    )
    assert server.stub.booked == 700
    assert "wallet service answered 50" in stats["last_error"]


def test_retries_back_off_with_full_jitter(
    server: StubServer, make_wallet: Any, sleeps: list[float]
) -> None:
    server.stub.fail(*[Fault(status=500)] * 6)
    wallet = make_wallet(server.url, max_backoff=4.0)
    _submit(wallet, 3)
    assert wallet.flush(timeout=10)
    assert len(sleeps) == 6
    caps = [min(4.0, 0.5 * 2**i) for i in range(6)]
    assert all(0 <= slept <= cap for slept, cap in zip(sleeps, caps, strict=True))


def test_429_honours_retry_after(server: StubServer, make_wallet: Any, sleeps: list[float]) -> None:
    server.stub.fail(Fault(status=429, headers={"Retry-After": "7"}))
    wallet = make_wallet(server.url)
    _submit(wallet, 10)
    assert wallet.flush(timeout=10)
    assert sleeps == [7.0]
    assert server.stub.booked == 10


def test_a_lost_answer_after_booking_comes_back_as_duplicates(
    server: StubServer, make_wallet: Any
) -> None:
    server.stub.fail(Fault(book=True, drop=True))
    wallet = make_wallet(server.url)
    _submit(wallet, 50)
    assert wallet.flush(timeout=10)
    stats = wallet.stats()
    assert (stats["sent"], stats["duplicates"]) == (0, 50)
    assert server.stub.booked == 50
    assert server.stub.wallet.balance().used == 50 * 20  # booked once, not twice


def test_a_timeout_after_booking_comes_back_as_duplicates(make_wallet: Any) -> None:
    stub = StubWallet()
    calls = 0

    def book_then_time_out(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        answer = stub(request)
        if calls == 1:
            raise httpx.ReadTimeout("timed out", request=request)
        return answer

    with respx.mock(assert_all_called=True) as router:
        router.route(host="wallet.test").mock(side_effect=book_then_time_out)
        wallet = make_wallet("https://wallet.test", client=httpx.Client())
        _submit(wallet, 20)
        assert wallet.flush(timeout=10)
    assert calls == 2
    assert wallet.stats()["duplicates"] == 20
    assert stub.wallet.balance().used == 20 * 20
    ids = {batch_id for batch_id, _ in stub.batches}
    assert len(stub.batches) == 2
    assert len(ids) == 1  # the retry reused the batch's key


@pytest.mark.parametrize(
    ("answer", "sent", "duplicates", "resent"),
    [
        ({"results": [], "accepted": 7, "duplicates": 3, "rejected": 0}, 7, 3, 0),
        ({"results": [], "accepted": 4, "duplicates": 0, "rejected": 0}, 0, 0, 10),  # short
        (  # the counts add up only with a result for an id the batch does not hold
            {
                "results": [{"id": "not-in-the-batch", "status": "not_booked"}],
                "accepted": 9,
                "duplicates": 0,
                "rejected": 0,
            },
            0,
            0,
            10,
        ),
    ],
)
def test_minimal_answers_settle_the_unlisted_records_only_when_the_counts_add_up(
    make_wallet: Any, answer: dict[str, Any], sent: int, duplicates: int, resent: int
) -> None:
    bodies: list[dict[str, Any]] = []

    def ingest(request: httpx.Request) -> httpx.Response:
        data = json.loads(
            gzip.decompress(request.content)
            if request.headers.get("content-encoding") == "gzip"
            else request.content
        )
        bodies.append(data)
        if len(bodies) > 1:  # the records sent again are accepted
            n = len(data["records"])
            answer_now = {"results": [], "accepted": n, "duplicates": 0, "rejected": 0}
        else:
            answer_now = answer
        assert request.headers["Prefer"] == "return=minimal"
        return httpx.Response(
            200, json=answer_now, headers={"Preference-Applied": "return=minimal"}
        )

    with respx.mock(assert_all_called=True) as router:
        router.post("https://wallet.test/v1/records").mock(side_effect=ingest)
        wallet = make_wallet("https://wallet.test", client=httpx.Client())
        _submit(wallet, 10)
        assert wallet.flush(timeout=10)
    stats = wallet.stats()
    assert (stats["sent"], stats["duplicates"]) == (sent + resent, duplicates)
    assert [len(body["records"]) for body in bodies] == ([10, resent] if resent else [10])
    assert stats["in_outbox"] == stats["queued"] == 0


def test_422_dead_letters_just_the_invalid_records(server: StubServer, make_wallet: Any) -> None:
    rejected: list[DeadLetter] = []
    wallet = make_wallet(server.url, on_rejected=rejected.append)
    good = [new_record() for _ in range(498)]
    bad = [new_record(units=0), new_record(credits=-5)]
    for record in good[:100] + bad[:1] + good[100:] + bad[1:]:
        wallet.submit(record)
    assert wallet.flush(timeout=10)
    stats = wallet.stats()
    assert (stats["sent"], stats["rejected"], stats["in_outbox"]) == (498, 2, 0)
    assert server.stub.booked == 498
    assert sorted(letter.id for letter in rejected) == sorted(record.id for record in bad)
    reasons = {letter.id: letter.reason for letter in wallet.dead_letters()}
    assert "units" in reasons[bad[0].id]
    assert "credits" in reasons[bad[1].id]
    assert "rejected 2 records" in stats["last_error"]


NOT_UTF8 = "caf\udce9.txt"  # what os.fsdecode makes of a Latin-1 file name


def test_a_tag_value_utf8_cannot_encode_is_refused_where_the_record_is_made() -> None:
    meter = fc.Meter()
    calls = [
        (lambda: fc.tags(file=NOT_UTF8), "tags['file']"),
        (lambda: fc.Meter(tags={"file": NOT_UTF8}), "tags['file']"),
        (lambda: meter.metered_action(tags={"file": NOT_UTF8})(lambda: None), "tags['file']"),
        (lambda: meter.action("a", tags={"file": NOT_UTF8}), "tags['file']"),
    ]
    for call, field in calls:
        with pytest.raises(fc.ConfigurationError) as info:
            call()
        assert (info.value.field, info.value.value) == (field, NOT_UTF8)
        assert "lone surrogate" in str(info.value)
    with meter.action("a") as act, pytest.raises(fc.ConfigurationError):
        act.tag(file=NOT_UTF8)
    assert fc.tags(file="café.txt") is not None  # other text is fine


def test_a_record_no_store_can_hold_takes_no_other_record_down(
    server: StubServer, make_wallet: Any
) -> None:
    """A record made by hand (not by a meter) with such a tag, in a group commit of good ones:
    the good ones are booked, it becomes a dead letter, and the outbox goes on working."""
    rejected: list[DeadLetter] = []
    wallet = make_wallet(server.url, on_rejected=rejected.append)
    before = _submit(wallet, 600)
    bad = new_record(tags={"file": NOT_UTF8})
    wallet.submit(bad)
    after = _submit(wallet, 10)
    assert wallet.flush(timeout=10)
    later = _submit(wallet, 5)
    assert wallet.flush(timeout=10)
    stats = wallet.stats()
    assert (stats["sent"], stats["rejected"], stats["in_outbox"]) == (615, 1, 0)
    assert {r.id for r in server.stub.wallet.records()} == {r.id for r in before + after + later}
    (letter,) = wallet.dead_letters()
    assert letter.id == bad.id
    assert "surrogate" in letter.reason
    assert [r.id for r in rejected] == [bad.id]


def test_dead_letters_can_be_read_after_shutdown(server: StubServer, make_wallet: Any) -> None:
    wallet = make_wallet(server.url)
    bad = new_record(units=0)
    wallet.submit(bad)
    _submit(wallet, 3)
    assert wallet.flush(timeout=10)
    assert wallet.shutdown(timeout=10)
    (letter,) = wallet.dead_letters()  # read from the file, which stays as it was
    assert letter.id == bad.id
    assert "units" in letter.reason


def test_401_pauses_delivery_and_keeps_everynew_record(
    server: StubServer, make_wallet: Any, sleeps: list[float]
) -> None:
    server.stub.api_key = "rotated"
    wallet = make_wallet(server.url, max_backoff=1.0)

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        assert wallet.stats()["in_outbox"] == 30  # paused, nothing lost
        server.stub.api_key = KEY  # the operator fixes the key on the service

    wallet._exporter._senders._user_sleep = sleep
    _submit(wallet, 30)
    assert wallet.flush(timeout=10)
    assert sleeps == [60.0]  # the pause, longer than any backoff
    assert server.stub.booked == 30
    assert "401" in wallet.stats()["last_error"]


def test_a_malformed_answer_is_retried(server: StubServer, make_wallet: Any) -> None:
    server.stub.fail(Fault(status=200, body=b"{not json", book=True))
    wallet = make_wallet(server.url)
    _submit(wallet, 5)
    assert wallet.flush(timeout=10)
    stats = wallet.stats()
    assert (stats["sent"], stats["duplicates"]) == (0, 5)
    assert "malformed" in stats["last_error"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_connection_refused_for_the_whole_run_then_recovery(
    make_wallet: Any, sleeps: list[float]
) -> None:
    port = _free_port()
    started: list[StubServer] = []
    wallet = make_wallet(f"http://127.0.0.1:{port}")

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 5:
            started.append(StubServer(port=port).start())

    wallet._exporter._senders._user_sleep = sleep
    records = _submit(wallet, 1200)
    try:
        assert wallet.flush(timeout=10)
        assert len(sleeps) >= 5
        assert {r.id for r in started[0].stub.wallet.records()} == {r.id for r in records}
    finally:
        for running in started:
            running.stop()


def test_flush_and_shutdown_respect_their_deadlines(make_wallet: Any) -> None:
    wallet = make_wallet(f"http://127.0.0.1:{_free_port()}", sleep=None, timeout=0.5)
    _submit(wallet, 10)
    assert not wallet.flush(timeout=0.05)
    assert not wallet.shutdown(timeout=0.2)
    assert wallet.stats()["in_outbox"] == 10  # kept on disk for the next process


def _give_up(wallet: HttpWallet) -> None:
    """Make the exporter stop retrying, as a passed shutdown deadline does."""
    wallet._exporter._senders.deadline = 0.0


def test_the_next_process_replays_the_outbox(server: StubServer, make_wallet: Any) -> None:
    server.stub.api_key = "not yet"
    down = make_wallet(server.url)
    down._exporter._senders._user_sleep = lambda seconds: _give_up(down)
    records = _submit(down, 40)
    assert not down.shutdown(timeout=5)
    server.stub.api_key = KEY
    up = make_wallet(server.url)
    assert up.stats()["in_outbox"] == 40
    assert up.flush(timeout=10)
    assert {r.id for r in server.stub.wallet.records()} == {r.id for r in records}


def test_an_unwritable_outbox_keeps_records_in_memory(
    server: StubServer, make_wallet: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    wallet = make_wallet(server.url, outbox_dir=blocker / "outbox")
    assert wallet.outbox_path is None
    assert "kept in memory" in wallet.stats()["last_error"]
    assert "cannot open outbox" in caplog.text
    _submit(wallet, 25)
    assert wallet.flush(timeout=10)
    assert server.stub.booked == 25


def test_a_full_disk_moves_records_to_memory(
    server: StubServer, make_wallet: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    wallet = make_wallet(server.url)

    def full(self: SqliteOutbox, ids: Any, bodies: Any) -> None:
        raise fc._export._outbox.OutboxUnavailable("database or disk is full")

    monkeypatch.setattr(SqliteOutbox, "add", full)
    _submit(wallet, 25)
    assert wallet.flush(timeout=10)
    assert server.stub.booked == 25
    assert "disk is full" in wallet.stats()["last_error"]


def test_records_on_a_disk_that_fills_up_are_still_sent(
    server: StubServer, make_wallet: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.stub.api_key = "not yet"
    wallet = make_wallet(server.url)
    wallet._exporter._senders._user_sleep = lambda seconds: _give_up(wallet)
    before = _submit(wallet, 10)
    wallet._exporter._committer.commit()  # what the committing thread does every 200 ms
    assert wallet.stats()["in_outbox"] == 10

    def full(self: SqliteOutbox, ids: Any, bodies: Any) -> None:
        raise fc._export._outbox.OutboxUnavailable("database or disk is full")

    monkeypatch.setattr(SqliteOutbox, "add", full)
    after = _submit(wallet, 5)
    server.stub.api_key = KEY
    wallet._exporter._senders.deadline = None
    assert wallet.flush(timeout=10)
    assert {r.id for r in server.stub.wallet.records()} == {r.id for r in before + after}
    assert wallet.stats()["in_outbox"] == 0


def test_a_corrupt_outbox_is_quarantined_and_reported(
    server: StubServer, make_wallet: Any, tmp_path: Path
) -> None:
    first = make_wallet(server.url)
    path = first.outbox_path
    first.shutdown(timeout=1)
    assert path is not None
    for side in path.parent.glob(path.name + "*"):
        side.unlink()
    path.write_bytes(b"\x00garbage from an earlier crash" * 50)
    wallet = make_wallet(server.url)
    assert "corrupt" in wallet.stats()["last_error"]
    assert list(path.parent.glob(path.name + ".corrupt-*"))
    _submit(wallet, 3)
    assert wallet.flush(timeout=10)


def test_the_api_key_never_shows(
    make_wallet: Any, caplog: pytest.LogCaptureFixture, sleeps: list[float]
) -> None:
    secret = "sk-live-very-secret"
    caplog.set_level(logging.DEBUG)
    stub = StubWallet(api_key="other")
    with respx.mock() as router:
        router.route(host="wallet.test").mock(side_effect=stub)
        wallet = make_wallet("https://wallet.test", api_key=secret, client=httpx.Client())
        wallet._exporter._senders._user_sleep = lambda seconds: setattr(stub, "api_key", secret)
        _submit(wallet, 2)
        # the first answer is 401: a flush stops waiting at once; the retry sends them
        wallet.flush(timeout=10)
        assert wallet.flush(timeout=10)
        assert wallet.stats()["sent"] == 2
        stub.api_key = "other"
        with pytest.raises(fc.FlexCreditsError) as info:
            wallet.balance()
        assert router.calls.last.request.headers["Authorization"] == f"Bearer {secret}"
    shown = [repr(wallet), str(wallet), str(info.value), repr(info.value), caplog.text]
    shown.append(str(wallet.stats()))
    assert all(secret not in text for text in shown)


def test_batches_are_gzipped_and_carry_an_idempotency_key(
    server: StubServer, make_wallet: Any
) -> None:
    wallet = make_wallet(server.url)
    _submit(wallet, 30, credits=Decimal("16.5"))
    assert wallet.flush(timeout=10)
    (headers,) = server.stub.headers_seen
    assert headers["content-encoding"] == "gzip"
    assert len(headers["idempotency-key"]) == 32
    assert server.stub.wallet.balance().used == Decimal("16.5") * 30


def test_two_wallets_sharing_an_outbox_send_each_record_once(
    server: StubServer, make_wallet: Any
) -> None:
    one, two = make_wallet(server.url), make_wallet(server.url)
    assert one.outbox_path == two.outbox_path
    records = _submit(one, 700) + _submit(two, 700)
    assert one.flush(timeout=10)
    assert two.flush(timeout=10)
    assert {r.id for r in server.stub.wallet.records()} == {r.id for r in records}
    assert one.stats()["duplicates"] + two.stats()["duplicates"] == 0
    assert one.stats()["sent"] + two.stats()["sent"] == 1400


def test_a_flush_waits_for_records_another_process_has_in_flight(
    server: StubServer, make_wallet: Any
) -> None:
    down = make_wallet(server.url, timeout=0.2)
    server.stub.api_key = "not yet"  # the first process cannot send: its records stay on disk
    records = _submit(down, 30)
    assert not down.shutdown(timeout=2)
    server.stub.api_key = KEY
    assert down.outbox_path is not None
    other = SqliteOutbox(down.outbox_path, owner="another-process", key=_key_id(KEY))
    claimed = other.claim(10_000, 10**9, 10**9)  # as a live process sending them would
    assert sum(len(chunk.ids) for chunk in claimed) == 30
    wallet = make_wallet(server.url)
    assert not wallet.flush(timeout=1.5)  # they are not delivered yet: no false "all sent"
    other.release(claimed)  # that process gave up (or its lease ran out)
    other.close()
    assert wallet.flush(timeout=10)
    assert {r.id for r in server.stub.wallet.records()} == {r.id for r in records}


def _key_id(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def test_a_failing_on_rejected_callback_is_contained(
    server: StubServer, make_wallet: Any, caplog: pytest.LogCaptureFixture
) -> None:
    def explode(letter: DeadLetter) -> None:
        raise RuntimeError("boom")

    wallet = make_wallet(server.url, on_rejected=explode)
    wallet.submit(new_record(units=-1))
    _submit(wallet, 3)
    assert wallet.flush(timeout=10)
    assert wallet.stats()["rejected"] == 1
    assert server.stub.booked == 3
    assert "on_rejected callback failed" in caplog.text


def test_group_commits_go_on_while_a_send_hangs(make_wallet: Any) -> None:
    stub = StubWallet()
    entered, release = threading.Event(), threading.Event()

    def slow(request: httpx.Request) -> httpx.Response:
        entered.set()
        release.wait(10)
        return stub(request)

    client = httpx.Client(transport=httpx.MockTransport(slow))
    wallet = make_wallet("https://wallet.test", client=client, commit_interval=0.01)
    _submit(wallet, 5)
    assert not wallet.flush(timeout=0)
    assert entered.wait(10)  # a batch is on the wire, its answer held back
    _submit(wallet, 7)
    committed = threading.Event()
    for _ in range(1000):  # wait for the committing thread, without a fixed sleep
        if wallet.stats()["in_outbox"] == 12:
            committed.set()
            break
        committed.wait(0.01)
    release.set()
    assert committed.is_set()
    assert wallet.flush(timeout=10)
    assert stub.booked == 12
