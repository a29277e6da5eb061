"""An in-memory wallet holds its recent records only, and its answers stay exact."""

from __future__ import annotations

import datetime as _dt
from typing import Any

import pytest
from fixtures import meter_varied_actions

import flexcredits_sdk as fc
from flexcredits_sdk.testing import FakeClock

START = _dt.datetime(2026, 3, 1, 21, 0, tzinfo=_dt.UTC)


def _both(keep: int) -> tuple[fc.OfflineWallet, fc.OfflineWallet]:
    walls = []
    for keep_records in (keep, None):
        clock = FakeClock(START)
        wallet = fc.OfflineWallet(clock=clock, keep_records=keep_records)
        wallet.buy_packs(1)
        meter_varied_actions(wallet, clock)
        walls.append(wallet)
    return walls[0], walls[1]


EXACT_QUERIES: list[dict[str, Any]] = [
    {},
    {"group_by": ["department"]},
    {"group_by": ["action", "outcome", "department"], "bucket": "day"},
    {"group_by": ["action_type"], "bucket": "month"},
    {"group_by": ["department"], "environment": "production"},
    {"group_by": ["department"], "environment": "sandbox"},
    {"group_by": ["action"], "since": _dt.datetime(2026, 3, 2, tzinfo=_dt.UTC)},
    {"group_by": ["action"], "until": _dt.datetime(2026, 3, 3, tzinfo=_dt.UTC)},
]


@pytest.mark.parametrize("query", EXACT_QUERIES)
def test_usage_is_exact_over_records_no_longer_held(query: dict[str, Any]) -> None:
    bounded, full = _both(keep=256)
    assert 256 <= len(list(bounded.records())) < 256 + 128
    assert bounded.dropped_records == 2_000 - len(list(bounded.records())) > 1_000
    assert full.dropped_records == 0
    assert (bounded.keep_records, full.keep_records) == (256, None)
    assert bounded.balance() == full.balance()
    got, want = bounded.usage(**query), full.usage(**query)
    assert got == want
    assert got.complete
    assert want.complete
    assert sum(row.records for row in got) == sum(row.records for row in want) > 0


@pytest.mark.parametrize(
    "query",
    [
        {"group_by": ["conversation_id"]},
        {"group_by": ["action"], "bucket": "hour"},
        {"since": _dt.datetime(2026, 3, 1, 22, 30, tzinfo=_dt.UTC)},  # cuts a day dropped
    ],
)
def test_usage_that_needs_dropped_records_says_it_is_incomplete(query: dict[str, Any]) -> None:
    bounded, full = _both(keep=256)
    got, want = bounded.usage(**query), full.usage(**query)
    assert not got.complete
    assert want.complete
    # What could be placed is counted; the rest is missing, never guessed.
    assert (
        len(list(bounded.records())) <= sum(r.records for r in got) < sum(r.records for r in want)
    )


def test_the_held_records_are_the_most_recent_ones() -> None:
    bounded, full = _both(keep=300)
    held = [r._replace(id="") for r in bounded.records()]  # ids are random: all but them
    assert held == [r._replace(id="") for r in list(full.records())[-len(held) :]]
    assert "dropped=" in repr(bounded)
    assert "dropped=" not in repr(full)


def test_keep_records_zero_holds_nearly_nothing_and_stays_exact() -> None:
    bounded, full = _both(keep=0)
    assert len(list(bounded.records())) < 128
    assert bounded.usage(["department", "outcome"]) == full.usage(["department", "outcome"])


@pytest.mark.parametrize("keep", [-1, True, 2.5, "100"])
def test_keep_records_must_be_a_count(keep: Any) -> None:
    with pytest.raises(fc.ConfigurationError) as info:
        fc.OfflineWallet(keep_records=keep)
    assert info.value.field == "keep_records"
    assert info.value.value == keep


def test_the_test_fixture_wallet_holds_every_record() -> None:
    from flexcredits_sdk.testing import FlexWallet

    meter = fc.Meter()
    flex = FlexWallet(meter).install()
    try:
        assert flex.wallet.keep_records is None
        meter_varied_actions(flex.wallet, flex.clock, actions=400)
        assert len(list(flex.wallet.records())) == 400
    finally:
        flex.uninstall()


def test_batches_of_every_size_are_held_in_order_once_and_totalled_when_dropped() -> None:
    """Batches of a chunk's size become chunks as they are; others wait in the tail."""
    from flexcredits_sdk._usage import RecordLog

    start = 1_790_000_000_000_000_000
    made = [
        fc.UsageRecord(
            fc.new_id(start + i * 1_000),
            ("answer", "lookup")[i % 7 == 0],
            "standard",
            1 + i % 3,
            20 * (1 + i % 3),
            "production",
            {"department": ("hr", "it")[i % 11 == 0]} if i % 5 else {},
            None,
            start + i * 1_000,
            10,
        )
        for i in range(2_800)
    ]
    kept, everything = RecordLog(keep=300), RecordLog(keep=None)
    at = 0
    for size in [1, 128, 64, 3, 200, 256, 300, 5, 128, 128, 1, 127, 129, 64, 63, 500, 700]:
        batch = made[at : at + size]
        again = made[max(0, at - 2) : at + size]  # the last two of the batch before, again
        assert [r.id for r in kept.add_many(again)] == [r.id for r in batch]
        everything.add_many(batch)
        at += size
    assert list(everything) == made[:at]
    held = list(kept)
    assert 300 <= len(held) <= 300 + 2 * 128 - 1
    assert held == made[at - len(held) : at]
    assert kept.dropped == at - len(held)
    totals: dict[tuple[Any, ...], list[Any]] = {}
    for r in made[: at - len(held)]:
        key = (r.action, frozenset(r.tags.items()))
        row = totals.setdefault(key, [0, 0, 0])
        row[0] += r.units
        row[1] += 1
        row[2] += r.credits
    dropped: dict[tuple[Any, ...], list[Any]] = {}
    for key in kept.earlier.groups():
        row = dropped.setdefault((key[1], key[5]), [0, 0, 0])
        for i, value in enumerate(kept.earlier.get(key)):
            row[i] += value
    assert dropped == totals
