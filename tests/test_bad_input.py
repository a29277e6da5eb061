"""Every kind of bad input is refused early with an error that names the field and the value."""

from __future__ import annotations

import datetime as _dt
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import flexcredits_sdk as fc


@pytest.fixture
def meter() -> fc.Meter:
    return fc.Meter(wallet=fc.OfflineWallet())


def noop() -> None:
    return None


@pytest.mark.parametrize(
    ("options", "field", "shown"),
    [
        ({"name": ""}, "name", "''"),
        ({"name": "   "}, "name", "'   '"),
        ({"name": 42}, "name", "42"),
        ({"name": "x" * 201}, "name", "xxx"),
        ({"name": "bad\nname"}, "name", "bad\\nname"),
        ({"units": 0}, "units", "0"),
        ({"units": -1}, "units", "-1"),
        ({"units": 1.5}, "units", "1.5"),
        ({"units": True}, "units", "True"),
        ({"tags": {"k": 1}}, "tags['k']", "1"),
        ({"tags": {"": "v"}}, "tags key", "''"),
        ({"tags": {"k" * 65: "v"}}, "tags key", "kkk"),
        ({"tags": {"k": "v" * 257}}, "tags['k']", "vvv"),
        ({"tags": {f"k{i}": "v" for i in range(33)}}, "tags", "k0"),
        ({"tags": ["k", "v"]}, "tags", "['k', 'v']"),
        ({"action_type": ""}, "action_type", "''"),
    ],
)
def test_decoration_options(
    meter: fc.Meter, options: dict[str, Any], field: str, shown: str
) -> None:
    with pytest.raises(fc.ConfigurationError) as info:
        meter.metered_action(**options)(noop)
    assert info.value.field == field
    assert shown in str(info.value)
    assert isinstance(info.value, ValueError)
    with pytest.raises(fc.ConfigurationError):
        meter.action(options.get("name", "ok"), **{k: v for k, v in options.items() if k != "name"})


def test_unknown_action_type_fails_at_decoration_not_call(meter: fc.Meter) -> None:
    with pytest.raises(fc.UnknownActionType) as info:
        meter.metered_action(action_type="premium")(noop)
    assert info.value.field == "action_type"
    assert info.value.value == "premium"
    assert "'standard'" in str(info.value)
    assert isinstance(info.value, LookupError)


def test_unknown_environment(meter: fc.Meter) -> None:
    with pytest.raises(fc.UnknownEnvironment) as info:
        fc.Meter(environment="prod")
    assert info.value.value == "prod"
    assert isinstance(info.value, LookupError)


def test_not_callable() -> None:
    with pytest.raises(fc.ConfigurationError, match="func"):
        fc.Meter().metered_action(42)  # type: ignore[arg-type]


def test_handle_units_and_tags(meter: fc.Meter) -> None:
    with meter.action("a") as act:
        with pytest.raises(fc.ConfigurationError, match="units=0"):
            act.units = 0
        with pytest.raises(fc.ConfigurationError, match="units='2'"):
            act.set_units("2")  # type: ignore[arg-type]
        with pytest.raises(fc.ConfigurationError, match=r"tags\['k'\]"):
            act.tag(k=3)  # type: ignore[arg-type]
        with pytest.raises(fc.ConfigurationError, match="record_id"):
            act.set_id("")
        act.units = 2
    wallet = meter.wallet
    assert isinstance(wallet, fc.OfflineWallet)
    assert next(iter(wallet.records())).units == 2


def test_too_many_tags_across_sources(meter: fc.Meter) -> None:
    many = {f"k{i}": "v" for i in range(30)}
    with fc.tags(**many), meter.action("a") as act:
        act.tag(x="1", y="2")
        with pytest.raises(fc.ConfigurationError, match="33 tags"):
            act.tag(z="3")
    with (
        fc.tags(**many),
        pytest.raises(fc.ConfigurationError, match="33 tags"),
        fc.tags(a="1", b="2", c="3"),
    ):
        pass


def test_context_scopes() -> None:
    with pytest.raises(fc.ConfigurationError, match="conversation id"):
        fc.conversation("")
    with pytest.raises(fc.ConfigurationError, match="tags"):
        fc.tags(k=5)  # type: ignore[arg-type]


def test_meter_settings() -> None:
    with pytest.raises(fc.ConfigurationError, match="rate_card"):
        fc.Meter(rate_card={"standard": 20})  # type: ignore[arg-type]
    with pytest.raises(fc.ConfigurationError, match="wallet"):
        fc.Meter(wallet=object())  # type: ignore[arg-type]
    with pytest.raises(fc.ConfigurationError, match="clock"):
        fc.Meter(clock=5)  # type: ignore[arg-type]


