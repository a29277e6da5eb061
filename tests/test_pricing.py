"""Rate cards: prices, money, files."""

from __future__ import annotations

import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

import flexcredits_sdk as fc
from flexcredits_sdk._ledger import Ledger
from flexcredits_sdk._pricing import to_exact


def test_agentforce_preset() -> None:
    card = fc.RateCard.agentforce()
    assert card.price("standard", "production") == 20
    assert card.price("custom", "production") == 20
    assert card.price("standard", "sandbox") == 16
    assert card.usd_per_credit == Decimal("0.005")
    assert card.usd(20) == Decimal("0.10")
    assert card.usd(100_000) == Decimal(500)
    assert card.packs_for(100_001) == 2
    assert card.packs_for(0) == 0
    assert card.environments == {"production", "sandbox"}
    assert "2025" in (fc.RateCard.agentforce.__doc__ or "")


def test_action_prices_win_over_types() -> None:
    card = fc.RateCard(
        action_types={"standard": {"production": 20}},
        actions={"search": {"production": "2.5"}},
        credit_price="0.01",
    )
    assert card.price("standard", "production", action="search") == Decimal("2.5")
    assert card.price("standard", "production", action="other") == 20
    assert card.usd(Decimal("2.5")) == Decimal("0.025")
    meter = fc.Meter(rate_card=card, wallet=fc.OfflineWallet(rate_card=card))

    @meter.metered_action(name="search", units=3)
    def search() -> None:
        return None

    search()
    wallet = meter.wallet
    assert isinstance(wallet, fc.OfflineWallet)
    assert next(iter(wallet.records())).credits == Decimal("7.5")


def test_no_float_ever() -> None:
    with pytest.raises(fc.RateCardError) as info:
        fc.RateCard(action_types={"standard": {"production": 0.1}})
    assert str(info.value) == (
        "action_types.standard.production=0.1: floats are not exact; "
        'write the number as a string, e.g. "0.5"'
    )
    with pytest.raises(fc.RateCardError, match="pack_price"):
        fc.RateCard(action_types={"standard": {"production": 1}}, pack_price=500.0)


@pytest.mark.parametrize("suffix", ["json", "toml"])
def test_files_round_trip(tmp_path: Path, suffix: str) -> None:
    card = fc.RateCard(
        name="mine",
        description='with "quotes" and ünicode',
        action_types={"standard": {"production": 20, "sandbox": 16}, "voice": {"production": 30}},
        actions={"weird name": {"production": "0.25"}},
        pack_credits=25_000,
        pack_price="200",
        credit_price="0.01",
        bill_failed=False,
    )
    path = tmp_path / f"card.{suffix}"
    card.dump(path)
    again = fc.RateCard.load(path)
    assert again == card
    assert again.price("standard", "production", action="weird name") == Decimal("0.25")
    assert fc.RateCard.loads(card.dumps(suffix), format=suffix) == card  # type: ignore[arg-type]


def test_hand_written_toml(tmp_path: Path) -> None:
    path = tmp_path / "card.toml"
    path.write_text(
        'name = "team"\npack_price = "500"\n\n[action_types]\n'
        "standard = { production = 20, sandbox = 16 }\n"
    )
    card = fc.RateCard.load(path)
    assert card.price("standard", "sandbox") == 16
    assert card.usd_per_credit == Decimal("0.005")


def test_unknown_type_and_environment_messages() -> None:
    card = fc.RateCard.agentforce()
    with pytest.raises(fc.UnknownActionType, match=r"prices \['custom', 'standard'\]"):
        card.price("voice", "production")
    with pytest.raises(fc.UnknownEnvironment, match="staging"):
        card.price("standard", "staging")


# --- defaults and presets -------------------------------------------------------------------


def test_a_card_with_only_action_types_takes_the_defaults() -> None:
    card = fc.RateCard(action_types={"standard": {"production": 20}})
    assert (card.name, card.description, card.currency) == ("custom", "", "USD")
    assert (card.pack_credits, card.pack_price, card.credit_price) == (100_000, Decimal(500), None)
    assert card.bill_failed is True
    assert card.actions == {}
    assert card.usd_per_credit == Decimal("0.005")


def test_the_agentforce_preset_in_full() -> None:
    card = fc.RateCard.agentforce()
    assert (card.name, card.description) == (
        "agentforce",
        "Salesforce Agentforce Flex Credits (2025-05-15)",
    )
    assert card.action_types == {
        "standard": {"production": 20, "sandbox": 16},
        "custom": {"production": 20, "sandbox": 16},
    }
    assert (card.pack_credits, card.pack_price, card.credit_price) == (100_000, Decimal(500), None)


