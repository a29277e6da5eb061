"""One booking rule: the offline wallet and the wallet service book the same batch alike.

The service runs in this process (uvicorn on a loopback socket, the real HTTP path) so that it
can share the test's fake clock with the offline wallet: grants expire, budget periods turn
and records end at the same instants in both.
"""

from __future__ import annotations

import datetime as _dt
import itertools
import random
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from hypothesis import given, settings
from hypothesis import strategies as st
from server_fixtures import ADMIN_KEY, TIMEOUT, bound_socket

import flexcredits_sdk as fc
from flexcredits_sdk._records import datetime_to_ns, new_id
from flexcredits_sdk._usage import RecordLog
from flexcredits_sdk.server import ServerSettings, WalletStore, create_app
from flexcredits_sdk.testing import FakeClock

#: An hour before midnight at the end of a month: the batch crosses a day and a month.
T0 = datetime_to_ns(_dt.datetime(2026, 3, 31, 23, 0, tzinfo=_dt.UTC))
MINUTE = 60 * 10**9
_names = itertools.count(1)


@dataclass
class Service:
    url: str
    clock: FakeClock
    clients: list[httpx.Client]

    def tenant(self) -> tuple[str, httpx.Client]:
        name = f"booking-{next(_names)}"
        with httpx.Client(base_url=self.url, timeout=TIMEOUT) as admin:
            admin.headers["Authorization"] = f"Bearer {ADMIN_KEY}"
            answer = admin.post("/v1/tenants", json={"name": name})
            assert answer.status_code == 200, answer.text
            key = answer.json()["api_key"]
        client = httpx.Client(
            base_url=self.url, timeout=TIMEOUT, headers={"Authorization": f"Bearer {key}"}
        )
        self.clients.append(client)
        return name, client

    def grant(self, tenant: str, **body: Any) -> None:
        with httpx.Client(base_url=self.url, timeout=TIMEOUT) as admin:
            admin.headers["Authorization"] = f"Bearer {ADMIN_KEY}"
            answer = admin.post("/v1/grants", params={"tenant": tenant}, json=body)
            assert answer.status_code == 200, answer.text

    def rate_card(self, tenant: str, card: dict[str, Any]) -> None:
        with httpx.Client(base_url=self.url, timeout=TIMEOUT) as admin:
            admin.headers["Authorization"] = f"Bearer {ADMIN_KEY}"
            answer = admin.put("/v1/rate-card", params={"tenant": tenant}, json=card)
            assert answer.status_code == 200, answer.text


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The wallet service on SQLite, in a thread of this process, on the test's clock."""
    clock = FakeClock(T0)
    db = str(tmp_path_factory.mktemp("booking") / "wallet.db")
    store = WalletStore(db, clock=clock)
    settings = ServerSettings(db=db, admin_key=ADMIN_KEY)
    app = create_app(settings, store=store)
    sock = bound_socket()
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    with httpx.Client(base_url=url, timeout=TIMEOUT) as probe:
        # Connections wait in the socket's backlog until the server accepts them.
        assert probe.get("/healthz").status_code == 200
    running = Service(url, clock, [])
    try:
        yield running
    finally:
        for client in running.clients:
            client.close()
        server.should_exit = True
        thread.join(TIMEOUT)
        sock.close()


def _records() -> list[fc.UsageRecord]:
    """Records ending from a minute after T0 to half an hour after the batch is booked."""
    records = []
    for i in range(40):
        end = T0 + MINUTE + i * 4 * MINUTE + (i % 3) * 7 * 10**9
        duration = (i % 5) * 90 * 10**9
        team = ("a", "b", None)[i % 3]
        records.append(
            fc.UsageRecord(
                fc.new_id(),
                "answer" if i % 2 else "lookup",
                ("standard", "custom", "mini")[i % 3],
                1,
                (20, Decimal("16.5"), 8)[i % 3],
                "production",
                {"team": team} if team else {},
                None,
                end - duration,
                duration,
            )
        )
    return records


#: The service prices records by its own card: the credits that `_records` claims.
RATE_CARD: dict[str, Any] = {
    "action_types": {
        "standard": {"production": 20},
        "custom": {"production": "16.5"},
        "mini": {"production": 8},
    },
    "effective_from": "2020-01-01T00:00:00Z",
}
EXPIRES = _dt.datetime(2026, 3, 31, 23, 45, tzinfo=_dt.UTC)  # mid-batch
GRANTS: list[dict[str, Any]] = [
    {"credits": 300, "expires_at": EXPIRES, "priority": 1, "source": "monthly"},
    {"credits": 1_000, "priority": 2, "source": "purchase"},
]
BUDGETS: list[dict[str, Any]] = [
    {"credits": 100, "tags": {"team": "a"}, "period": "day"},
    {"credits": 400, "tags": {}, "period": "month"},
    {"credits": 50, "tags": {"team": "b"}, "period": None},
]
WATCHES: list[dict[str, Any]] = [{"credits": 900}, {"percent": "60"}]