def test_wallet_arguments() -> None:
    wallet = fc.OfflineWallet()
    naive = _dt.datetime(2026, 1, 1)
    cases: list[tuple[Any, str]] = [
        (lambda: wallet.grant(0), "credits=0"),
        (lambda: wallet.grant(-5), "credits=-5"),
        (lambda: wallet.grant(1.5), "credits=1.5"),
        (lambda: wallet.grant(10, expires_at=naive), "expires_at="),
        (lambda: wallet.grant(10, source=""), "source=''"),
        (lambda: wallet.grant(10, priority="high"), "priority='high'"),
        (lambda: wallet.buy_packs(0), "packs=0"),
        (lambda: wallet.usage(group_by="department"), "group_by='department'"),
        (lambda: wallet.usage(since=naive), "since="),
        (lambda: wallet.usage(bucket="week"), "bucket='week'"),
        (lambda: list(wallet.records(limit=-1)), "limit=-1"),
        (lambda: wallet.set_budget(Decimal("NaN")), "credits=Decimal('NaN')"),
        (lambda: wallet.set_budget(10, period="week"), "period='week'"),
        (lambda: wallet.set_budget(10, hard="yes"), "hard='yes'"),
        (lambda: wallet.on_low_balance("ten", print), "threshold='ten'"),
        (lambda: wallet.on_low_balance("150%", print), "threshold='150%'"),
        (lambda: wallet.on_low_balance(10, "print"), "callback='print'"),
        (lambda: fc.OfflineWallet(overdraft="maybe"), "overdraft='maybe'"),
        (lambda: fc.derive_id("", 1), "run_id=''"),
        (lambda: fc.derive_id("run", 1.5), "step=1.5"),
    ]
    for call, expected in cases:
        with pytest.raises(fc.ConfigurationError) as info:
            call()
        assert expected in str(info.value), (expected, str(info.value))
    assert wallet.balance().granted == 0


@pytest.mark.parametrize(
    ("text", "fmt", "field"),
    [
        ("{not json", "json", "rate_card"),
        ("[1, 2]", "json", "rate_card"),
        ('{"action_types": {"standard": {"production": 0.5}}}', "json", "action_types.standard"),
        ('{"action_types": {"standard": {"production": -1}}}', "json", "action_types.standard"),
        ('{"action_types": {"standard": {"production": "abc"}}}', "json", "action_types.standard"),
        ('{"action_types": {}}', "json", "action_types"),
        ('{"name": "x"}', "json", "action_types"),
        ('{"action_types": {"standard": {"production": 1}}, "colour": "red"}', "json", "colour"),
        (
            '{"action_types": {"standard": {"production": 1}}, "pack_credits": 0}',
            "json",
            "pack_credits",
        ),
        ("action_types = [", "toml", "rate_card"),
        ("[action_types]\nstandard = { production = 0.5 }\n", "toml", "action_types.standard"),
    ],
)
def test_malformed_rate_cards(text: str, fmt: str, field: str, tmp_path: Path) -> None:
    with pytest.raises(fc.RateCardError) as info:
        fc.RateCard.loads(text, format=fmt)  # type: ignore[arg-type]
    assert info.value.field.startswith(field), info.value
    path = tmp_path / f"card.{fmt}"
    path.write_text(text)
    with pytest.raises(fc.RateCardError):
        fc.RateCard.load(path)


def test_rate_card_file_suffix(tmp_path: Path) -> None:
    path = tmp_path / "card.yaml"
    path.write_text("x")
    with pytest.raises(fc.RateCardError, match="path="):
        fc.RateCard.load(path)
    with pytest.raises(fc.RateCardError, match="path="):
        fc.RateCard.agentforce().dump(path)


def test_records_from_bad_data() -> None:
    good = fc.Meter().action("a")
    with good as act:
        pass
    assert act.record is not None
    data = act.record.to_dict()
    for field, value in [
        ("units", 0),
        ("credits", -1),
        ("credits", 1.5),
        ("action", ""),
        ("outcome", "maybe"),
        ("trace_id", "xyz"),
        ("tags", {"k": 1}),
        ("started_at", "2026-01-01T00:00:00"),
    ]:
        with pytest.raises(fc.ConfigurationError) as info:
            fc.UsageRecord.from_dict({**data, field: value})
        assert info.value.field.startswith(field), (field, info.value)
    with pytest.raises(fc.ConfigurationError, match="unknown"):
        fc.UsageRecord.from_dict({**data, "unknown": 1})


@pytest.mark.parametrize("credits", ["1e-1000000", "0e-100000000", Decimal("1e-31")])
def test_credits_with_too_many_decimal_places(credits: str | Decimal) -> None:
    # Checking "1e-100000000" as an int (a ratio of ints) took minutes: the exponent is bounded.
    good = fc.Meter().action("a")
    with good as act:
        pass
    assert act.record is not None
    with pytest.raises(fc.ConfigurationError) as info:
        fc.UsageRecord.from_dict({**act.record.to_dict(), "credits": credits})
    assert info.value.field == "credits"
    assert "at most 30 decimal places" in str(info.value)
    assert str(Decimal(credits)) in str(info.value)


@pytest.mark.parametrize(
    ("credits", "reason"),
    [
        ("100", "is text: pass an int or a decimal.Decimal, e.g. Decimal('100')"),
        ("lots", "is not a decimal number: pass an int or a decimal.Decimal"),
        (1.5, "is a float, and floats are not exact: pass an int or a decimal.Decimal"),
    ],
)
def test_credits_say_what_is_wrong_with_the_value(credits: Any, reason: str) -> None:
    with pytest.raises(fc.ConfigurationError) as info:
        fc.OfflineWallet().grant(credits)
    assert str(info.value) == f"credits={credits!r}: {reason}"