def test_a_rate_card_is_frozen() -> None:
    card = fc.RateCard.agentforce()
    with pytest.raises(ValidationError) as info:
        card.pack_price = Decimal(1)
    assert "pack_price" in str(info.value)
    assert "frozen" in str(info.value)
    assert "input_value=Decimal('1')" in str(info.value)
    assert card.pack_price == 500


# --- exact numbers --------------------------------------------------------------------------


def test_to_exact_returns_ints_for_whole_numbers() -> None:
    assert to_exact(7) == 7
    whole = to_exact(" 20.000 ")
    assert (whole, type(whole)) == (20, int)
    assert type(to_exact(Decimal("1E+2"))) is int
    assert to_exact("2.50") == Decimal("2.50")
    assert str(to_exact("2.50")) == "2.50"  # the written form is kept
    assert to_exact(Decimal("-0.5")) == Decimal("-0.5")


@given(st.decimals(min_value=-(10**12), max_value=10**12, places=4, allow_nan=False))
def test_to_exact_keeps_every_decimal_exactly(value: Decimal) -> None:
    exact = to_exact(str(value))
    assert exact == value
    assert isinstance(exact, int) == (value == value.to_integral_value())


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (True, "value=True: must be a number, not a boolean"),
        (False, "value=False: must be a number, not a boolean"),
        (0.5, 'value=0.5: floats are not exact; write the number as a string, e.g. "0.5"'),
        ("abc", "value='abc': is not a decimal number"),
        ("", "value='': is not a decimal number"),
        ("NaN", "value=Decimal('NaN'): must be finite"),
        (Decimal("-Infinity"), "value=Decimal('-Infinity'): must be finite"),
        (None, "value=None: must be an int, a Decimal or a decimal string"),
        ([1], "value=[1]: must be an int, a Decimal or a decimal string"),
    ],
)
def test_to_exact_refuses_what_is_not_an_exact_number(value: object, message: str) -> None:
    with pytest.raises(fc.RateCardError) as info:
        to_exact(value)
    assert (info.value.field, str(info.value)) == ("value", message)
    with pytest.raises(fc.RateCardError) as info:
        to_exact(value, "credits")
    assert str(info.value) == message.replace("value=", "credits=", 1)


@pytest.mark.parametrize(
    "value", ["1e30", "-1e30", 10**30, -(10**30), "1e1000000", Decimal("9.9e99")]
)
def test_to_exact_refuses_numbers_too_large_to_be_credits(value: object) -> None:
    # Turning "1e1000000" into an int alone took minutes: the size is checked first.
    with pytest.raises(fc.RateCardError) as info:
        to_exact(value, "credits")
    assert info.value.field == "credits"
    assert info.value.value == (Decimal(value) if isinstance(value, str) else value)
    assert str(info.value).endswith(": must be less than 10**30 in magnitude")
    assert to_exact(10**30 - 1) == 10**30 - 1
    assert to_exact("0E+1000000") == 0


# --- bad input names the field and the value ------------------------------------------------

PRICES = {"standard": {"production": 20}}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"action_types": {"standard": {"production": True}}},
            "action_types.standard.production=True: must be a number, not a boolean",
        ),
        (
            {"action_types": {"standard": {"production": None}}},
            "action_types.standard.production=None: must be an int, a Decimal or a decimal string",
        ),
        (
            {"action_types": {"standard": {"production": "-1"}}},
            "action_types.standard.production='-1': must not be negative",
        ),
        (
            {"action_types": PRICES, "actions": {"search": {"production": "1/2"}}},
            "actions.search.production='1/2': is not a decimal number",
        ),
        (
            {"action_types": PRICES, "pack_price": True},
            "pack_price=True: must be a number, not a boolean",
        ),
        (
            {"action_types": PRICES, "pack_price": None},
            "pack_price=None: must be an int, a Decimal or a decimal string",
        ),
        ({"action_types": PRICES, "pack_price": -1}, "pack_price=-1: must not be negative"),
        (
            {"action_types": PRICES, "credit_price": False},
            "credit_price=False: must be a number, not a boolean",
        ),
        (
            {"action_types": PRICES, "credit_price": "inf"},
            "credit_price='inf': must be finite",
        ),
        (
            {"action_types": PRICES, "pack_credits": True},
            "pack_credits=True: Input should be a valid integer",
        ),
        (
            {"action_types": PRICES, "pack_credits": 0},
            "pack_credits=0: Input should be greater than 0",
        ),
        ({"action_types": {}}, "action_types={}: must price at least one type"),
        ({"action_types": None}, "action_types=None: Input should be a valid dictionary"),
        ({}, "action_types: is required"),
        ({"action_types": PRICES, "extra": 1}, "extra=1: Extra inputs are not permitted"),
        ({"action_types": PRICES, "currency": "EUR"}, "currency='EUR': Input should be 'USD'"),
    ],
)
def test_bad_fields_name_the_field_and_the_value(fields: dict[str, object], message: str) -> None:
    with pytest.raises(fc.RateCardError) as info:
        fc.RateCard(**fields)
    assert str(info.value) == message
    assert info.value.field == message.split("=", 1)[0].split(":", 1)[0]


