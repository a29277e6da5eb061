"""The pytest plugin, run in inner pytest sessions: fixture, marker, report, failure output."""

from __future__ import annotations

import pytest

import flexcredits_sdk as fc
from flexcredits_sdk import _default

pytest_plugins = ["pytester"]

AGENT = """
import pytest

import flexcredits_sdk as fc


@fc.metered_action(name="search")
def search(query, hits=1):
    fc.current_action().units = hits
    return [query] * hits


@fc.metered_action(name="answer")
def answer(question):
    search(question)
    return "ok"
"""


@pytest.fixture(autouse=True)
def _inner_ini(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")


def make_tests(pytester: pytest.Pytester, body: str) -> None:
    pytester.makepyfile(test_agent=AGENT + body)


def test_flex_wallet_records_and_assertions_pass(pytester: pytest.Pytester) -> None:
    make_tests(
        pytester,
        """
from flexcredits_sdk.testing import DEFAULT_START_NS


def test_costs(flex_wallet):
    answer("refund?")
    search("policy", hits=2)
    flex_wallet.assert_consumed(80)
    flex_wallet.assert_actions(["answer", "search", "search"])
    assert [r.units for r in flex_wallet.records(action="search")] == [1, 2]
    assert flex_wallet.consumed == 80
    assert fc.get_meter().wallet is flex_wallet.wallet


def test_ids_and_clock_are_deterministic(flex_wallet):
    search("a")
    flex_wallet.clock.advance(seconds=2)
    search("b")
    first, second = flex_wallet.records()
    assert first.id == "019b76da-a800-7000-8000-000000000001"
    assert second.id == "019b76da-afd0-7000-8000-000000000002"
    assert first.start_time_ns == DEFAULT_START_NS
    assert second.start_time_ns == DEFAULT_START_NS + 2_000_000_000


def test_tags_filter(flex_wallet):
    with fc.tags(department="billing"):
        search("a")
    search("b")
    assert len(flex_wallet.records(tags={"department": "billing"})) == 1


def test_each_test_gets_a_fresh_wallet(flex_wallet):
    flex_wallet.assert_consumed(0)
    assert flex_wallet.records() == []
""",
    )
    before = fc.get_meter().wallet
    result = pytester.runpytest("--strict-markers")
    result.assert_outcomes(passed=4)
    assert fc.get_meter().wallet is before
    assert fc.get_meter().observers == ()


def test_assert_consumed_failure_lists_each_action(pytester: pytest.Pytester) -> None:
    make_tests(
        pytester,
        """
def test_costs(flex_wallet):
    answer("refund?")
    search("policy", hits=3)
    flex_wallet.assert_consumed(20)
""",
    )
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*AssertionError: expected 20 credits to be consumed, got 100",
            "*  action  calls  credits  money",
            "*  search      2       80  $0.40",
            "*  answer      1       20  $0.10",
            "*  total       3      100  $0.50",
        ]
    )
    result.stdout.no_fnmatch_line("*testing*.py*")  # the traceback stops at the test


def test_assert_actions_failure_shows_both_lists(pytester: pytest.Pytester) -> None:
    make_tests(
        pytester,
        """
def test_order(flex_wallet):
    answer("refund?")
    flex_wallet.assert_actions(["search", "answer"])
""",
    )
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    assert "expected actions ['search', 'answer'], got ['answer', 'search']" in result.stdout.str()


def test_marker_fails_a_test_that_consumed_too_much(pytester: pytest.Pytester) -> None:
    make_tests(
        pytester,
        """
@pytest.mark.flexcredits(max_credits=40)
def test_over_budget():
    answer("refund?")
    search("policy", hits=2)


@pytest.mark.flexcredits(max_credits=80)
def test_at_budget(flex_wallet):
    answer("refund?")
    search("policy", hits=2)
    flex_wallet.assert_consumed(80)


@pytest.mark.flexcredits(max_credits=40)
def test_failing_for_its_own_reason():
    search("policy", hits=5)
    assert False, "its own failure"
""",
    )
    result = pytester.runpytest("--strict-markers")
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(
        [
            "*_ test_over_budget _*",
            "flexcredits: the test consumed 80 credits, more than max_credits=40 (production)",
            "  action  calls  credits  money",
            "  search      2       60  $0.30",
            "  answer      1       20  $0.10",
            "  total       3       80  $0.40",
        ]
    )
    result.stdout.fnmatch_lines(["*AssertionError: its own failure"])
    assert (
        "more than max_credits=40 (production)"
        not in result.stdout.str().split("test_failing_for_its_own_reason")[-1]
    )


