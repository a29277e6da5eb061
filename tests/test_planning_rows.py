"""History rows: timestamps read from a remembered day or minute match a full parse."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flexcredits_sdk import planning
from flexcredits_sdk.planning._rows import _Bad, _Reader

STAMP = "2026-03-01T10:00:05Z"


def _full_parse(value: str) -> tuple[int, str] | tuple[object, ...]:
    """What `datetime.fromisoformat` says, or the error's arguments."""
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        return ("timestamp", value, "is not an ISO 8601 date and time")
    if when.utcoffset() is None:
        return ("timestamp", value, "must include a timezone, e.g. 'Z' or '+02:00'")
    return int(when.timestamp()), when.astimezone(dt.UTC).strftime("%Y-%m-%d")


def _read(reader: _Reader, value: str) -> tuple[int, str] | tuple[object, ...]:
    try:
        row = reader.row(1, {"action": "lookup", "timestamp": value})
    except _Bad as exc:
        return exc.args
    return row.time_s, row.day


# Few distinct minutes, so that rows often fall in the minute just read.
_CLOCK = st.builds(
    "{}:{:02d}".format,
    st.sampled_from(["00:00", "10:00", "10:01", "23:59", "24:00", "10:60"]),
    st.sampled_from([0, 1, 30, 59, 60]),
)


@settings(max_examples=300, deadline=None)
@given(
    days=st.lists(st.sampled_from(["2026-03-01T", "2026-03-02T", "1969-12-31T", "2026-03-01 "])),
    clocks=st.lists(_CLOCK, min_size=1, max_size=40),
    zones=st.lists(
        st.sampled_from(["Z", "+00:00", "-02:00", "+05:30", "+00:00:30", "+00:30", ""]),
        min_size=1,
    ),
    fractions=st.lists(st.sampled_from(["", "", "", ".5"]), min_size=1),
)
def test_rows_in_a_remembered_minute_read_as_a_full_parse_would(
    days: list[str], clocks: list[str], zones: list[str], fractions: list[str]
) -> None:
    reader = _Reader()
    for i, clock in enumerate(clocks):
        day = days[i % len(days)] if days else "2026-03-01T"
        value = day + clock + fractions[i % len(fractions)] + zones[i % len(zones)]
        assert _read(reader, value) == _full_parse(value), value


def test_a_minute_read_in_one_zone_is_not_taken_for_another() -> None:
    reader = _Reader()
    first = "2026-03-01T10:00:05+02:00"
    assert _read(reader, first) == _full_parse(first)
    assert _read(reader, "2026-03-01T10:00:06+02:00") == _full_parse("2026-03-01T10:00:06+02:00")
    other_day = "2026-03-02T11:00:00Z"  # a new day and zone are remembered
    assert _read(reader, other_day) == _full_parse(other_day)
    same_minute = "2026-03-01T10:00:07Z"  # the first minute's text, in the new zone
    assert _read(reader, same_minute) == (1772359207, "2026-03-01")
    assert _read(reader, same_minute) == _full_parse(same_minute)


def test_a_bad_second_in_a_remembered_minute_names_the_timestamp() -> None:
    rows = [
        '{"action": "a", "timestamp": "2026-03-01T10:00:05Z"}',
        '{"action": "a", "timestamp": "2026-03-01T10:00:06Z"}',
        '{"action": "a", "timestamp": "2026-03-01T10:00:6xZ"}',
    ]
    path_rows = "\n".join(rows) + "\n"
    with pytest.raises(planning.HistoryError, match=r"10:00:6xZ.*not an ISO 8601.*line 3"):
        list(planning.read_history(io.BytesIO(path_rows.encode())))


@pytest.mark.parametrize(
    ("written", "flag"),
    [
        ("true", True),
        ("yes", True),
        (" TRUE ", True),
        ("Y", True),
        ("false", False),
        ("", False),
        ("0", False),
        (" No", False),
        (None, False),
        (True, True),
    ],
)
def test_resolved_flags_as_written(written: object, flag: bool) -> None:
    row = _Reader().row(1, {"action": "a", "timestamp": STAMP, "resolved": written})
    assert row.resolved is flag


@pytest.mark.parametrize("written", ["maybe", 1, [True], {"a": 1}])
def test_a_bad_resolved_flag_names_the_field_and_value(written: object) -> None:
    with pytest.raises(_Bad) as caught:
        _Reader().row(1, {"action": "a", "timestamp": STAMP, "resolved": written})
    assert caught.value.args == ("resolved", written, "must be true or false")


def test_csv_tags_read_again_are_the_same_dict() -> None:
    reader = _Reader()
    stamp = STAMP
    first = reader.row(1, {"action": "a", "timestamp": stamp, "tags": "team=support; region=eu"})
    again = reader.row(2, {"action": "a", "timestamp": stamp, "tags": "team=support; region=eu"})
    assert first.tags == {"team": "support", "region": "eu"}
    assert again.tags is first.tags
    with pytest.raises(_Bad, match="tags"):
        reader.row(3, {"action": "a", "timestamp": stamp, "tags": "team"})
