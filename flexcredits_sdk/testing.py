"""pytest plugin and helpers for asserting what a code path costs.

Installed with the package (the ``pytest11`` entry point ``flexcredits``), it gives:

- the `flex_wallet` fixture: a fresh `OfflineWallet` as the default meter's wallet for one
  test, with a `FakeClock` and deterministic record ids, and assertion helpers;
- the ``@pytest.mark.flexcredits(max_credits=..., environment=..., rate_card=...)`` marker,
  which fails a test that consumed more than `max_credits`, listing what each action cost;
- ``--flexcredits-report``: credits per test after the run, the most expensive first.

Under pytest the default meter never builds a network wallet from ``FLEXCREDITS_URL``; a test
that wants one configures an `HttpWallet` itself.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterator, Mapping, Sequence
from decimal import Decimal
from typing import Any

import pytest

from . import _default
from ._action import Action
from ._exceptions import ConfigurationError, FlexCreditsError
from ._meter import Meter
from ._pricing import RateCard
from ._records import UsageRecord, datetime_to_ns
from ._validate import check_credits
from .wallets import OfflineWallet

__all__ = ["DEFAULT_START_NS", "FakeClock", "FlexWallet", "flex_wallet"]

#: Where a `FakeClock` starts by default: 2026-01-01T00:00:00Z, in Unix nanoseconds.
DEFAULT_START_NS = 1_767_225_600 * 1_000_000_000

_MARKER = "flexcredits"
_MARKER_FIELDS = frozenset({"max_credits", "environment", "rate_card"})
_WALLET_KEY = pytest.StashKey["FlexWallet"]()
_REPORT_KEY = pytest.StashKey["_Report"]()
_ENV_KEY = pytest.StashKey[bool]()


class FakeClock:
    """A clock in Unix nanoseconds that moves only when told to.

    Args:
        start: Where it starts: Unix nanoseconds or an aware datetime; `DEFAULT_START_NS`
            by default.

    Raises:
        ConfigurationError: `start` is neither an int nor an aware datetime.
    """

    def __init__(self, start: int | _dt.datetime = DEFAULT_START_NS) -> None:
        if isinstance(start, _dt.datetime) and start.tzinfo is not None:
            start = datetime_to_ns(start)
        if isinstance(start, bool) or not isinstance(start, int):
            raise ConfigurationError(
                "start", start, "must be Unix nanoseconds or an aware datetime"
            )
        self.now = start

    def __call__(self) -> int:
        return self.now

    def __repr__(self) -> str:
        return f"FakeClock({self.now})"

    def advance(self, seconds: float | Decimal | _dt.timedelta = 0, *, ns: int = 0) -> int:
        """Move the clock forward; return the new time in Unix nanoseconds.

        Raises:
            ConfigurationError: The move is negative.
        """
        if isinstance(seconds, _dt.timedelta):
            step = seconds // _dt.timedelta(microseconds=1) * 1000 + ns
        else:
            step = round(Decimal(str(seconds)) * 1_000_000_000) + ns
        if step < 0:
            raise ConfigurationError("seconds", seconds, "must not move the clock backwards")
        self.now += step
        return self.now


class _Tracker:
    """A meter observer that gives actions deterministic ids and remembers their start order."""

    def __init__(self, deterministic_ids: bool) -> None:
        self.deterministic_ids = deterministic_ids
        self.started: list[Action] = []

    def on_start(self, act: Action) -> None:
        self.started.append(act)
        if self.deterministic_ids:
            # A UUIDv7 from the (fake) clock's millisecond and the action's sequence number.
            ms = act.start_time_ns // 1_000_000
            act.set_id(f"{ms >> 16:08x}-{ms & 0xFFFF:04x}-7000-8000-{len(self.started):012x}")

    def on_end(self, act: Action, exc: BaseException | None, credits: int | Decimal) -> None:
        return None

    def on_record(self, record: UsageRecord) -> None:
        return None


class FlexWallet:
    """What the `flex_wallet` fixture gives a test: its wallet, clock, and assertions.

    The fixture makes one for the default meter; `install` and `uninstall` do the same for
    any meter, outside pytest too.

    Args:
        meter: The meter whose wallet it replaces while installed.
        rate_card: The rate card while installed; the meter's when omitted.
        environment: The environment while installed; the meter's when omitted.
        clock: The clock of the meter and the wallet; a new `FakeClock` when omitted.
        deterministic_ids: Give records ids made from the clock and a per-wallet sequence.

    Attributes:
        wallet: The test's `OfflineWallet` (grant credits, set budgets, read usage).
        meter: The meter it is installed on.
        clock: The clock of the meter and the wallet.

    Raises:
        ConfigurationError: `meter` is not a `Meter`, `clock` not a `FakeClock`, or
            `deterministic_ids` not a bool.
    """

    def __init__(
        self,
        meter: Meter,
        *,
        rate_card: RateCard | None = None,
        environment: str | None = None,
        clock: FakeClock | None = None,
        deterministic_ids: bool = True,
    ) -> None:
        if not isinstance(meter, Meter):
            raise ConfigurationError("meter", meter, "must be a flexcredits_sdk.Meter")
        if not isinstance(deterministic_ids, bool):
            raise ConfigurationError("deterministic_ids", deterministic_ids, "must be a bool")
        self.meter = meter
        if clock is not None and not isinstance(clock, FakeClock):
            raise ConfigurationError("clock", clock, "must be a FakeClock")
        self.clock = clock or FakeClock()
        self.wallet = OfflineWallet(
            rate_card=rate_card or meter.rate_card, clock=self.clock, keep_records=None
        )
        self._rate_card = rate_card
        self._environment = environment
        self._tracker = _Tracker(deterministic_ids)
        self._saved: dict[str, Any] | None = None

    def __repr__(self) -> str:
        return f"<FlexWallet {self.consumed} credits in {len(self.records())} records>"

    # --- installing -------------------------------------------------------------------------

    def install(self) -> FlexWallet:
        """Make this the meter's wallet and clock; `uninstall` puts the old ones back."""
        meter = self.meter
        self._saved = {
            "rate_card": meter.rate_card,
            "environment": meter.environment,
            "wallet": meter.wallet,
            "clock": meter.clock,
        }
        meter.configure(
            rate_card=self._rate_card or self.wallet.rate_card,
            environment=self._environment,
            wallet=self.wallet,
            clock=self.clock,
        )
        meter.add_observer(self._tracker)
        return self

    def uninstall(self) -> None:
        """Put the meter's previous wallet, rate card, environment and clock back."""
        self.meter.remove_observer(self._tracker)
        if self._saved is not None:
            self.meter.configure(**self._saved)
            self._saved = None

    # --- reading ----------------------------------------------------------------------------

    @property
    def consumed(self) -> int | Decimal:
        """The credits the test's actions consumed."""
        return sum((r.credits for r in self.wallet.records()), 0)

    def records(
        self, *, action: str | None = None, tags: Mapping[str, str] | None = None
    ) -> list[UsageRecord]:
        """Return the test's records, in the order their actions started.

        Args:
            action: Only records of this action.
            tags: Only records carrying all of these tags.
        """
        order = {a.record.id: i for i, a in enumerate(self._tracker.started) if a.record}
        found = self.wallet.records(action=action, tags=tags)
        return sorted(found, key=lambda r: order.get(r.id, len(order)))

    def report(self) -> str:
        """Return a table of what each action cost, the most expensive first."""
        return _cost_table(list(self.wallet.records()))

    # --- asserting --------------------------------------------------------------------------

    def assert_consumed(self, credits: int | Decimal) -> None:
        """Assert that the test's actions consumed exactly `credits`.

        Raises:
            AssertionError: They consumed another amount (the message lists each action).
            ConfigurationError: `credits` is not a non-negative int or Decimal.
        """
        __tracebackhide__ = True
        expected = check_credits(credits, "credits")
        consumed = self.consumed
        if consumed != expected:
            raise AssertionError(
                f"expected {expected} credits to be consumed, got {consumed}\n{self.report()}"
            )

    def assert_actions(self, names: Sequence[str]) -> None:
        """Assert that exactly these actions ran, in this order (of their start).

        Raises:
            AssertionError: Other actions ran, or in another order.
            ConfigurationError: `names` is a string or not a sequence of strings.
        """
        __tracebackhide__ = True
        if isinstance(names, str) or not isinstance(names, Sequence):
            raise ConfigurationError("names", names, "must be a sequence of action names")
        expected = list(names)
        if not all(isinstance(name, str) for name in expected):
            raise ConfigurationError("names", names, "must be a sequence of action names")
        actual = [r.action for r in self.records()]
        if actual != expected:
            raise AssertionError(f"expected actions {expected}, got {actual}")