def _offline_wallet(
    clock: FakeClock, *, reacting: bool, path: Path | None = None
) -> fc.OfflineWallet:
    """An offline wallet with the grants (and, `reacting`, the budgets and watches) at T0."""
    clock.now = T0
    wallet = fc.OfflineWallet(clock=clock, path=path)
    for grant in GRANTS:
        wallet.grant(**grant)
    if reacting:
        for budget in BUDGETS:
            wallet.set_budget(
                budget["credits"], tags=budget["tags"], period=budget["period"], hard=False
            )
        for watch in WATCHES:
            threshold = watch.get("credits") or f"{watch['percent']}%"
            wallet.on_low_balance(threshold, lambda alert: None)
    clock.now = T0 + 120 * MINUTE
    return wallet


def _service_tenant(service: Service, *, reacting: bool) -> httpx.Client:
    """A new tenant of the service set up as `_offline_wallet` sets up its wallet."""
    service.clock.now = T0
    name, client = service.tenant()
    service.rate_card(name, RATE_CARD)
    for grant in GRANTS:
        expires = grant.get("expires_at")
        body = {**grant, "expires_at": None if expires is None else expires.isoformat()}
        service.grant(name, **body)
    if reacting:
        for path, bodies in (("/v1/budgets", BUDGETS), ("/v1/watches", WATCHES)):
            for body in bodies:
                answer = client.post(path, json=body)
                assert answer.status_code == 200, answer.text
    service.clock.now = T0 + 120 * MINUTE
    return client


def _answers(client: httpx.Client) -> dict[str, Any]:
    """The service's balance, grants, budgets, usage and alerts (oldest first), as models."""
    usage = client.get("/v1/usage", params={"group_by": ["team", "action"], "bucket": "hour"})
    return {
        "balance": fc.Balance.model_validate(client.get("/v1/balance").json()),
        "grants": [
            fc.GrantInfo.model_validate(g) for g in client.get("/v1/grants").json()["grants"]
        ],
        "budgets": [  # what the offline wallet's `budgets()` says too (the service adds more)
            fc.BudgetInfo.model_validate(
                {k: v for k, v in b.items() if k in fc.BudgetInfo.model_fields}
            )
            for b in client.get("/v1/budgets").json()["budgets"]
        ],
        "usage": [fc.UsageRow.model_validate(r) for r in usage.json()["rows"]],
        "alerts": [fc.Alert.model_validate(a) for a in client.get("/v1/alerts").json()["alerts"]][
            ::-1
        ],
    }


def _offline_answers(wallet: fc.OfflineWallet) -> dict[str, Any]:
    return {
        "balance": wallet.balance(),
        "grants": wallet.grants(),
        "budgets": wallet.budgets(),
        "usage": wallet.usage(["team", "action"], bucket="hour"),
        "alerts": wallet.alerts(),
    }


def _post(client: httpx.Client, records: list[fc.UsageRecord]) -> None:
    answer = client.post("/v1/records", json={"records": [r.to_dict() for r in records]})
    assert answer.status_code == 200, answer.text
    assert answer.json()["accepted"] == len(records)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_batch_with_budgets_and_watches_books_alike_in_both_wallets(
    service: Service, seed: int
) -> None:
    """Grants expiring mid-batch, budgets of a day, a month and for ever, low-balance watches,
    records ending after the batch is booked: both wallets agree, whatever the arrival order."""
    records = _records()
    random.Random(seed).shuffle(records)
    wallet = _offline_wallet(service.clock, reacting=True)
    client = _service_tenant(service, reacting=True)
    assert wallet.book_many(records) == len(records)
    _post(client, records)
    assert wallet.book_many(records[:5]) == 0  # each id once
    local, remote = _offline_answers(wallet), _answers(client)
    assert local == remote
    # The scenario reaches what it is about.
    assert local["grants"][0].expired
    assert local["balance"].expired == 130  # partly used, then expired
    assert {a.kind for a in local["alerts"]} == {"budget", "low_balance"}
    assert [b.spent for b in local["budgets"]] == [180, 376, Decimal("214.5")]
    assert [(a.kind, a.budget_id or a.watch_id) for a in local["alerts"]] == [
        ("budget", "budget-3"),
        ("low_balance", "watch-1"),
        ("budget", "budget-1"),
        ("low_balance", "watch-2"),
    ]
    # The same answers as for the records in the order they ended, one at a time.
    in_order = _offline_wallet(service.clock, reacting=True)
    for record in sorted(records, key=lambda r: r.start_time_ns + r.duration_ns):
        in_order.submit(record)
    assert _offline_answers(in_order) == local


