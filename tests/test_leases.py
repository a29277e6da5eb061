"""Leases: HttpWallet reserves credit in blocks and refuses actions before their bodies run."""

from __future__ import annotations

import gzip
import itertools
import json
import logging
import os
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
import respx
from server_fixtures import ServerProcess, pg_cluster, server

import flexcredits_sdk as fc
from flexcredits_sdk import BudgetExceeded, ConfigurationError, InsufficientCredits
from flexcredits_sdk.wallets import AsyncHttpWallet, HttpWallet

__all__ = ["pg_cluster", "server"]

URL = "https://wallet.test"


class Clock:
    """Monotonic seconds that a test can move forward (the exporter sees time pass too)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


class FakeService:
    """The spend-control part of a wallet service: a balance, hard budgets, holds, records.

    Every request is logged in `events` (``("hold", credits)``, ``("release", id)``,
    ``("record", id, hold_id)``), in the order the service saw them.
    """

    def __init__(self, credits: int = 10_000, overdraft: str = "deny") -> None:
        self.balance = credits
        self.overdraft = overdraft
        self.budgets: list[dict[str, Any]] = []
        self.holds: dict[str, dict[str, Any]] = {}
        self.events: list[tuple[Any, ...]] = []
        self.hold_threads: list[str] = []  # the thread that asked for each hold
        self.records: list[dict[str, Any]] = []
        self.policy_status = 200
        #: Per hold request: an exception to raise, an answer or a status; None: no fault.
        self.hold_faults: list[Any] = []
        self.hold_delay = 0.0
        self.in_flight = self.most_in_flight = 0
        self._lock = threading.Lock()

    def budget(self, limit: int, **tags: str) -> dict[str, Any]:
        budget = {
            "id": f"b{len(self.budgets) + 1}",
            "name": ",".join(f"{k}={v}" for k, v in tags.items()) or "tenant",
            "limit": limit,
            "tags": tags,
            "period": None,
            "hard": True,
            "spent": 0,
        }
        self.budgets.append(budget)
        return budget

    def held(self, budget: dict[str, Any] | None = None) -> int:
        return sum(
            h["remaining"]
            for h in self.holds.values()
            if h["status"] == "active" and (budget is None or budget["id"] in h["budgets"])
        )

    def spend_control(self, request: httpx.Request) -> httpx.Response:
        self.events.append(("policy",))
        if self.policy_status != 200:
            return httpx.Response(self.policy_status)
        return httpx.Response(
            200,
            json={"overdraft": self.overdraft, "hard_budgets": self.budgets, "max_ttl": 3600},
        )

    def hold(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.hold_threads.append(threading.current_thread().name)
        with self._lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            if self.hold_delay:
                time.sleep(self.hold_delay)  # a round trip's latency, so threads overlap
            with self._lock:
                return self._hold(body)
        finally:
            with self._lock:
                self.in_flight -= 1

    def _hold(self, body: dict[str, Any]) -> httpx.Response:
        self.events.append(("hold", body["credits"], body["id"]))
        if self.hold_faults:
            fault = self.hold_faults.pop(0)
            if isinstance(fault, Exception):
                raise fault
            if isinstance(fault, httpx.Response):
                return fault
            if fault is not None:
                return httpx.Response(fault)
        if body["id"] in self.holds:
            return httpx.Response(200, json=self._info(self.holds[body["id"]]))
        credits, tags = body["credits"], body["tags"]
        available = self.balance - self.held()
        if self.overdraft == "deny" and credits > available:
            return self._refused("insufficient_credits", credits, available, None)
        matched = [b for b in self.budgets if b["tags"].items() <= tags.items()]
        for budget in matched:
            left = budget["limit"] - budget["spent"] - self.held(budget)
            if credits > left:
                return self._refused("budget_exceeded", credits, left, budget)
        self.holds[body["id"]] = hold = {
            "id": body["id"],
            "credits": credits,
            "remaining": credits,
            "tags": tags,
            "budgets": [b["id"] for b in matched],
            "status": "active",
        }
        return httpx.Response(201, json=self._info(hold))

    def _refused(
        self, code: str, credits: int, available: int, budget: dict[str, Any] | None
    ) -> httpx.Response:
        return httpx.Response(
            402,
            json={
                "error": {"code": code, "message": "refused"},
                "refusal": {
                    "credits": credits,
                    "available": available,
                    "held": self.held(),
                    "budget": budget,
                },
            },
        )

    @staticmethod
    def _info(hold: dict[str, Any]) -> dict[str, Any]:
        return {
            **{k: hold[k] for k in ("id", "credits", "remaining", "tags", "budgets", "status")},
            "created_at": "2026-01-01T00:00:00Z",
            "expires_at": "2026-01-01T00:00:30Z",
        }

    def release(self, request: httpx.Request) -> httpx.Response:
        hold_id = request.url.path.rsplit("/", 1)[1]
        with self._lock:
            self.events.append(("release", hold_id))
            hold = self.holds.get(hold_id)
            if hold is None:
                return httpx.Response(404, json={"error": {"code": "not_found", "message": "?"}})
            hold["status"], hold["remaining"] = "released", 0
            return httpx.Response(200, json=self._info(hold))

    def ingest(self, request: httpx.Request) -> httpx.Response:
        content = request.content
        if request.headers.get("content-encoding") == "gzip":
            content = gzip.decompress(content)
        records = json.loads(content)["records"]
        with self._lock:
            for record in records:
                self.events.append(("record", record["id"], record.get("hold_id")))
                self.records.append(record)
                credits = record["credits"]
                hold = self.holds.get(record.get("hold_id") or "")
                if hold is not None and hold["status"] == "active":
                    hold["remaining"] -= min(credits, hold["remaining"])
                self.balance -= credits
                for budget in self.budgets:
                    if budget["tags"].items() <= record["tags"].items():
                        budget["spent"] += credits
        results = [{"id": r["id"], "status": "accepted"} for r in records]
        return httpx.Response(
            200,
            json={"results": results, "accepted": len(records), "duplicates": 0, "rejected": 0},
        )

    def hold_requests(self) -> list[int]:
        return [event[1] for event in self.events if event[0] == "hold"]

    def releases(self) -> list[str]:
        return [event[1] for event in self.events if event[0] == "release"]


@pytest.fixture
def service() -> Iterator[FakeService]:
    fake = FakeService()
    with respx.mock(base_url=URL, assert_all_called=False) as router:
        router.get("/v1/spend-control").mock(side_effect=fake.spend_control)
        router.post("/v1/holds").mock(side_effect=fake.hold)
        router.delete(path__startswith="/v1/holds/").mock(side_effect=fake.release)
        router.post("/v1/records").mock(side_effect=fake.ingest)
        yield fake


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def make(service: FakeService, clock: Clock) -> Iterator[Callable[..., HttpWallet]]:
    made: list[HttpWallet] = []

    def make(**options: Any) -> HttpWallet:
        options.setdefault("durability", "memory")
        options.setdefault("clock", clock)
        options.setdefault("sleep", lambda seconds: None)
        made.append(HttpWallet(URL, "key", **options))
        return made[-1]

    yield make
    for wallet in made:
        wallet.shutdown(timeout=5)


class Agent:
    """A meter on a wallet, with an action that counts how often its body ran."""

    def __init__(self, wallet: Any, **tags: str) -> None:
        self.meter = fc.Meter(wallet=wallet)
        self.ran = 0
        self.tags = tags

    def act(self, units: int = 1, **tags: str) -> None:
        with self.meter.action("answer", tags={**self.tags, **tags}, units=units):
            self.ran += 1

    def until_refused(self, **tags: str) -> None:
        """Act until the wallet refuses."""
        while not self.run(1, **tags):
            pass

    def run(self, times: int, **tags: str) -> int:
        """Act up to `times` times; return how many were refused."""
        refused = 0
        for _ in range(times):
            try:
                self.act(**tags)
            except (InsufficientCredits, BudgetExceeded):
                refused += 1
        return refused


def wait_for(condition: Callable[[], Any], timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.005)


# --- settings ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("lease", "sometimes"),
        ("lease", None),
        ("lease", True),
        ("lease_ttl", 0),
        ("lease_ttl", 7200),
        ("lease_ttl", float("inf")),
        ("lease_ttl", "30"),
        ("lease_idle", -1),
        ("lease_idle", float("nan")),
        ("lease_max_credits", 0),
        ("lease_max_credits", 1.5),
        ("lease_max_credits", Decimal("NaN")),
    ],
)
def test_bad_lease_settings_name_the_field(option: str, value: Any) -> None:
    with pytest.raises(ConfigurationError) as info:
        HttpWallet("http://127.0.0.1:1", durability="memory", **{option: value})
    assert info.value.field == option
    assert repr(value)[:20] in str(info.value)


def test_a_number_for_lease_points_at_claim_ttl() -> None:
    with pytest.raises(ConfigurationError, match="claim_ttl") as info:
        HttpWallet("http://127.0.0.1:1", durability="memory", lease=1.0)  # type: ignore[arg-type]
    assert info.value.field == "lease"


def test_the_lease_settings_are_listed_as_options() -> None:
    with pytest.raises(ConfigurationError) as info:
        HttpWallet("http://127.0.0.1:1", durability="memory", lease_tll=30)
    assert "did you mean 'lease_ttl'" in str(info.value)
    assert "lease, lease_idle, lease_max_credits, lease_ttl" in str(info.value)


# --- the policy ---------------------------------------------------------------------------------


def test_no_holds_when_the_policy_needs_none(
    service: FakeService, make: Callable[..., HttpWallet]
) -> None:
    service.overdraft = "allow"
    service.budget(100, department="service")
    wallet = make()
    agent = Agent(wallet, department="sales")
    assert wallet.authorizes is True  # until the policy is known
    agent.run(3)
    assert wallet.authorizes is True  # a hard budget exists: every action is checked
    assert service.hold_requests() == []  # but none of these actions matches it
    wallet.flush()
    assert [r.get("hold_id") for r in service.records] == [None] * 3
    assert [e for e in service.events if e[0] == "policy"] == [("policy",)]


def test_authorizes_turns_off_and_back_on_when_the_policy_is_asked_again(
    service: FakeService, make: Callable[..., HttpWallet], clock: Clock
) -> None:
    service.overdraft = "allow"
    wallet = make()
    agent = Agent(wallet)
    agent.run(2)
    assert wallet.authorizes is False  # the meter no longer calls authorize
    assert wallet.stats()["leases"]["policy_fetches"] == 1
    service.overdraft = "deny"
    clock.advance(61)  # older than the rate card's max age
    time.sleep(0.002)  # the next action starts in a new millisecond, which checks the age
    agent.run(1)
    assert wallet.authorizes is True
    assert wallet.stats()["leases"]["policy_fetches"] == 2
    assert len(service.hold_requests()) == 1


def test_an_unreachable_service_fails_open_and_is_asked_again(
    service: FakeService,
    make: Callable[..., HttpWallet],
    clock: Clock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    service.policy_status = 503
    wallet = make()
    agent = Agent(wallet)
    with caplog.at_level(logging.WARNING, logger="flexcredits_sdk"):
        agent.run(2)
    assert agent.ran == 2
    assert "cannot fetch the spend-control policy" in caplog.text
    assert "actions run without holds" in caplog.text
    assert wallet.authorizes is False
    service.policy_status = 200
    clock.advance(11)
    time.sleep(0.002)
    agent.run(1)
    assert wallet.authorizes is True
    assert len(service.hold_requests()) == 1


def test_a_service_without_spend_control_needs_no_holds(
    service: FakeService, make: Callable[..., HttpWallet], caplog: pytest.LogCaptureFixture
) -> None:
    service.policy_status = 404
    wallet = make()
    with caplog.at_level(logging.WARNING, logger="flexcredits_sdk"):
        Agent(wallet).run(2)
    assert wallet.authorizes is False
    assert caplog.text == ""


def test_lease_off_never_asks(service: FakeService, make: Callable[..., HttpWallet]) -> None:
    wallet = make(lease="off")
    assert wallet.authorizes is False
    assert wallet.authorize("answer", 20, {}) is None
    Agent(wallet).run(2)
    assert service.events == []


# --- blocks -------------------------------------------------------------------------------------


def test_actions_draw_on_a_lease_and_records_carry_its_id(
    service: FakeService, make: Callable[..., HttpWallet], clock: Clock
) -> None:
    wallet = make()
    agent = Agent(wallet)
    agent.run(1)
    clock.advance(0.5)
    agent.run(1)  # the first block was one action: 2 actions a second -> blocks of 40
    clock.advance(0.5)
    agent.run(1)
    clock.advance(0.5)
    agent.run(1)
    # The third block is asked for in the background as soon as the second falls to half,
    # right after an action drew on it: 40 credits in 0.5 s read as 80 a second.
    assert service.hold_requests() == [20, 40, 80]
    [lease] = wallet.leases()
    assert (lease["credits"], lease["remaining"], lease["budgets"]) == (80, 60, [])
    wallet.flush()
    holds = [event[2] for event in service.events if event[0] == "hold"]
    assert [r["hold_id"] for r in service.records] == [holds[0], holds[1], holds[1], holds[2]]
    assert service.balance == 10_000 - 80


def test_the_next_block_is_taken_in_the_background_before_the_lease_runs_out(
    service: FakeService, make: Callable[..., HttpWallet]
) -> None:
    service.hold_delay = 0.005
    wallet = make(lease_max_credits=400)
    agent = Agent(wallet)
    for _ in range(200):  # an action every millisecond: blocks of 400 last 20 ms
        agent.act()
        time.sleep(0.001)
    assert agent.ran == 200
    asked = service.hold_threads
    assert asked[0] == threading.current_thread().name  # the first block: nothing to go on
    behind = [name for name in asked[1:] if name != "flexcredits-lease-refill"]
    assert len(behind) <= 2, asked  # the others were there before the actions needed them
    assert len(asked) <= 20  # 4,000 credits in blocks that grow to 400: no block wasted
    wallet.flush()
    assert service.held() == 0


def test_a_block_is_at_most_lease_max_credits(
    service: FakeService, make: Callable[..., HttpWallet]
) -> None:
    wallet = make(lease_max_credits=100)
    Agent(wallet).run(30)  # in a burst: each block ten times the last, up to the bound
    sizes = service.hold_requests()
    assert sizes[0] == 20
    assert max(sizes) == 100
    assert all(size % 20 == 0 for size in sizes)
    assert len(sizes) <= 8
    assert wallet.stats()["leases"]["round_trips"] == len(sizes) + 1  # and the policy


def test_a_refused_block_falls_back_to_what_is_left_then_to_the_action_alone(
    service: FakeService, make: Callable[..., HttpWallet]
) -> None:
    service.balance = 60
    wallet = make(lease_max_credits=1_000)
    agent = Agent(wallet)
    assert agent.run(4) == 1
    assert agent.ran == 3
    asked = [
        (event[1], event[2] in service.holds) for event in service.events if event[0] == "hold"
    ]
    assert asked[0] == (20, True)
    granted = [size for size, ok in asked if ok]
    assert sum(granted) == 60  # every credit there was, and no more
    for (size, ok), (after, _) in itertools.pairwise(asked):
        if not ok and size > 20:  # a refused block: next, what is left, or the action alone
            assert after in (40, 20)
    assert asked[-1] == (20, False)  # the action alone, refused: then it raised


def test_when_what_is_left_went_meanwhile_the_action_alone_is_asked_for(
    service: FakeService, make: Callable[..., HttpWallet]
) -> None:
    service.balance = 80
    wallet = make()
    agent = Agent(wallet)
    agent.run(1)
    raced = service._refused("insufficient_credits", 60, 20, None)  # another process took 40
    service.hold_faults = [None, raced]
    assert agent.run(1) == 0
    sizes = service.hold_requests()
    assert sizes[0] == 20
    assert sizes[1] > 60  # the block, refused: 60 are left
    assert sizes[2:] == [60, 20]  # refused meanwhile, then the action alone


def test_a_refusal_comes_before_the_body_and_names_what_others_hold(
    service: FakeService, make: Callable[..., HttpWallet]
) -> None:
    service.balance = 60
    service.holds["other"] = {
        "id": "other",
        "credits": 50,
        "remaining": 50,
        "tags": {},
        "budgets": [],
        "status": "active",
    }
    wallet = make()
    agent = Agent(wallet)
    with pytest.raises(InsufficientCredits) as info:
        agent.act()
    assert agent.ran == 0  # the body never ran
    assert info.value.held_elsewhere == 50
    assert info.value.balance == 10
    assert "other holders (leases of other processes) reserve 50 credits" in str(info.value)
    assert agent.meter.stats().refused == 1
    assert wallet.stats()["leases"]["refused"] == 1
    wallet.flush()
    assert service.records == []


def test_a_hard_budget_refuses_only_the_actions_it_matches(
    service: FakeService, make: Callable[..., HttpWallet]
) -> None:
    service.overdraft = "allow"
    budget = service.budget(100, department="service")
    wallet = make()
    agent = Agent(wallet)
    assert agent.run(10, department="service", agent="triage") == 5
    assert agent.run(3, department="sales") == 0
    assert agent.ran == 8
    with pytest.raises(BudgetExceeded) as info:
        agent.act(department="service")
    assert info.value.budget.name == budget["name"]
    assert "budget 'department=service' has 0 of 100 left" in str(info.value)
    assert {tuple(sorted(h["tags"].items())) for h in service.holds.values()} == {
        (("department", "service"),)  # the budget's tags, not the action's
    }
    wallet.flush()
    assert budget["spent"] == 100
    assert sum(1 for r in service.records if r.get("hold_id")) == 5


def test_idle_credit_of_this_process_goes_back_before_a_refusal(
    service: FakeService, make: Callable[..., HttpWallet]
) -> None:
    service.balance = 120
    service.budget(1_000, department="service")
    wallet = make(lease_max_credits=100)
    agent = Agent(wallet)
    agent.run(3, department="service")  # blocks of 20 then 100: 60 of them left over
    assert wallet.stats()["leases"]["held"] > 0
    assert agent.run(1, department="sales") == 0  # needs the leftover given back
    assert len(service.releases()) == 1


# --- units, threads, per_action -----------------------------------------------------------------


def test_units_changed_in_the_body_are_drawn_from_the_lease(
    service: FakeService, make: Callable[..., HttpWallet]
) -> None:
    wallet = make(lease_max_credits=200)
    agent = Agent(wallet)
    agent.run(2)
    before = wallet.leases()[0]["remaining"]
    with agent.meter.action("answer") as act:
        act.units = 3
    assert wallet.leases()[0]["remaining"] == before - 60
    wallet.flush()
    assert [r["credits"] for r in service.records] == [20, 20, 60]


def test_threads_on_one_key_share_one_block_request(
    service: FakeService, make: Callable[..., HttpWallet]
) -> None:
    service.hold_delay = 0.02
    wallet = make(lease_max_credits=400)
    agent = Agent(wallet)
    threads = [threading.Thread(target=agent.run, args=(50,)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert agent.ran == 400
    assert service.most_in_flight == 1  # one thread asks, the others wait and draw on it
    assert len(service.hold_requests()) < 40
    wallet.flush()
    assert len(service.records) == 400
    assert service.balance == 10_000 - 8_000
    assert service.held() == 0


def test_per_action_holds_exactly_each_action(
    service: FakeService, make: Callable[..., HttpWallet]
) -> None:
    service.balance = 50
    wallet = make(lease="per_action")
    agent = Agent(wallet)
    assert agent.run(3) == 1
    assert service.hold_requests() == [20, 20, 20]
    assert wallet.leases() == []
    wallet.flush()
    assert len({r["hold_id"] for r in service.records}) == 2
    assert service.releases() == []  # each hold was settled by its record


def test_per_action_gives_back_what_a_failed_action_did_not_use(
    service: FakeService, make: Callable[..., HttpWallet]
) -> None:
    card = fc.RateCard.agentforce().model_copy(update={"bill_failed": False})
    wallet = make(lease="per_action", lease_idle=0.05)
    meter = fc.Meter(wallet=wallet, rate_card=card)

    @meter.metered_action(name="answer")
    def fails() -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        fails()
    wait_for(service.releases)
    kinds = [event[0] for event in service.events]
    assert kinds.index("record") < kinds.index("release")  # the record first, then the hold
    assert service.held() == 0


# --- giving back ----------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["flush", "shutdown"])
def test_flush_and_shutdown_give_back_after_the_records(
    service: FakeService, make: Callable[..., HttpWallet], how: str
) -> None:
    wallet = make(lease_max_credits=100)
    Agent(wallet).run(3)
    held = wallet.stats()["leases"]["held"]
    assert held > 0
    assert getattr(wallet, how)(5) is True
    assert len(service.releases()) == 1
    kinds = [event[0] for event in service.events]
    assert kinds.count("record") == 3
    assert max(i for i, kind in enumerate(kinds) if kind == "record") < kinds.index("release")
    assert wallet.leases() == []
    assert wallet.stats()["leases"]["held"] == 0
    assert service.held() == 0


def test_an_idle_lease_goes_back(
    service: FakeService, make: Callable[..., HttpWallet], clock: Clock
) -> None:
    wallet = make(lease_max_credits=100, lease_idle=0.1)
    Agent(wallet).run(3)
    assert wallet.leases()
    clock.advance(1)
    wait_for(service.releases)
    assert wallet.leases() == []
    assert service.held() == 0


def test_a_lease_near_its_expiry_is_replaced(
    service: FakeService, make: Callable[..., HttpWallet], clock: Clock
) -> None:
    wallet = make(lease_max_credits=200, lease_ttl=10)
    agent = Agent(wallet)
    agent.run(3)
    first = wallet.leases()[0]["hold_id"]
    clock.advance(8.5)  # in the last fifth of its 10 s
    agent.run(1)
    assert wallet.leases()[0]["hold_id"] != first
    wait_for(lambda: first in service.releases())


def test_holds_are_asked_again_with_the_same_id(
    service: FakeService, make: Callable[..., HttpWallet]
) -> None:
    service.hold_faults = [httpx.ConnectError("reset"), 503]
    wallet = make()
    agent = Agent(wallet)
    agent.run(1)
    ids = [event[2] for event in service.events if event[0] == "hold"]
    assert len(ids) == 3
    assert len(set(ids)) == 1
    assert len(service.holds) == 1


def test_a_hold_that_cannot_be_had_lets_the_action_run(
    service: FakeService, make: Callable[..., HttpWallet], caplog: pytest.LogCaptureFixture
) -> None:
    service.hold_faults = [httpx.ConnectError("down")] * 3
    wallet = make()
    agent = Agent(wallet)
    with caplog.at_level(logging.WARNING, logger="flexcredits_sdk"):
        agent.run(1)
    assert agent.ran == 1
    assert "cannot take a hold of 20 credits" in caplog.text
    wallet.flush()
    assert service.records[0].get("hold_id") is None


def test_a_forked_child_forgets_the_parents_leases(
    service: FakeService, make: Callable[..., HttpWallet]
) -> None:
    if not hasattr(os, "fork"):
        pytest.skip("needs os.fork")
    wallet = make(lease_max_credits=100)
    Agent(wallet).run(2)
    assert wallet.leases()
    read, write = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # forking with threads
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            seen = {"leases": wallet.leases(), "held": wallet.stats()["leases"]["held"]}
            os.write(write, json.dumps(seen).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child = json.loads(pipe.read())
    os.waitpid(pid, 0)
    assert child == {"leases": [], "held": 0}
    assert wallet.leases()  # the parent keeps its own
    assert service.releases() == []


async def test_the_async_wallet_authorizes_too(service: FakeService, clock: Clock) -> None:
    service.balance = 40
    wallet = AsyncHttpWallet(URL, "key", durability="memory", clock=clock)
    try:
        meter = fc.Meter(wallet=wallet)
        ran = 0

        @meter.metered_action(name="answer")
        async def answer() -> None:
            nonlocal ran
            ran += 1

        await answer()
        await answer()
        with pytest.raises(InsufficientCredits):
            await answer()
        assert ran == 2
        assert await wallet.aflush(5)
        assert service.balance == 0
    finally:
        await wallet.ashutdown(timeout=5)


# --- a real wallet service on loopback (SQLite and PostgreSQL) ----------------------------------

_tenants = itertools.count(1)


def live_wallet(server: ServerProcess, credits: int, tmp_path: Any, **tenant: Any) -> Any:
    """Return a new tenant's client and a function making its wallets (each shut down by the
    caller)."""
    name = f"lease{next(_tenants)}"
    key = server.tenant(name, **tenant)
    server.grant(name, credits)

    def wallet(**options: Any) -> HttpWallet:
        options.setdefault("outbox_dir", tmp_path)
        return HttpWallet(server.url, key, **options)

    return server.client(key), wallet


@pytest.mark.parametrize("lease", ["auto", "per_action"])
def test_a_tenant_that_denies_overdraft_runs_exactly_what_it_can_pay(
    server: ServerProcess, tmp_path: Any, lease: str
) -> None:
    client, make_wallet = live_wallet(server, 100, tmp_path, overdraft="deny")
    wallet = make_wallet(lease=lease)
    try:
        agent = Agent(wallet)
        assert agent.run(5) == 0
        with pytest.raises(InsufficientCredits) as info:
            agent.act()
        assert agent.ran == 5  # the sixth body never ran
        assert info.value.balance <= 0
        assert wallet.flush(10)
    finally:
        wallet.shutdown(5)
    answer = client.get("/v1/balance").json()
    assert (answer["credits"], answer["held"]) == (0, 0)
    holds = client.get("/v1/holds").json()["holds"]  # the active ones
    assert [h["remaining"] for h in holds] == [0] * len(holds)  # settled, or given back
    if lease == "per_action":
        assert len(holds) == 5


def test_a_hard_budget_on_the_service_refuses_its_actions_only(
    server: ServerProcess, tmp_path: Any
) -> None:
    client, make_wallet = live_wallet(server, 1_000, tmp_path)
    response = client.post(
        "/v1/budgets", json={"credits": 100, "tags": {"department": "service"}, "hard": True}
    )
    assert response.status_code in (200, 201), response.text
    wallet = make_wallet()
    try:
        agent = Agent(wallet)
        assert agent.run(8, department="service", agent="triage") == 3
        assert agent.run(4, department="sales") == 0
        with pytest.raises(BudgetExceeded, match="department=service"):
            agent.act(department="service")
        assert agent.ran == 9
        assert wallet.flush(10)
    finally:
        wallet.shutdown(5)
    budgets = client.get("/v1/budgets").json()["budgets"]
    assert [(b["spent"], b["held"]) for b in budgets] == [(100, 0)]
    assert client.get("/v1/balance").json()["credits"] == 1_000 - 180


def test_a_refusal_names_what_another_process_holds(server: ServerProcess, tmp_path: Any) -> None:
    _, make_wallet = live_wallet(server, 100, tmp_path, overdraft="deny")
    first = make_wallet(lease_max_credits=100)
    second = make_wallet()
    try:
        Agent(first).run(2)  # the second block takes what is left: 80, one action of it drawn
        held = first.stats()["leases"]["held"]
        assert held == 60
        other = Agent(second)
        with pytest.raises(InsufficientCredits) as info:
            other.act()
        assert info.value.held_elsewhere is not None
        assert info.value.held_elsewhere >= held
        assert "other holders (leases of other processes) reserve" in str(info.value)
        assert first.flush(10)  # gives its lease back
        assert other.run(3) == 0
    finally:
        first.shutdown(5)
        second.shutdown(5)


def test_threads_of_two_processes_never_run_more_than_the_tenant_can_pay(
    server: ServerProcess, tmp_path: Any
) -> None:
    client, make_wallet = live_wallet(server, 400, tmp_path, overdraft="deny")
    wallets = [make_wallet(lease_max_credits=100) for _ in range(2)]
    try:
        agents = [Agent(wallet) for wallet in wallets]
        threads = [
            threading.Thread(target=agent.until_refused) for agent in agents for _ in range(4)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sum(agent.ran for agent in agents) <= 20
        for wallet in wallets:  # what one holds and did not use goes back ...
            assert wallet.flush(10)
        agents[0].until_refused()  # ... and is spent by the other
        assert sum(agent.ran for agent in agents) == 20
        assert wallets[0].flush(10)
    finally:
        for wallet in wallets:
            wallet.shutdown(5)
    answer = client.get("/v1/balance").json()
    assert (answer["credits"], answer["held"]) == (0, 0)
