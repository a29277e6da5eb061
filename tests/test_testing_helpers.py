"""`FakeClock` and `FlexWallet` used directly, and the plugin's fixture in this very suite."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

import flexcredits_sdk as fc
from flexcredits_sdk.testing import DEFAULT_START_NS, FakeClock, FlexWallet


def test_fake_clock_moves_only_when_told() -> None:
    clock = FakeClock()
    assert clock() == DEFAULT_START_NS == clock()
    assert clock.advance(seconds=1.5) == DEFAULT_START_NS + 1_500_000_000
    assert clock.advance(Decimal("0.25"), ns=1) == DEFAULT_START_NS + 1_750_000_001
    assert clock.advance(dt.timedelta(milliseconds=3)) == DEFAULT_START_NS + 1_753_000_001
    assert repr(clock) == f"FakeClock({clock.now})"


def test_fake_clock_starts_at_an_aware_datetime() -> None:
    clock = FakeClock(dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    assert clock() == DEFAULT_START_NS


@pytest.mark.parametrize(
    "start",
    [dt.datetime(2026, 1, 1), "2026-01-01", 1.5, True],
)
def test_fake_clock_refuses_bad_starts(start: object) -> None:
    with pytest.raises(fc.ConfigurationError) as info:
        FakeClock(start)  # type: ignore[arg-type]
    assert info.value.field == "start"


def test_fake_clock_refuses_to_go_back() -> None:
    clock = FakeClock()
    with pytest.raises(fc.ConfigurationError) as info:
        clock.advance(seconds=-1)
    assert info.value.field == "seconds"
    assert clock() == DEFAULT_START_NS


def test_flex_wallet_on_a_meter_of_ones_own() -> None:
    meter = fc.Meter()
    original = meter.wallet
    act = meter.metered_action(name="act")(lambda: None)
    with_wallet = FlexWallet(meter, environment="sandbox", deterministic_ids=False).install()
    act()
    with_wallet.assert_consumed(16)
    (record,) = list(with_wallet.records())
    assert record.environment == "sandbox"
    assert not record.id.startswith("019b76da-a800-7000-8000")
    assert repr(with_wallet) == "<FlexWallet 16 credits in 1 records>"
    with_wallet.uninstall()
    assert meter.wallet is original
    assert meter.environment == "production"
    assert meter.observers == ()
    act()
    assert len(list(original.records())) == 1  # type: ignore[attr-defined]


def test_the_fixture_works_in_this_suite(flex_wallet: FlexWallet) -> None:
    fc.metered_action(name="x", units=3)(lambda: None)()
    flex_wallet.assert_consumed(60)
    assert flex_wallet.consumed == 60
    assert "  x           1       60  $0.30" in flex_wallet.report()


@pytest.mark.parametrize("bad", ["60", 1.0, -1, True])
def test_assert_consumed_refuses_bad_credits(flex_wallet: FlexWallet, bad: object) -> None:
    with pytest.raises(fc.ConfigurationError) as info:
        flex_wallet.assert_consumed(bad)  # type: ignore[arg-type]
    assert info.value.field == "credits"


@pytest.mark.parametrize("bad", ["answer", ["answer", 3], {"answer"}])
def test_assert_actions_refuses_bad_names(flex_wallet: FlexWallet, bad: object) -> None:
    with pytest.raises(fc.ConfigurationError) as info:
        flex_wallet.assert_actions(bad)  # type: ignore[arg-type]
    assert info.value.field == "names"


def test_decimal_credits_are_compared_exactly(flex_wallet: FlexWallet) -> None:
    card = fc.RateCard(
        name="fractional",
        pack_credits=1000,
        pack_price=Decimal(10),
        action_types={"standard": {"production": Decimal("0.5")}},
    )
    fc.configure(rate_card=card)
    fc.metered_action(name="half")(lambda: None)()
    flex_wallet.assert_consumed(Decimal("0.5"))
    with pytest.raises(AssertionError, match=r"expected 1 credits to be consumed, got 0\.5"):
        flex_wallet.assert_consumed(1)


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"meter": "default"}, "meter"),
        ({"clock": lambda: 0}, "clock"),
        ({"deterministic_ids": "yes"}, "deterministic_ids"),
    ],
)
def test_flex_wallet_refuses_bad_arguments(arguments: dict[str, object], field: str) -> None:
    settings: dict[str, object] = {"meter": fc.Meter(), **arguments}
    with pytest.raises(fc.ConfigurationError) as info:
        FlexWallet(**settings)  # type: ignore[arg-type]
    assert info.value.field == field


def test_all_is_the_public_surface() -> None:
    from flexcredits_sdk import _pytest_plugin, testing

    public = {
        name
        for name, value in vars(testing).items()
        if not name.startswith(("_", "pytest_"))
        and (
            (name.isupper() and name != "TYPE_CHECKING")
            or getattr(value, "__module__", "").startswith("flexcredits_sdk")
        )
    }
    assert testing.__all__ == ["DEFAULT_START_NS", "FakeClock", "FlexWallet", "flex_wallet"]
    assert set(testing.__all__) == public | {"flex_wallet"}  # the fixture: on first use
    assert testing.flex_wallet is _pytest_plugin.flex_wallet
    with pytest.raises(AttributeError, match="no attribute 'flex_wallets'"):
        testing.flex_wallets  # noqa: B018