def test_zero_is_a_price() -> None:
    card = fc.RateCard(action_types={"free": {"production": 0}}, pack_price=0)
    assert card.price("free", "production") == 0
    assert card.usd(1000) == 0


@pytest.mark.parametrize("method", ["usd", "packs_for"])
@pytest.mark.parametrize(
    ("credits", "reason"),
    [
        (None, "is missing: pass an int or a decimal.Decimal"),
        (True, "must be a number, not a boolean"),
        (0.5, "is a float, and floats are not exact: pass an int or a decimal.Decimal"),
        ("20", "is text: pass an int or a decimal.Decimal, e.g. Decimal('20')"),
        ("twenty", "is not a decimal number: pass an int or a decimal.Decimal"),
        ([20], "is a list: pass an int or a decimal.Decimal"),
        (Decimal("-Infinity"), "must be finite"),
    ],
)
def test_money_questions_refuse_what_is_not_credits(
    method: str, credits: object, reason: str
) -> None:
    card = fc.RateCard.agentforce()
    with pytest.raises(fc.RateCardError) as info:
        getattr(card, method)(credits)
    assert (info.value.field, info.value.value) == ("credits", credits)
    assert str(info.value) == f"credits={credits!r}: {reason}"


def test_unknown_type_and_environment_name_the_field_and_the_value() -> None:
    card = fc.RateCard(action_types={"standard": {"production": 20}}, name="team")
    with pytest.raises(fc.UnknownActionType) as info:
        card.price("voice", "production")
    assert str(info.value) == "action_type='voice': rate card 'team' prices ['standard']"
    assert (info.value.field, info.value.value) == ("action_type", "voice")
    with pytest.raises(fc.UnknownEnvironment) as env:
        card.price("standard", "staging")
    assert str(env.value) == (
        "environment='staging': rate card 'team' prices 'standard' in ['production']"
    )
    assert (env.value.field, env.value.value) == ("environment", "staging")
    assert isinstance(env.value, LookupError)


def test_check_environment() -> None:
    card = fc.RateCard.agentforce()
    assert card.check_environment("sandbox") == "sandbox"
    for bad in ("staging", None, 1):
        with pytest.raises(fc.UnknownEnvironment) as info:
            card.check_environment(bad)
        assert (info.value.field, info.value.value) == ("environment", bad)
        assert str(info.value) == (
            f"environment={bad!r}: rate card 'agentforce' prices ['production', 'sandbox']"
        )


def test_a_price_for_an_action_wins_only_for_that_action() -> None:
    card = fc.RateCard(
        action_types={"standard": {"production": 20, "sandbox": 16}},
        actions={"search": {"production": 2}},
    )
    assert card.price("standard", "production") == 20
    assert card.price("standard", "sandbox", action="other") == 16
    with pytest.raises(fc.UnknownEnvironment, match=r"prices 'standard' in \['production'\]"):
        card.price("standard", "sandbox", action="search")  # its own prices, not its type's
    assert card.price("unpriced", "production", action="search") == 2


# --- money ----------------------------------------------------------------------------------


def test_packs_for() -> None:
    card = fc.RateCard.agentforce()
    assert card.packs_for(1) == 1
    assert card.packs_for(Decimal("0.001")) == 1
    assert card.packs_for(100_000) == 1
    assert card.packs_for(0) == 0
    assert card.packs_for(-5) == 0


credits_amounts = st.one_of(
    st.integers(min_value=-(10**9), max_value=10**9),
    st.decimals(min_value=-(10**9), max_value=10**9, places=3, allow_nan=False),
)