def _cost_table(records: Sequence[UsageRecord]) -> str:
    """Return what each action of `records` cost, as a text table, the most expensive first."""
    rows: dict[str, list[Any]] = {}
    for record in records:
        row = rows.setdefault(record.action, [0, 0])
        row[0] += 1
        row[1] += record.credits
    width = max([len("action"), len("total"), *map(len, rows)])
    lines = [f"  {'action':<{width}}  {'calls':>5}  {'credits':>9}"]
    for name, (calls, credits) in sorted(rows.items(), key=lambda kv: (-kv[1][1], kv[0])):
        lines.append(f"  {name:<{width}}  {calls:>5}  {credits:>9}")
    total = sum((r.credits for r in records), 0)
    lines.append(f"  {'total':<{width}}  {len(records):>5}  {total:>9}")
    return "\n".join(lines)


# --- the plugin ---------------------------------------------------------------------------------


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


class _Report:
    """Credits per test, counted from the default meter's records."""

    def __init__(self) -> None:
        self.current: str | None = None
        self.tests: dict[str, list[Any]] = {}

    def on_start(self, act: Action) -> None:
        return None

    def on_end(self, act: Action, exc: BaseException | None, credits: int | Decimal) -> None:
        return None

    def on_record(self, record: UsageRecord) -> None:
        if self.current is not None:
            row = self.tests.setdefault(self.current, [0, 0])
            row[0] += 1
            row[1] += record.credits


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("flexcredits")
    group.addoption(
        "--flexcredits-report",
        action="store_true",
        default=False,
        help="after the run, list the credits each test consumed, the most expensive first",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "flexcredits(max_credits=None, environment=None, rate_card=None): run the test with "
        "a fresh flex_wallet and fail it when it consumes more than max_credits",
    )
    config.stash[_ENV_KEY] = _default._ENV_WALLET_ALLOWED
    _default._ENV_WALLET_ALLOWED = False
    if config.getoption("flexcredits_report", False):
        report = config.stash[_REPORT_KEY] = _Report()
        _default.get_meter().add_observer(report)


