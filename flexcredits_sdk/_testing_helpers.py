"""The helpers behind the pytest plugin that need no pytest: `FakeClock` and `FlexWallet`.

They are public as `flexcredits_sdk.testing.FakeClock` and `flexcredits_sdk.testing.FlexWallet`;
the plugin itself is `flexcredits_sdk._pytest_plugin`.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from ._action import Action
from ._exceptions import ConfigurationError
from ._format import credits_text, money_text
from ._meter import Meter
from ._pricing import RateCard
from ._records import UsageRecord, datetime_to_ns
from ._validate import check_credits
from .wallets import OfflineWallet

__all__ = ["DEFAULT_START_NS", "FakeClock", "FlexWallet", "cost_table", "text_table"]

#: Where a `FakeClock` starts by default: 2026-01-01T00:00:00Z, in Unix nanoseconds.
DEFAULT_START_NS = 1_767_225_600 * 1_000_000_000


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
        return (
            f"<FlexWallet {credits_text(self.consumed)} credits in {len(self.records())} records>"
        )

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
        return cost_table(self.wallet.records(), self.wallet.rate_card)

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
                f"expected {credits_text(expected)} credits to be consumed, "
                f"got {credits_text(consumed)}\n{self.report()}"
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


def cost_table(records: Iterable[UsageRecord], rate_card: RateCard) -> str:
    """Return what each action of `records` cost, as a text table, the most expensive first.

    Args:
        records: The records to add up, by action name.
        rate_card: The rate card that turns credits into money.
    """
    rows: dict[str, list[Any]] = {}
    calls = 0
    total: int | Decimal = 0
    for record in records:
        row = rows.setdefault(record.action, [0, 0])
        row[0] += 1
        row[1] += record.credits
        calls += 1
        total += record.credits
    ordered = sorted(rows.items(), key=lambda kv: (-kv[1][1], kv[0]))
    body = [
        [name, f"{count:,}", *_amounts(credits, rate_card)] for name, (count, credits) in ordered
    ]
    return text_table(
        ["action", "calls", "credits", "money"],
        [*body, ["total", f"{calls:,}", *_amounts(total, rate_card)]],
        align="<>>>",
    )


def _amounts(credits: int | Decimal, rate_card: RateCard) -> list[str]:
    """Return `credits` as a person reads them: the credits exactly and their price to the cent."""
    return [credits_text(credits), money_text(rate_card.usd(credits))]


def text_table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str) -> str:
    """Return `rows` under `header` as lines of aligned columns, each indented by two spaces.

    Args:
        header: The column names.
        rows: The cells of each row, as text.
        align: One ``<`` (left) or ``>`` (right) per column.
    """
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]
    lines = []
    for cells in [header, *rows]:
        padded = (
            f"{cell:{side}{width}}" for cell, side, width in zip(cells, align, widths, strict=True)
        )
        lines.append(("  " + "  ".join(padded)).rstrip())
    return "\n".join(lines)