@given(
    credits=credits_amounts,
    packs=st.integers(min_value=-(10**6), max_value=10**6),
    pack_credits=st.integers(min_value=1, max_value=10**6),
    pack_price=st.decimals(min_value=0, max_value=10**6, places=2, allow_nan=False),
)
def test_money_is_exact(
    credits: int | Decimal, packs: int, pack_credits: int, pack_price: Decimal
) -> None:
    card = fc.RateCard(
        action_types={"standard": {"production": 1}},
        pack_credits=pack_credits,
        pack_price=pack_price,
    )
    assert card.usd(packs * pack_credits) == packs * pack_price  # whole packs: their price
    assert card.usd(credits) == credits * pack_price / pack_credits  # at most one rounding
    covering = card.packs_for(credits)
    assert covering >= 0
    assert covering * pack_credits >= credits
    assert covering == 0 or (covering - 1) * pack_credits < credits


def test_a_pack_price_that_does_not_divide_costs_whole_packs_exactly() -> None:
    card = fc.RateCard(action_types=PRICES, pack_credits=30_000, pack_price=100)
    assert card.usd(30_000) == 100
    assert card.usd(3) == Decimal("0.01")
    assert card.usd(1) == Decimal("0.003333333333333333333333333333")  # rounded once
    ledger = Ledger(card)
    ledger.grant(60_000, now_ns=0)
    assert ledger.balance(0).usd == 200


def test_credit_price_wins_over_packs() -> None:
    card = fc.RateCard(action_types=PRICES, credit_price="0.01", pack_price=1)
    assert card.usd_per_credit == Decimal("0.01")
    assert card.usd(3) == Decimal("0.03")


# --- files ----------------------------------------------------------------------------------

CARD_TEXT_JSON = """\
{
  "name": "mine",
  "description": "",
  "currency": "USD",
  "pack_credits": 25000,
  "pack_price": "200",
  "bill_failed": true,
  "action_types": {
    "standard": {
      "production": 20,
      "us-east": "2.5"
    }
  },
  "actions": {
    "a_b": {
      "production": 1
    },
    "x y": {
      "production": 3
    }
  }
}
"""

CARD_TEXT_TOML = """\
name = "mine"
description = ""
currency = "USD"
pack_credits = 25000
pack_price = "200"
bill_failed = true

[action_types]
standard = { production = 20, us-east = "2.5" }

[actions]
a_b = { production = 1 }
"x y" = { production = 3 }
"""


def written_card() -> fc.RateCard:
    return fc.RateCard(
        name="mine",
        pack_credits=25_000,
        pack_price="200",
        action_types={"standard": {"production": 20, "us-east": "2.5"}},
        actions={"a_b": {"production": 1}, "x y": {"production": 3}},
    )


def test_dumps_writes_plain_json_and_toml() -> None:
    card = written_card()
    assert card.dumps() == CARD_TEXT_JSON
    assert card.dumps("toml") == CARD_TEXT_TOML
    assert fc.RateCard.loads(CARD_TEXT_JSON) == card
    assert fc.RateCard.loads(CARD_TEXT_TOML, format="toml") == card


def test_load_and_dump_take_a_str_path(tmp_path: Path) -> None:
    card = written_card()
    for suffix, text in ((".json", CARD_TEXT_JSON), (".TOML", CARD_TEXT_TOML)):
        path = str(tmp_path / f"card{suffix}")
        card.dump(path)
        assert Path(path).read_text(encoding="utf-8") == text
        assert fc.RateCard.load(path) == card


def test_files_are_utf_8(tmp_path: Path) -> None:
    path = tmp_path / "card.toml"
    path.write_bytes('description = "caf\u00e9"\n[action_types]\na = { p = 1 }\n'.encode())
    assert fc.RateCard.load(path).description == "caf\u00e9"