def pytest_unconfigure(config: pytest.Config) -> None:
    _default._ENV_WALLET_ALLOWED = config.stash.get(_ENV_KEY, True)
    report = config.stash.get(_REPORT_KEY, None)
    if report is not None:
        _default.get_meter().remove_observer(report)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        names = getattr(item, "fixturenames", None)
        if item.get_closest_marker(_MARKER) and names is not None and "flex_wallet" not in names:
            names.append("flex_wallet")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    report = item.config.stash.get(_REPORT_KEY, None)
    if report is not None:
        report.current = item.nodeid
    yield
    if report is not None:
        report.current = None


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
            f"flexcredits: the test consumed {consumed} credits, more than max_credits={limit} "
            f"({fixture.meter.environment})\n{fixture.report()}",
            pytrace=False,
        )


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    report = config.stash.get(_REPORT_KEY, None)
    if report is None:
        return
    write = terminalreporter.write_line
    terminalreporter.section("flexcredits report")
    rows = sorted(report.tests.items(), key=lambda kv: (-kv[1][1], kv[0]))
    if not rows:
        write("no metered actions")
        return
    write(f"{'credits':>9}  {'actions':>7}  test")
    for nodeid, (actions, credits) in rows:
        write(f"{credits:>9}  {actions:>7}  {nodeid}")
    total = sum((credits for _, credits in report.tests.values()), 0)
    count = sum(actions for actions, _ in report.tests.values())
    write(f"{total:>9}  {count:>7}  total ({len(rows)} tests)")
