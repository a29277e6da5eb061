"""The pytest plugin (the ``pytest11`` entry point ``flexcredits``); see `flexcredits_sdk.testing`.

- The `flex_wallet` fixture and the ``@pytest.mark.flexcredits`` marker.
- ``--flexcredits-report``: each test's records, credits and money travel in its teardown
  report's ``user_properties``, so the totals are added up where the reports arrive: in the
  session itself, or in the pytest-xdist controller from all its workers.
- The network switch: the default meter builds no network wallet from ``FLEXCREDITS_URL``
  from the moment the plugin is loaded, before any conftest is imported, until the session ends.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from decimal import Decimal
from typing import Any

import pytest

from . import _default
from ._action import Action
from ._exceptions import ConfigurationError, FlexCreditsError
from ._format import credits_text, money_text
from ._pricing import RateCard
from ._records import UsageRecord
from ._testing_helpers import FlexWallet, text_table
from ._validate import check_credits

__all__ = ["flex_wallet"]

_MARKER = "flexcredits"
_MARKER_FIELDS = frozenset({"max_credits", "environment", "rate_card"})
_WALLET_KEY = pytest.StashKey[FlexWallet]()
_REPORT_KEY = pytest.StashKey["_Report"]()
_NETWORK_KEY = pytest.StashKey[bool]()

#: The ``user_properties`` of a test's teardown report that carry what the test metered.
RECORDS_PROPERTY = "flexcredits_records"
CREDITS_PROPERTY = "flexcredits_credits"
USD_PROPERTY = "flexcredits_usd"


def _marker_settings(node: pytest.Item) -> dict[str, Any]:
    marker = node.get_closest_marker(_MARKER)
    if marker is None:
        return {}
    if marker.args:
        raise ConfigurationError(
            "flexcredits marker", marker.args, "takes keyword arguments only, e.g. max_credits=60"
        )
    unknown = sorted(marker.kwargs.keys() - _MARKER_FIELDS)
    if unknown:
        raise ConfigurationError(
            "flexcredits marker", unknown[0], f"is not one of {sorted(_MARKER_FIELDS)}"
        )
    settings = dict(marker.kwargs)
    if "max_credits" in settings:
        settings["max_credits"] = check_credits(settings["max_credits"], "max_credits")
    rate_card = settings.get("rate_card")
    if rate_card is not None and not isinstance(rate_card, RateCard):
        raise ConfigurationError("rate_card", rate_card, "must be a RateCard")
    return settings


@pytest.fixture
def flex_wallet(request: pytest.FixtureRequest) -> Iterator[FlexWallet]:
    """A fresh offline wallet on the default meter for this test, removed after it.

    Record ids are deterministic and the meter and wallet share a `FakeClock` (at
    `DEFAULT_START_NS`); the test's ``flexcredits`` marker may set the environment and the
    rate card.
    """
    try:
        settings = _marker_settings(request.node)
        fixture = FlexWallet(
            _default.get_meter(),
            rate_card=settings.get("rate_card"),
            environment=settings.get("environment"),
        ).install()
    except FlexCreditsError as exc:
        error: FlexCreditsError | None = exc
    else:
        error = None
    if error is not None:
        pytest.fail(f"@pytest.mark.flexcredits: {type(error).__name__}: {error}", pytrace=False)
    request.node.stash[_WALLET_KEY] = fixture
    try:
        yield fixture
    finally:
        fixture.uninstall()


class _Tally:
    """Records, credits and money (exact, in USD) of one test or of many."""

    __slots__ = ("credits", "records", "usd")

    def __init__(self) -> None:
        self.records = 0
        self.credits: int | Decimal = 0
        self.usd = Decimal(0)

    def add(self, records: int, credits: int | Decimal, usd: Decimal) -> None:
        self.records += records
        self.credits += credits
        self.usd += usd


class _Report:
    """``--flexcredits-report``: counts the default meter's records per test where tests run,
    and adds up the tallies the teardown reports carry where the reports arrive."""

    def __init__(self) -> None:
        self.running: _Tally | None = None
        self.tests: dict[str, _Tally] = {}

    # --- where tests run: an observer of the default meter ---------------------------------

    def on_start(self, act: Action) -> None:
        return None

    def on_end(self, act: Action, exc: BaseException | None, credits: int | Decimal) -> None:
        return None

    def on_record(self, record: UsageRecord) -> None:
        tally = self.running
        if tally is not None:
            usd = _default.get_meter().rate_card.usd(record.credits)
            tally.add(1, record.credits, usd)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item) -> Generator[None, object, object]:
        self.running = _Tally()
        try:
            return (yield)
        finally:
            self.running = None

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        tally = self.running
        if call.when == "teardown" and tally is not None and tally.records:
            report.user_properties.extend(
                [
                    (RECORDS_PROPERTY, tally.records),
                    (CREDITS_PROPERTY, str(tally.credits)),
                    (USD_PROPERTY, str(tally.usd)),
                ]
            )
        return report

    # --- where reports arrive: this session, or the pytest-xdist controller ----------------

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when != "teardown":
            return
        found = dict(report.user_properties)
        if RECORDS_PROPERTY in found:
            self.tests.setdefault(report.nodeid, _Tally()).add(
                int(str(found[RECORDS_PROPERTY])),
                Decimal(str(found[CREDITS_PROPERTY])),
                Decimal(str(found[USD_PROPERTY])),
            )

    def pytest_terminal_summary(self, terminalreporter: Any, config: pytest.Config) -> None:
        if hasattr(config, "workerinput"):  # a pytest-xdist worker: the controller reports
            return
        terminalreporter.section("flexcredits report")
        if not self.tests:
            terminalreporter.write_line("no metered actions")
            return
        rows = sorted(self.tests.items(), key=lambda kv: (-kv[1].credits, kv[0]))
        total = _Tally()
        lines = []
        for nodeid, tally in rows:
            total.add(tally.records, tally.credits, tally.usd)
            lines.append(_report_row(tally, nodeid))
        lines.append(_report_row(total, f"total ({len(rows)} tests)"))
        table = text_table(["credits", "money", "records", "test"], lines, align=">>><")
        for line in table.splitlines():
            terminalreporter.write_line(line)


def _report_row(tally: _Tally, name: str) -> list[str]:
    return [credits_text(tally.credits), money_text(tally.usd), f"{tally.records:,}", name]


def _network_off(config: pytest.Config) -> None:
    """Switch the default meter's network wallet off for this session (once)."""
    if _NETWORK_KEY not in config.stash:
        config.stash[_NETWORK_KEY] = _default._ENV_WALLET_ALLOWED
        _default._ENV_WALLET_ALLOWED = False


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config) -> None:
    _network_off(early_config)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("flexcredits")
    group.addoption(
        "--flexcredits-report",
        action="store_true",
        default=False,
        help="after the run, list the records, credits and money of each test that metered "
        "actions, the most expensive first",
    )


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    _network_off(config)
    config.addinivalue_line(
        "markers",
        "flexcredits(max_credits=None, environment=None, rate_card=None): run the test with "
        "a fresh flex_wallet and fail it when it consumes more than max_credits",
    )
    if config.getoption("flexcredits_report", False):
        report = config.stash[_REPORT_KEY] = _Report()
        _default.get_meter().add_observer(report)
        config.pluginmanager.register(report, "flexcredits-report")


def pytest_unconfigure(config: pytest.Config) -> None:
    if _NETWORK_KEY in config.stash:
        _default._ENV_WALLET_ALLOWED = config.stash[_NETWORK_KEY]
        del config.stash[_NETWORK_KEY]
    report = config.stash.get(_REPORT_KEY, None)
    if report is not None:
        _default.get_meter().remove_observer(report)
        config.pluginmanager.unregister(report)
        del config.stash[_REPORT_KEY]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        names = getattr(item, "fixturenames", None)
        if item.get_closest_marker(_MARKER) and names is not None and "flex_wallet" not in names:
            names.append("flex_wallet")


@pytest.hookimpl(trylast=True)
def pytest_runtest_call(item: pytest.Item) -> None:
    """Fail a test whose actions consumed more than its marker's `max_credits`."""
    limit = _marker_settings(item).get("max_credits")
    fixture = item.stash.get(_WALLET_KEY, None)
    if limit is None or fixture is None:
        return
    consumed = fixture.consumed
    if consumed > limit:
        pytest.fail(
            f"flexcredits: the test consumed {credits_text(consumed)} credits, more than "
            f"max_credits={credits_text(limit)} ({fixture.meter.environment})\n"
            f"{fixture.report()}",
            pytrace=False,
        )