def test_files_are_utf_8_whatever_the_locale(tmp_path: Path) -> None:
    source = tmp_path / "card.toml"
    source.write_bytes('description = "caf\u00e9"\n[action_types]\na = { p = 1 }\n'.encode())
    script = "import sys, flexcredits_sdk as fc; fc.RateCard.load(sys.argv[1]).dump(sys.argv[2])"
    ascii_locale = {"LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}
    ascii_locale["PYTHONPATH"] = str(Path(fc.__file__).parent.parent)  # this very package
    done = subprocess.run(
        [sys.executable, "-c", script, str(source), str(tmp_path / "again.json")],
        env={**os.environ, **ascii_locale},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    # What dump writes is ASCII: JSON and TOML escape every other character.
    again = (tmp_path / "again.json").read_bytes()
    assert b'"description": "caf\\u00e9"' in again
    assert fc.RateCard.load(tmp_path / "again.json").description == "caf\u00e9"


@pytest.mark.parametrize("method", ["load", "dump"])
def test_a_path_must_end_in_json_or_toml(tmp_path: Path, method: str) -> None:
    path = str(tmp_path / "card.yaml")
    call = fc.RateCard.load if method == "load" else fc.RateCard.agentforce().dump
    with pytest.raises(fc.RateCardError) as info:
        call(path)
    assert (info.value.field, info.value.value) == ("path", path)
    assert str(info.value) == f"path={path!r}: must end in .json or .toml"


def test_text_that_does_not_parse_names_the_format_and_the_text(tmp_path: Path) -> None:
    text = "{" + "x" * 80
    with pytest.raises(fc.RateCardError) as info:
        fc.RateCard.loads(text)
    assert (info.value.field, info.value.value) == ("rate_card", text[:60])
    assert str(info.value).startswith(f"rate_card={text[:60]!r}: is not valid JSON: ")
    path = tmp_path / "card.toml"
    path.write_text("name = ", encoding="utf-8")
    with pytest.raises(fc.RateCardError) as info:
        fc.RateCard.load(path)
    assert str(info.value).startswith(f"rate_card={str(path)!r}: is not valid TOML: ")


def test_text_that_is_not_an_object() -> None:
    with pytest.raises(fc.RateCardError) as info:
        fc.RateCard.loads("[1, 2]")
    assert (info.value.field, info.value.value) == ("rate_card", [1, 2])
    assert str(info.value) == "rate_card=[1, 2]: must be a JSON object or TOML table"


def _card_with_names(**options: object) -> fc.RateCard:
    return fc.RateCard(
        name="team",
        action_types={"standard": {"production": 20}},
        actions={"search_knowledge": {"production": 2}},
        **options,
    )


def test_an_unlisted_action_name_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    meter = fc.Meter(rate_card=_card_with_names(), wallet=fc.OfflineWallet())
    with caplog.at_level("WARNING", logger="flexcredits_sdk"):
        for _ in range(3):
            meter.action("search_knowlege")  # the typo
        meter.action("search_knowledge")
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1, said
    assert "'search_knowlege'" in said[0]
    assert "did you mean 'search_knowledge'?" in said[0]
    assert "priced by its type 'standard'" in said[0]


def test_a_card_without_action_names_never_warns(caplog: pytest.LogCaptureFixture) -> None:
    meter = fc.Meter(wallet=fc.OfflineWallet())
    with caplog.at_level("WARNING", logger="flexcredits_sdk"):
        meter.action("anything_at_all")
    assert caplog.records == []


def test_a_strict_card_refuses_unlisted_names_at_decoration(tmp_path: Path) -> None:
    card = _card_with_names(strict=True)
    meter = fc.Meter(rate_card=card, wallet=fc.OfflineWallet())
    with pytest.raises(fc.UnknownActionType) as info:

        @meter.metered_action(name="search_knowlege")
        def search() -> None: ...

    assert (info.value.field, info.value.value) == ("action", "search_knowlege")
    assert "did you mean 'search_knowledge'?" in str(info.value)
    assert "strict" in str(info.value)
    assert meter.action("search_knowledge") is not None
    for suffix in (".json", ".toml"):
        card.dump(tmp_path / f"card{suffix}")
        assert fc.RateCard.load(tmp_path / f"card{suffix}").strict is True


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"strict": "yes", "actions": {"a": {"production": 1}}}, "strict"),
        ({"strict": True}, "strict"),  # nothing listed: nothing could be priced
    ],
)
def test_strict_is_validated(options: dict[str, object], field: str) -> None:
    with pytest.raises(fc.RateCardError) as info:
        fc.RateCard(action_types={"standard": {"production": 20}}, **options)
    assert info.value.field == field


def test_a_rate_card_file_that_does_not_parse_names_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "card.toml"
    path.write_text('name = "team"\npack_credits = 100000\npack_price = ]\n', encoding="utf-8")
    with pytest.raises(fc.RateCardError) as info:
        fc.RateCard.load(path)
    message = str(info.value)
    assert f"rate_card='{path}': is not valid TOML" in message
    assert f"({path}, line 3, column" in message
    assert "pack_credits" not in message  # not the file's text


def test_a_missing_rate_card_field_names_its_path_not_the_whole_input(tmp_path: Path) -> None:
    path = tmp_path / "card.json"
    path.write_text('{"name": "team", "pack_credits": 1000, "pack_price": "5"}', encoding="utf-8")
    with pytest.raises(fc.ConfigurationError) as info:
        fc.RateCard.load(path)
    assert str(info.value) == f"action_types: is required ({path})"
