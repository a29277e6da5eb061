"""Rate cards: prices, money, files."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

import flexcredits_sdk as fc


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
    assert wallet.records()[0].credits == Decimal("7.5")


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
