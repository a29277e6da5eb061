"""Usage records and their ids."""

from __future__ import annotations

import datetime as _dt
import os
import uuid
from decimal import Decimal

import pytest

import flexcredits_sdk as fc


def test_new_ids_are_uuid7_time_ordered_and_unique() -> None:
    ids = [fc.new_id() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)
    parsed = uuid.UUID(ids[0])
    assert parsed.version == 7
    assert parsed.variant == uuid.RFC_4122
    ms = int(ids[0].replace("-", "")[:12], 16)
    assert abs(ms / 1000 - _dt.datetime.now(_dt.UTC).timestamp()) < 60


def test_ids_stay_unique_and_ordered_past_a_block_of_4096_in_one_millisecond() -> None:
    now_ns = 1_790_000_000_123_456_789
    ids = [fc.new_id(now_ns) for _ in range(3 * 4096 + 5)]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)
    for record_id in (ids[0], ids[4095], ids[4096], ids[-1]):
        parsed = uuid.UUID(record_id)
        assert (parsed.version, parsed.variant, len(record_id)) == (7, uuid.RFC_4122, 36)
        assert int(record_id.replace("-", "")[:12], 16) == now_ns // 1_000_000


def test_actions_and_new_id_make_one_sequence_of_ids() -> None:
    """An action makes its id with `make_id`'s lines written out: both draw from one sequence."""
    ticks = iter(range(1_790_000_000_000_000_000, 1_800_000_000_000_000_000, 300_000))
    meter = fc.Meter(wallet=fc.OfflineWallet(keep_records=None), clock=lambda: next(ticks))

    @meter.metered_action
    def lookup() -> str:
        return fc.new_id(meter.clock())

    ids: list[str] = []
    for _ in range(3000):  # three or four actions a millisecond, for about 900 ms
        ids.append(lookup())
    action_ids = [r.id for r in meter.wallet.records()]
    made = [x for pair in zip(action_ids, ids, strict=True) for x in pair]
    assert len(set(made)) == len(made)
    assert made == sorted(made)  # each action's id comes before the id made inside it
    assert {uuid.UUID(x).version for x in made} == {7}


def test_each_millisecond_draws_fresh_random_bits() -> None:
    ms = 1_790_000_000_000
    middles = {fc.new_id((ms + n) * 1_000_000)[14:23] for n in range(50)}
    assert len(middles) > 40  # 26 random bits each: repeats are rare


def test_id_embeds_the_given_time() -> None:
    when = _dt.datetime(2026, 11, 27, 12, 0, tzinfo=_dt.UTC)
    record_id = fc.new_id(int(when.timestamp()) * 10**9)
    assert int(record_id.replace("-", "")[:12], 16) == int(when.timestamp()) * 1000


def test_derive_id_is_deterministic() -> None:
    first = fc.derive_id("run-1", "step-a")
    assert first == fc.derive_id("run-1", "step-a")
    assert first != fc.derive_id("run-1", "step-b")
    assert first != fc.derive_id("run-2", "step-a")
    assert fc.derive_id("run-1", 3) == fc.derive_id("run-1", 3)
    assert uuid.UUID(first).version == 5


def test_derived_id_is_booked_once() -> None:
    wallet = fc.OfflineWallet()
    meter = fc.Meter(wallet=wallet)
    for _attempt in range(3):  # a workflow engine re-running the same step
        with meter.action("step") as act:
            act.set_id(fc.derive_id("run-9", "charge-card"))
    assert len(list(wallet.records())) == 1
    assert wallet.balance().used == 20


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_children_make_different_ids() -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        os.write(write, fc.new_id().encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child_id = os.read(read, 100).decode()
    parent_id = fc.new_id()
    assert child_id[24:] != parent_id[24:]
    assert (
        child_id[14:23] != parent_id[14:23]
        or abs(int(child_id[24:], 16) - int(parent_id[24:], 16)) > 1000
    )


def test_record_fields_and_round_trip() -> None:
    wallet = fc.OfflineWallet()
    meter = fc.Meter(wallet=wallet, environment="sandbox")
    with fc.conversation("c-1"), meter.action("answer", tags={"t": "v"}):
        pass
    record = next(iter(wallet.records()))
    assert record.started_at.tzinfo is _dt.UTC
    assert record.duration_ms >= 0
    assert record.credits == 16
    with pytest.raises(AttributeError):
        record.credits = 0  # type: ignore[misc]
    data = record.to_dict()
    assert data["started_at"].endswith("+00:00")
    assert fc.UsageRecord.from_dict(data) == record
    fractional = record._replace(credits=Decimal("0.5"))
    assert fractional.to_dict()["credits"] == "0.5"
    assert fc.UsageRecord.from_dict(fractional.to_dict()).credits == Decimal("0.5")


def test_record_from_started_at_only() -> None:
    data = {
        "id": "x",
        "action": "a",
        "action_type": "standard",
        "units": 1,
        "credits": 20,
        "environment": "production",
        "started_at": "2026-01-02T03:04:05.123456+00:00",
    }
    record = fc.UsageRecord.from_dict(data)
    assert record.started_at == _dt.datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=_dt.UTC)