def test_a_file_backed_wallet_reopens_as_it_booked_a_batch(tmp_path: Path) -> None:
    """The file keeps the ledger as the batch left it, alerts included."""
    clock = FakeClock(T0)
    records = _records()
    random.Random(5).shuffle(records)
    path = tmp_path / "wallet.db"
    wallet = _offline_wallet(clock, reacting=True, path=path)
    wallet.book_many(records)
    memory = _offline_wallet(clock, reacting=True)
    memory.book_many(records)
    before = _offline_answers(wallet)
    assert before == _offline_answers(memory)
    wallet.shutdown()
    again = fc.OfflineWallet(path=path, clock=clock)
    after = _offline_answers(again)
    assert len(after["alerts"]) == 4
    assert after == before
    again.shutdown()


def test_records_queued_by_the_offline_wallet_book_as_the_service_books_them(
    service: Service,
) -> None:
    """Nothing reacts: the offline wallet queues what it is given and books it as one batch,
    in end-time order, as the service books the same records."""
    records = _records()
    random.Random(7).shuffle(records)
    wallet = _offline_wallet(service.clock, reacting=False)
    client = _service_tenant(service, reacting=False)
    for record in records:
        wallet.submit(record)
    _post(client, records)
    local, remote = _offline_answers(wallet), _answers(client)
    assert local == remote
    assert local["grants"][0].expired
    assert 0 < local["balance"].expired < 300  # partly used, then expired


# --- each id once ----------------------------------------------------------------------------


def _record(record_id: str, credits: int = 20) -> fc.UsageRecord:
    return fc.UsageRecord(record_id, "a", "standard", 1, credits, "production", {}, None, T0, 0)


ids = st.one_of(
    st.sampled_from([fc.derive_id("run", n) for n in range(3)]),
    st.text(alphabet="07f~", min_size=1, max_size=2),  # often the same, in any order
    st.just("meter"),  # the next id a meter makes
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(ids, min_size=1, max_size=6), max_size=12), st.booleans())
def test_the_record_log_books_each_id_once_whatever_the_ids(
    batches: list[list[str]], one_by_one: bool
) -> None:
    """Meter-made ids, derived ids and any others, repeated and in any order: each once."""
    log = RecordLog()
    seen: list[str] = []
    for batch in batches:
        records = [_record(new_id() if i == "meter" else i) for i in batch]
        added = [r for r in records if log.add(r)] if one_by_one else list(log.add_many(records))
        expected = []
        for record in records:
            if record.id not in seen:
                seen.append(record.id)
                expected.append(record)
        assert added == expected
    assert [r.id for r in log] == seen
    assert all(i in log for i in seen)
    assert len(log) == len(seen)


def test_increasing_ids_are_booked_without_an_index() -> None:
    log = RecordLog()
    records = [_record(new_id()) for _ in range(300)]
    assert log.add_many(records[:200]) == records[:200]
    assert log.add_many(records[200:]) == records[200:]
    assert log._index is None  # the common case looks nothing up
    assert not log.add(records[10])  # an id not above the greatest: the index is built
    assert log._index is not None
    assert len(log._index) == 300
    later = _record(new_id())
    assert log.add(later)
    assert later.id in log._index  # and kept up to date


def test_an_id_set_to_a_later_actions_id_is_booked_once() -> None:
    wallet = fc.OfflineWallet()
    meter = fc.Meter(wallet=wallet)
    with meter.action("first") as first, meter.action("second") as second:
        first.set_id(second.id)
    assert [r.action for r in wallet.records()] == ["second"]


def test_ids_above_every_meter_id_leave_later_records_booked_once() -> None:
    wallet = fc.OfflineWallet()
    meter = fc.Meter(wallet=wallet)
    with meter.action("custom") as custom:
        custom.set_id("~ a user's id, greater than any hex digit")
    for _ in range(300):
        with meter.action("a"):
            pass
    for record in wallet.records():
        wallet.submit(record)
    assert len(list(wallet.records())) == 301
    assert wallet.balance().used == 301 * 20


@pytest.mark.parametrize("eager", [False, True])
def test_records_arriving_out_of_order_from_threads_are_booked_once(eager: bool) -> None:
    """Four threads submit interleaved ids in shuffled order, and each submits records that
    another thread also submits (perhaps before it): every id is booked once."""
    wallet = fc.OfflineWallet()
    if eager:
        wallet.on_low_balance(-(10**9), lambda alert: None)  # a watch makes booking eager
    made = [_record(new_id(), credits=1 + n % 7) for n in range(4_000)]
    derived = [_record(fc.derive_id("run", n), credits=3) for n in range(40)]
    work = []
    for n in range(4):
        mine = made[n::4] + derived[n * 10 : n * 10 + 20]  # derived ones overlap
        mine += random.Random(n).sample(made, 200)  # another thread's, or mine again
        random.Random(n + 10).shuffle(mine)
        work.append(mine)
    start = threading.Barrier(4)

    def submit(records: list[fc.UsageRecord]) -> None:
        start.wait()
        for record in records:
            wallet.submit(record)

    threads = [threading.Thread(target=submit, args=(w,)) for w in work]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    booked = list(wallet.records())
    assert sorted(r.id for r in booked) == sorted(r.id for r in made + derived)
    assert wallet.balance().used == sum(r.credits for r in made + derived)