def test_marker_sets_environment_and_rate_card(pytester: pytest.Pytester) -> None:
    make_tests(
        pytester,
        """
from decimal import Decimal

CARD = fc.RateCard(
    name="cheap",
    pack_credits=1000,
    pack_price=Decimal(5),
    action_types={"standard": {"production": 2, "dev": 1}},
)


@pytest.mark.flexcredits(environment="sandbox")
def test_sandbox(flex_wallet):
    answer("refund?")
    flex_wallet.assert_consumed(32)
    assert {r.environment for r in flex_wallet.records()} == {"sandbox"}


@pytest.mark.flexcredits(rate_card=CARD, environment="dev", max_credits=1)
def test_card(flex_wallet):
    search("a")
    assert flex_wallet.wallet.rate_card is CARD


@pytest.mark.flexcredits(rate_card=CARD, environment="dev", max_credits=1)
def test_card_over():
    answer("a")


def test_back_to_default(flex_wallet):
    search("a")
    flex_wallet.assert_consumed(20)
""",
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(
        ["flexcredits: the test consumed 2 credits, more than max_credits=1 (dev)"]
    )
    assert fc.get_meter().environment == "production"


@pytest.mark.parametrize(
    ("marker", "message"),
    [
        ("flexcredits(40)", "ConfigurationError: flexcredits marker=(40,): takes keyword*"),
        ("flexcredits(budget=40)", "ConfigurationError: flexcredits marker='budget': is not one*"),
        ("flexcredits(max_credits=0.5)", "ConfigurationError: max_credits=0.5: *"),
        (
            "flexcredits(rate_card='card')",
            "ConfigurationError: rate_card='card': must be a RateCard",
        ),
        ("flexcredits(environment='staging')", "UnknownEnvironment: environment='staging': *"),
    ],
)
def test_bad_markers_error_with_the_field(
    pytester: pytest.Pytester, marker: str, message: str
) -> None:
    make_tests(
        pytester,
        f"""
@pytest.mark.{marker}
def test_marked():
    search("a")
""",
    )
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*ERROR at setup of test_marked*", f"@pytest.mark.flexcredits: {message}"]
    )
    result.stdout.no_fnmatch_line("*During handling*")


def test_report_lists_tests_most_expensive_first(pytester: pytest.Pytester) -> None:
    make_tests(
        pytester,
        """
def test_cheap(flex_wallet):
    search("a")


def test_expensive(flex_wallet):
    search("a", hits=4)
    answer("b")


def test_free():
    pass


def test_without_fixture():
    search("a", hits=2)
""",
    )
    result = pytester.runpytest("--flexcredits-report")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(
        [
            "*= flexcredits report =*",
            "  credits  money  records  test",
            "      120  $0.60        3  test_agent.py::test_expensive",
            "       40  $0.20        1  test_agent.py::test_without_fixture",
            "       20  $0.10        1  test_agent.py::test_cheap",
            "      180  $0.90        5  total (3 tests)",
        ]
    )
    result.stdout.no_fnmatch_line("*test_free*")
    assert fc.get_meter().observers == ()


def test_report_without_actions_says_so(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_nothing():\n    pass\n")
    result = pytester.runpytest("--flexcredits-report")
    result.stdout.fnmatch_lines(["*= flexcredits report =*", "no metered actions"])


def test_no_report_unless_asked(pytester: pytest.Pytester) -> None:
    make_tests(pytester, "def test_one(flex_wallet):\n    search('a')\n")
    result = pytester.runpytest()
    result.stdout.no_fnmatch_line("*flexcredits report*")


def test_the_option_and_marker_are_documented(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(["*--flexcredits-report*"])
    result = pytester.runpytest("--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.flexcredits(max_credits=None*"])


def test_env_wallets_are_off_under_pytest_and_restored_after(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_default, "_ENV_WALLET_ALLOWED", True)
    pytester.makepyfile(
        """
from flexcredits_sdk import _default


def test_flag():
    assert _default._ENV_WALLET_ALLOWED is False
"""
    )
    pytester.runpytest().assert_outcomes(passed=1)
    assert _default._ENV_WALLET_ALLOWED is True


def test_async_generator_and_nested_actions(pytester: pytest.Pytester) -> None:
    make_tests(
        pytester,
        """
import asyncio


@fc.metered_action(name="fetch")
async def fetch():
    await asyncio.sleep(0)
    return 1


@fc.metered_action(name="stream")
def stream():
    yield from range(3)


@pytest.mark.asyncio
async def test_async(flex_wallet):
    async with fc.action("turn"):
        await asyncio.gather(fetch(), fetch())
    flex_wallet.assert_actions(["turn", "fetch", "fetch"])
    flex_wallet.assert_consumed(60)


def test_generator_and_nesting(flex_wallet):
    with fc.action("outer"):
        assert list(stream()) == [0, 1, 2]
        answer("q")
    flex_wallet.assert_actions(["outer", "stream", "answer", "search"])
    flex_wallet.assert_consumed(80)
""",
    )
    pytester.runpytest("-p", "asyncio").assert_outcomes(passed=2)


def test_the_default_meter_stays_offline_with_flexcredits_url_set(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLEXCREDITS_URL", "http://127.0.0.1:9")  # nothing listens there
    pytester.makepyfile(
        """
import flexcredits_sdk as fc


def test_books_offline():
    fc.metered_action(name="a")(lambda: None)()
    (record,) = list(fc.get_meter().wallet.records())
    assert record.credits == 20
"""
    )
    result = pytester.runpytest_subprocess("-p", "no:asyncio", timeout=60)
    result.assert_outcomes(passed=1)
