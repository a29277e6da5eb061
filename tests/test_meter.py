"""The decorator and the context manager: every kind of callable, handles, refusals, isolation."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

import pytest

import flexcredits_sdk as fc


@pytest.fixture
def wallet() -> fc.OfflineWallet:
    w = fc.OfflineWallet()
    w.buy_packs(1)
    return w


@pytest.fixture
def meter(wallet: fc.OfflineWallet) -> fc.Meter:
    return fc.Meter(wallet=wallet)


def only(wallet: fc.OfflineWallet) -> fc.UsageRecord:
    records = list(wallet.records())
    assert len(records) == 1, records
    return records[0]


# --- decorator forms ---------------------------------------------------------------------------


def test_without_parentheses_names_the_action_after_the_qualname(
    meter: fc.Meter, wallet: fc.OfflineWallet
) -> None:
    @meter.metered_action
    def identify_customer(email: str) -> str:
        return email.upper()

    assert identify_customer("a@b") == "A@B"
    record = only(wallet)
    assert record.action.endswith("identify_customer")
    assert record.action == identify_customer.__qualname__
    assert (record.units, record.credits, record.outcome) == (1, 20, "ok")
    assert record.environment == "production"


def test_with_parentheses_and_options(meter: fc.Meter, wallet: fc.OfflineWallet) -> None:
    @meter.metered_action(name="slots", action_type="custom", units=2, tags={"agent": "fs"})
    def get_time_slots() -> list[str]:
        return []

    get_time_slots()
    record = only(wallet)
    assert (record.action, record.action_type, record.units, record.credits) == (
        "slots",
        "custom",
        2,
        40,
    )
    assert record.tags == {"agent": "fs"}


def test_keeps_signature_wrapped_and_kind(meter: fc.Meter) -> None:
    def plain(a: int, b: str = "x") -> str:
        return b * a

    async def coro(a: int) -> int:
        return a

    def gen(n: int) -> Iterator[int]:
        yield from range(n)

    async def agen(n: int) -> AsyncIterator[int]:
        for i in range(n):
            yield i

    for func, check in [
        (plain, inspect.isfunction),
        (coro, inspect.iscoroutinefunction),
        (gen, inspect.isgeneratorfunction),
        (agen, inspect.isasyncgenfunction),
    ]:
        wrapped: Any = meter.metered_action(func)
        assert check(wrapped), func
        assert wrapped.__wrapped__ is func
        assert inspect.signature(wrapped) == inspect.signature(func)
        assert wrapped.__name__ == func.__name__


def test_return_value_and_exception_are_unchanged(
    meter: fc.Meter, wallet: fc.OfflineWallet
) -> None:
    sentinel = object()

    @meter.metered_action
    def ok() -> object:
        return sentinel

    class Boom(Exception):
        pass

    error = Boom("no")

    @meter.metered_action
    def fails() -> None:
        raise error

    assert ok() is sentinel
    with pytest.raises(Boom) as info:
        fails()
    assert info.value is error
    failed = next(iter(wallet.records(action=fails.__qualname__)))
    assert failed.outcome == "error"
    assert failed.error_type == "test_return_value_and_exception_are_unchanged.<locals>.Boom"
    assert failed.credits == 20  # the platform bills an action when it runs


def test_failed_actions_are_free_when_the_card_says_so(wallet: fc.OfflineWallet) -> None:
    card = fc.RateCard.agentforce().model_copy(update={"bill_failed": False})
    meter = fc.Meter(rate_card=card, wallet=wallet)

    @meter.metered_action
    def fails() -> None:
        raise RuntimeError

    with pytest.raises(RuntimeError):
        fails()
    assert only(wallet).credits == 0


async def test_coroutine(meter: fc.Meter, wallet: fc.OfflineWallet) -> None:
    @meter.metered_action(name="get_time_slots")
    async def get_time_slots(day: str) -> list[str]:
        await asyncio.sleep(0)
        action = fc.current_action()
        assert action is not None
        action.units = 2
        return [day]

    assert await get_time_slots("mon") == ["mon"]
    record = only(wallet)
    assert (record.units, record.credits) == (2, 40)
    assert fc.current_action() is None


def test_methods_classmethods_and_staticmethods(meter: fc.Meter, wallet: fc.OfflineWallet) -> None:
    class Agent:
        factor = 3

        def __init__(self) -> None:
            self.calls = 0

        @meter.metered_action
        def act(self, x: int) -> int:
            self.calls += 1
            return x * 2

        @meter.metered_action
        @classmethod
        def klass(cls, x: int) -> int:
            return x * cls.factor

        @meter.metered_action
        @staticmethod
        def static(x: int) -> int:
            return x + 1

    agent = Agent()
    assert agent.act(2) == 4
    assert agent.calls == 1
    assert Agent.klass(2) == 6
    assert agent.klass(1) == 3
    assert Agent.static(1) == 2
    names = [r.action for r in wallet.records()]
    assert [n.rsplit(".", 1)[-1] for n in names] == ["act", "klass", "klass", "static"]
    assert names[0].endswith("Agent.act")


# --- generators --------------------------------------------------------------------------------


def test_generator_metered_once_when_exhausted(meter: fc.Meter, wallet: fc.OfflineWallet) -> None:
    seen: list[Any] = []

    @meter.metered_action
    def stream(n: int) -> Iterator[int]:
        for i in range(n):
            seen.append(fc.current_action())
            yield i
        return None

    gen = stream(3)
    assert list(wallet.records()) == []
    assert next(gen) == 0
    # Between items the consumer is not inside the action.
    assert fc.current_action() is None
    assert list(gen) == [1, 2]
    assert len(list(wallet.records())) == 1
    assert seen[0] is not None
    assert all(a is seen[0] for a in seen)


def test_generator_closed_early_is_metered_once(meter: fc.Meter, wallet: fc.OfflineWallet) -> None:
    closed = []

    @meter.metered_action
    def stream() -> Iterator[int]:
        try:
            yield 1
            yield 2
        finally:
            closed.append(True)

    gen = stream()
    assert next(gen) == 1
    gen.close()
    assert closed == [True]
    assert only(wallet).outcome == "ok"
    gen.close()
    assert len(list(wallet.records())) == 1


def test_generator_failure_and_send_throw_pass_through(
    meter: fc.Meter, wallet: fc.OfflineWallet
) -> None:
    @meter.metered_action
    def echo() -> Iterator[Any]:
        received = None
        while True:
            try:
                received = yield received
            except KeyError as exc:
                received = f"caught {exc.args[0]}"
            if received == "stop":
                raise ValueError("stopped")

    gen = echo()
    assert next(gen) is None
    assert gen.send("hello") == "hello"
    assert gen.throw(KeyError("k")) == "caught k"
    with pytest.raises(ValueError, match="stopped"):
        gen.send("stop")
    record = only(wallet)
    assert (record.outcome, record.error_type) == ("error", "ValueError")


def test_generator_return_value_survives(meter: fc.Meter) -> None:
    @meter.metered_action
    def inner() -> Iterator[int]:
        yield 1
        return 42

    def outer() -> Iterator[int]:
        result = yield from inner()
        yield result

    assert list(outer()) == [1, 42]


async def test_async_generator(meter: fc.Meter, wallet: fc.OfflineWallet) -> None:
    @meter.metered_action
    async def stream() -> AsyncIterator[Any]:
        received = None
        for _ in range(3):
            try:
                received = yield received
            except KeyError:
                received = "caught"
            assert fc.current_action() is not None

    agen = stream()
    assert await agen.asend(None) is None
    assert fc.current_action() is None
    assert await agen.asend("x") == "x"
    assert await agen.athrow(KeyError("k")) == "caught"
    with pytest.raises(StopAsyncIteration):
        await agen.asend(None)
    assert only(wallet).outcome == "ok"


async def test_async_generator_closed_early(meter: fc.Meter, wallet: fc.OfflineWallet) -> None:
    @meter.metered_action
    async def stream() -> AsyncIterator[int]:
        yield 1
        yield 2

    agen = stream()
    assert await agen.__anext__() == 1
    await agen.aclose()
    assert only(wallet).outcome == "ok"


# --- the context manager -----------------------------------------------------------------------


def test_action_context_manager_yields_the_handle(
    meter: fc.Meter, wallet: fc.OfflineWallet
) -> None:
    with fc.tags(department="service"), fc.conversation("case-4711"):  # noqa: SIM117
        with meter.action("answer_with_knowledge") as act:
            act.tag(topic="returns")
            assert fc.current_action() is act
            assert act.name == "answer_with_knowledge"
            assert act.conversation_id == "case-4711"
    record = only(wallet)
    assert act.record == record
    assert record.tags == {"department": "service", "topic": "returns"}
    assert record.conversation_id == "case-4711"


async def test_action_async_context_manager(meter: fc.Meter, wallet: fc.OfflineWallet) -> None:
    async with meter.action("lookup", units=3) as act:
        assert fc.current_action() is act
    assert only(wallet).credits == 60


def test_action_scope_records_errors_and_reraises(
    meter: fc.Meter, wallet: fc.OfflineWallet
) -> None:
    scope = meter.action("x")
    with pytest.raises(KeyError), scope:
        raise KeyError("k")
    with scope:
        pass
    outcomes = [r.outcome for r in wallet.records()]
    assert outcomes == ["error", "ok"]


def test_action_scope_decorates(meter: fc.Meter, wallet: fc.OfflineWallet) -> None:
    @meter.action("decorated")
    def f() -> int:
        return 7

    assert f() == 7
    assert only(wallet).action == "decorated"


def test_nested_actions_are_separate_records(meter: fc.Meter, wallet: fc.OfflineWallet) -> None:
    @meter.metered_action
    def inner() -> None:
        assert fc.current_action() is not None

    with meter.action("outer") as outer:
        inner()
        assert fc.current_action() is outer
    names = [r.action.rsplit(".", 1)[-1] for r in wallet.records()]
    assert names == ["outer", "inner"]  # in time order: the outer one started first


# --- tags --------------------------------------------------------------------------------------


def test_tag_precedence(wallet: fc.OfflineWallet) -> None:
    meter = fc.Meter(wallet=wallet, tags={"team": "meter", "a": "meter", "b": "meter", "c": "m"})

    @meter.metered_action(tags={"b": "decorator", "c": "decorator"})
    def f() -> None:
        action = fc.current_action()
        assert action is not None
        action.tag(c="handle")

    with fc.tags(a="context", b="context", c="context"):
        f()
    assert only(wallet).tags == {"team": "meter", "a": "context", "b": "decorator", "c": "handle"}


async def test_context_follows_asyncio_tasks(meter: fc.Meter, wallet: fc.OfflineWallet) -> None:
    @meter.metered_action
    async def step(n: int) -> int:
        await asyncio.sleep(0)
        return n

    async def conversation(cid: str) -> None:
        with fc.conversation(cid), fc.tags(case=cid):
            await asyncio.gather(step(1), step(2))

    await asyncio.gather(conversation("c1"), conversation("c2"))
    by_conversation: dict[str | None, int] = {}
    for record in wallet.records():
        assert record.tags == {"case": record.conversation_id}
        by_conversation[record.conversation_id] = by_conversation.get(record.conversation_id, 0) + 1
    assert by_conversation == {"c1": 2, "c2": 2}


# --- refusals ----------------------------------------------------------------------------------


def test_insufficient_credits_refuses_before_the_body_runs() -> None:
    wallet = fc.OfflineWallet(overdraft="deny")
    wallet.grant(30)
    meter = fc.Meter(wallet=wallet)
    ran = []

    @meter.metered_action
    def act() -> None:
        ran.append(1)

    act()
    with pytest.raises(fc.InsufficientCredits) as info:
        act()
    assert ran == [1]
    assert (info.value.credits, info.value.balance) == (20, 10)
    assert isinstance(info.value, fc.ActionRefused)
    assert meter.stats().refused == 1
    assert wallet.balance().credits == 10
    assert wallet.balance().held == 0


def test_holds_stop_concurrent_actions_overdrawing() -> None:
    wallet = fc.OfflineWallet(overdraft="deny")
    wallet.grant(30)
    meter = fc.Meter(wallet=wallet)
    with meter.action("first"):
        assert wallet.balance().held == 20
        with pytest.raises(fc.InsufficientCredits), meter.action("second"):
            pass
    assert wallet.balance().held == 0
    assert wallet.balance().credits == 10


def test_hard_budget_refuses_and_soft_budget_alerts(wallet: fc.OfflineWallet) -> None:
    meter = fc.Meter(wallet=wallet)
    wallet.set_budget(40, tags={"department": "hr"}, period="month", hard=True)
    wallet.set_budget(20, tags={"department": "sales"}, period=None, hard=False)
    alerts: list[fc.Alert] = []
    wallet.on_alert(alerts.append)

    with fc.tags(department="hr"):
        for _ in range(2):
            with meter.action("a"):
                pass
        with pytest.raises(fc.BudgetExceeded) as info, meter.action("a"):
            pytest.fail("the body must not run")
    assert info.value.spent == 40
    with fc.tags(department="sales"):
        for _ in range(3):
            with meter.action("b"):
                pass
    assert [a.kind for a in alerts] == ["budget"]
    assert alerts[0].value == 40
    budgets = {b.name: b for b in wallet.budgets()}
    assert budgets["department=hr"].spent == 40
    assert budgets["department=sales"].spent == 60


# --- failure isolation -------------------------------------------------------------------------


class BrokenSink:
    authorizes = False

    def authorize(self, action: str, credits: int, tags: Mapping[str, str]) -> None:
        return None

    def submit(self, record: fc.UsageRecord, hold: Any = None, /) -> None:
        raise OSError("disk on fire")

    def flush(self, timeout: float | None = None) -> bool:
        return True

    def shutdown(self, timeout: float | None = None) -> bool:
        return True


def test_a_failing_wallet_never_breaks_the_agent(caplog: pytest.LogCaptureFixture) -> None:
    meter = fc.Meter(wallet=BrokenSink())

    @meter.metered_action
    def act() -> str:
        return "result"

    @meter.metered_action
    def fails() -> None:
        raise ValueError("own error")

    with caplog.at_level(logging.ERROR, logger="flexcredits_sdk"):
        assert act() == "result"
        with pytest.raises(ValueError, match="own error"):
            fails()
    stats = meter.stats()
    assert stats.metering_errors == 2
    assert stats.last_error == "OSError: disk on fire"
    assert "metering failed" in caplog.text


def test_a_failure_when_starting_runs_the_body_unmetered(
    meter: fc.Meter, wallet: fc.OfflineWallet, monkeypatch: pytest.MonkeyPatch
) -> None:
    @meter.metered_action
    def act() -> int:
        return 5

    def broken_clock() -> int:
        raise RuntimeError("clock broke")

    meter.configure(clock=broken_clock)
    assert act() == 5
    with meter.action("scope") as handle:
        handle.tag(still="usable")
    assert list(wallet.records()) == []
    assert meter.stats().metering_errors == 2


def test_a_failing_observer_is_contained(meter: fc.Meter, wallet: fc.OfflineWallet) -> None:
    class Observer:
        def on_start(self, action: fc.Action) -> None:
            raise RuntimeError("observer")

        def on_end(self, action: fc.Action, exc: BaseException | None, credits: int) -> None:
            raise RuntimeError("observer")

        def on_record(self, record: fc.UsageRecord) -> None:
            raise RuntimeError("observer")

    meter.add_observer(Observer())

    @meter.metered_action
    def act() -> int:
        return 1

    assert act() == 1
    assert len(list(wallet.records())) == 1
    assert meter.stats().metering_errors == 3


def test_a_clock_failing_at_the_end_leaves_no_current_action_behind(
    wallet: fc.OfflineWallet,
) -> None:
    calls = iter([1_000_000_000, None])

    def clock() -> int:
        value = next(calls, None)
        if value is None:
            raise RuntimeError("clock broke")
        return value

    meter = fc.Meter(wallet=wallet, clock=clock)

    @meter.metered_action
    def act() -> bool:
        return fc.current_action() is not None

    assert act() is True
    assert fc.current_action() is None
    assert meter.stats().metering_errors == 1


def test_wallets_that_override_submit_get_every_record() -> None:
    from unittest import mock

    class Audited(fc.OfflineWallet):
        def __init__(self) -> None:
            super().__init__()
            self.seen: list[str] = []

        def submit(self, record: fc.UsageRecord, hold: Any = None, /) -> None:
            self.seen.append(record.action)
            super().submit(record, hold)

    audited = Audited()
    meter = fc.Meter(wallet=audited)
    meter.metered_action(name="decorated")(lambda: None)()
    with meter.action("scope"):
        pass
    assert audited.seen == ["decorated", "scope"]
    assert len(list(audited.records())) == 2

    mocked = mock.MagicMock(authorizes=False)
    meter.wallet = mocked  # the same as configure(wallet=...)
    meter.metered_action(name="mocked")(lambda: None)()
    ((record, hold), _) = mocked.submit.call_args
    assert isinstance(record, fc.UsageRecord)
    assert (record.action, hold) == ("mocked", None)
    assert [c[0] for c in mocked.method_calls] == ["submit"]  # nothing else is called


@pytest.mark.parametrize("missing", ["authorizes", "authorize", "submit", "flush", "shutdown"])
def test_a_wallet_without_a_sink_member_is_refused_by_name(missing: str) -> None:
    members = {
        name: getattr(BrokenSink, name)
        for name in ("authorizes", "authorize", "submit", "flush", "shutdown")
        if name != missing
    }
    partial = type("Partial", (), members)()
    with pytest.raises(fc.ConfigurationError, match=f"no '{missing}'") as info:
        fc.Meter(wallet=partial)
    assert info.value.field == "wallet"
    meter = fc.Meter()
    with pytest.raises(fc.ConfigurationError, match=f"no '{missing}'"):
        meter.configure(wallet=partial)
    assert isinstance(meter.wallet, fc.OfflineWallet)  # unchanged


def test_a_wallet_whose_submit_is_not_callable_is_refused() -> None:
    members = dict(vars(BrokenSink))
    members["submit"] = "not a method"
    with pytest.raises(fc.ConfigurationError, match="'submit' is not callable"):
        fc.Meter(wallet=type("Odd", (), members)())


def test_a_call_reads_the_clock_at_its_start_and_its_end(wallet: fc.OfflineWallet) -> None:
    reads: list[int] = []

    def clock() -> int:
        reads.append(1_000_000_000 + len(reads) * 1_000_000)
        return reads[-1]

    class Observer:
        def on_start(self, action: fc.Action) -> None: ...
        def on_end(self, action: fc.Action, exc: BaseException | None, credits: int) -> None: ...
        def on_record(self, record: fc.UsageRecord) -> None: ...

    meter = fc.Meter(wallet=wallet, clock=clock)
    meter.add_observer(Observer())
    meter.metered_action(name="observed")(lambda: None)()
    (record,) = list(wallet.records())
    assert len(reads) == 2
    assert (record.start_time_ns, record.duration_ns) == (reads[0], reads[1] - reads[0])


_VARIANTS: dict[str, Any] = {
    "plain": {},
    "context tags": {"context": {"team": "a"}},
    "decorator tags": {"tags": {"agent": "x"}},
    "meter tags": {"meter_tags": {"region": "eu"}},
    "handle tags": {"handle": {"topic": "returns"}},
    "units": {"units": 3},
    "set id": {"set_id": "run-7/step-2"},
    "conversation": {"conversation": "case-1"},
    "everything": {
        "context": {"team": "a", "agent": "ctx"},
        "tags": {"agent": "x"},
        "meter_tags": {"region": "eu", "team": "m"},
        "handle": {"topic": "t"},
        "units": 2,
        "conversation": "case-2",
    },
}


@pytest.mark.parametrize("variant", list(_VARIANTS))
def test_sync_functions_and_action_scopes_make_the_same_records(variant: str) -> None:
    """A decorated sync function and an `action()` scope with the same options make the same
    record: every field but the id and the times, and the set id when the body sets one."""
    options = _VARIANTS[variant]
    records = []
    for how in ("decorated", "scope"):
        wallet = fc.OfflineWallet()
        meter = fc.Meter(wallet=wallet, tags=options.get("meter_tags"), environment="sandbox")

        def body() -> None:
            act = fc.current_action()
            assert act is not None
            if "handle" in options:
                act.tag(**options["handle"])
            if "units" in options:
                act.units = options["units"]
            if "set_id" in options:
                act.set_id(options["set_id"])

        conversation = options.get("conversation")
        talk = fc.conversation(conversation) if conversation else contextlib.nullcontext()
        with fc.tags(**options.get("context", {})), talk:
            if how == "decorated":
                meter.metered_action(name="step", tags=options.get("tags"))(body)()
            else:
                with meter.action("step", tags=options.get("tags")):
                    body()
        (record,) = list(wallet.records())
        assert record.start_time_ns > 0
        assert record.duration_ns >= 0
        records.append(record)
    decorated, scope = records
    if "set_id" in options:
        assert decorated.id == scope.id == options["set_id"]
    else:
        assert decorated.id
        assert scope.id
        assert decorated.id != scope.id  # each action its own fresh id
    untimed = {"id": "", "start_time_ns": 0, "duration_ns": 0}
    assert decorated._replace(**untimed) == scope._replace(**untimed)
    # Equal, and what the options asked for (weakest to strongest tags, see docs/metering.md).
    tags = {
        **options.get("meter_tags", {}),
        **options.get("context", {}),
        **options.get("tags", {}),
        **options.get("handle", {}),
    }
    assert (decorated.action, decorated.outcome, decorated.environment) == ("step", "ok", "sandbox")
    assert decorated.tags == tags
    assert decorated.conversation_id == options.get("conversation")
    assert decorated.units == options.get("units", 1)
    assert decorated.credits == 16 * options.get("units", 1)


# --- configuration -----------------------------------------------------------------------------


def test_functions_decorated_at_import_follow_configure() -> None:
    @fc.metered_action
    def act() -> None:
        return None

    act()
    first = fc.get_meter().wallet
    assert isinstance(first, fc.OfflineWallet)
    assert next(iter(first.records())).credits == 20

    wallet = fc.OfflineWallet()
    fc.configure(wallet=wallet, environment="sandbox")
    act()
    record = only(wallet)
    assert (record.environment, record.credits) == ("sandbox", 16)


def test_configure_reprices_every_decorated_function_first() -> None:
    @fc.metered_action(action_type="custom")
    def act() -> None:
        return None

    card = fc.RateCard(action_types={"standard": {"production": 5}})
    with pytest.raises(fc.UnknownActionType, match="custom"):
        fc.configure(rate_card=card)
    # Nothing changed: the old card still prices the action.
    act()
    wallet = fc.get_meter().wallet
    assert isinstance(wallet, fc.OfflineWallet)
    assert next(iter(wallet.records())).credits == 20


def test_environment_variable_sets_the_default_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FLEXCREDITS_ENVIRONMENT", "sandbox")
    assert fc.Meter().environment == "sandbox"
    assert fc.Meter(environment="production").environment == "production"
    monkeypatch.setenv("FLEXCREDITS_ENVIRONMENT", "staging")
    with pytest.raises(fc.UnknownEnvironment, match="staging"):
        fc.Meter()


def test_module_level_functions_take_an_explicit_meter(
    meter: fc.Meter, wallet: fc.OfflineWallet
) -> None:
    @fc.metered_action(meter=meter)
    def act() -> None:
        return None

    act()
    with fc.action("block", meter=meter):
        pass
    assert len(list(wallet.records())) == 2


# --- one engine, observers and hooks ------------------------------------------------------------


def test_a_scope_entered_from_several_threads_ends_each_threads_own_action(
    meter: fc.Meter, wallet: fc.OfflineWallet
) -> None:
    import threading

    scope = meter.action("shared")
    leaver_in, stayer_in, leaver_out = threading.Event(), threading.Event(), threading.Event()
    ids: dict[str, str] = {}

    def leaver() -> None:  # enters first, leaves first
        with scope as act:
            act.tag(thread="leaver")
            ids["leaver"] = act.id
            leaver_in.set()
            assert stayer_in.wait(10)
        leaver_out.set()

    def stayer() -> None:  # enters second, leaves last
        assert leaver_in.wait(10)
        with scope as act:
            act.tag(thread="stayer")
            ids["stayer"] = act.id
            stayer_in.set()
            assert leaver_out.wait(10)

    threads = [threading.Thread(target=stayer), threading.Thread(target=leaver)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    records = {r.tags["thread"]: r.id for r in wallet.records()}
    assert records == ids


async def test_a_scope_entered_from_concurrent_tasks_ends_each_tasks_own_action(
    meter: fc.Meter, wallet: fc.OfflineWallet
) -> None:
    scope = meter.action("shared")
    first_inside = asyncio.Event()
    second_done = asyncio.Event()

    async def first() -> str:
        async with scope as act:
            first_inside.set()
            await second_done.wait()  # exits after the second task's action ended
            return act.id

    async def second() -> str:
        await first_inside.wait()
        async with scope as act:
            pass
        second_done.set()
        return act.id

    ids = await asyncio.gather(first(), second())
    first_record, second_record = sorted(wallet.records(), key=lambda r: ids.index(r.id))
    assert [first_record.id, second_record.id] == ids
    # Each task ended its own action: the first one's lasted past the end of the second's.
    assert first_record.start_time_ns <= second_record.start_time_ns
    ends = [r.start_time_ns + r.duration_ns for r in (first_record, second_record)]
    assert ends[0] >= ends[1]


def test_a_scope_exited_more_often_than_entered_records_nothing(
    meter: fc.Meter, wallet: fc.OfflineWallet
) -> None:
    scope = meter.action("once")
    with scope:
        pass
    scope.__exit__(None, None, None)
    assert len(list(wallet.records())) == 1


@pytest.mark.parametrize("bad", ["", "x" * 65, "line\nbreak", "nul\x00", 7])
def test_set_id_refuses_ids_no_wallet_could_store(meter: fc.Meter, bad: Any) -> None:
    with meter.action("a") as act, pytest.raises(fc.ConfigurationError) as info:
        act.set_id(bad)
    assert info.value.field == "record_id"
    assert repr(bad)[:20].strip("'") in str(info.value)


def test_an_object_without_the_observer_methods_is_refused(meter: fc.Meter) -> None:
    class Partial:
        def on_start(self, action: fc.Action) -> None: ...

    with pytest.raises(fc.ConfigurationError, match="on_start, on_end and on_record") as info:
        meter.add_observer(Partial())  # type: ignore[arg-type]
    assert info.value.field == "observer"
    assert meter.observers == ()


def test_observers_are_called_in_order_once_each(meter: fc.Meter) -> None:
    calls: list[tuple[str, str]] = []

    class Named:
        def __init__(self, name: str) -> None:
            self.name = name

        def on_start(self, action: fc.Action) -> None:
            calls.append((self.name, "start"))

        def on_end(self, action: fc.Action, exc: BaseException | None, credits: int) -> None:
            calls.append((self.name, f"end {credits}"))

        def on_record(self, record: fc.UsageRecord) -> None:
            calls.append((self.name, f"record {record.credits}"))

    first, second = Named("a"), Named("b")
    meter.add_observer(first)
    meter.add_observer(second)
    meter.add_observer(first)  # no second registration
    assert isinstance(first, fc.Observer)
    meter.metered_action(name="x")(lambda: None)()
    assert calls == [
        ("a", "start"),
        ("b", "start"),
        ("a", "end 20"),
        ("b", "end 20"),
        ("a", "record 20"),
        ("b", "record 20"),
    ]
    meter.remove_observer(first)
    meter.remove_observer(first)  # no error
    assert meter.observers == (second,)


def test_a_meter_hook_reaches_meters_made_before_and_after_it() -> None:
    from flexcredits_sdk import _meter

    seen: list[fc.Meter] = []
    before = fc.Meter()
    hook = seen.append
    _meter.add_meter_hook(hook)
    try:
        assert before in seen
        after = fc.Meter()
        assert after in seen
        count = len(seen)
        after.configure(tags={"team": "a"})
        assert len(seen) == count + 1
        assert seen[-1] is after
    finally:
        _meter._METER_HOOKS.remove(hook)
