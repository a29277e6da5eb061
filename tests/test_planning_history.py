"""History files: JSONL, CSV and usage records, and the errors of bad rows."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

import flexcredits_sdk as fc
from flexcredits_sdk import planning
from flexcredits_sdk.planning import HistoryError, HistoryRow

ROOT = Path(__file__).resolve().parent.parent
ROW = {
    "conversation_id": "c1",
    "action": "lookup",
    "action_type": "standard",
    "timestamp": "2026-03-01T23:30:00-02:00",
    "environment": "sandbox",
    "tags": {"team": "support"},
    "resolved": True,
    "units": 2,
}


def _jsonl(*objects: object) -> io.StringIO:
    return io.StringIO("".join(json.dumps(o) + "\n" for o in objects))


def test_a_full_jsonl_row() -> None:
    (row,) = planning.read_history(_jsonl(ROW))
    assert row == HistoryRow(
        1,
        "c1",
        "lookup",
        "standard",
        "sandbox",
        {"team": "support"},
        2,
        True,
        1_772_415_000,
        "2026-03-02",  # 23:30 at -02:00 is 01:30 UTC the next day
    )


def test_defaults_of_a_minimal_row() -> None:
    (row,) = planning.read_history(
        _jsonl({"action_type": "standard", "timestamp": "2026-03-01T10:00:00Z"})
    )
    assert (row.conversation_id, row.action, row.environment, row.units, row.resolved) == (
        None,
        "standard",
        "production",
        1,
        False,
    )
    assert row.tags == {}
    (named,) = planning.read_history(
        _jsonl({"conversation_id": 7, "action": "x", "timestamp": "2026-03-01T10:00:00Z"})
    )
    assert (named.conversation_id, named.action_type) == ("7", "x")


def test_csv_and_jsonl_examples_read_the_same() -> None:
    from_jsonl = list(planning.read_history(ROOT / "examples" / "history.jsonl"))
    from_csv = list(planning.read_history(ROOT / "examples" / "history.csv"))
    assert len(from_jsonl) == len(from_csv) == 201
    assert [r._replace(line=0) for r in from_jsonl] == [r._replace(line=0) for r in from_csv]
    assert from_csv[0].line == 2  # line 1 is the header


def test_usage_records_are_read_and_validated(tmp_path: Path) -> None:
    record = fc.UsageRecord(
        fc.new_id(),
        "lookup",
        "standard",
        1,
        20,
        "production",
        {"team": "a"},
        "c1",
        1_772_323_200 * 10**9,
        5,
    )
    path = tmp_path / "records.jsonl"
    bad = {**record.to_dict(), "units": 0}
    path.write_text(json.dumps(record.to_dict()) + "\n" + json.dumps(bad) + "\n")
    errors: list[HistoryError] = []
    rows = list(planning.read_history(path, format="records", on_bad_row=errors.append))
    assert [(r.conversation_id, r.action, r.day, r.line) for r in rows] == [
        ("c1", "lookup", "2026-03-01", 1)
    ]
    assert errors[0].line == 2
    assert errors[0].field == "units"
    # Plain JSONL reading accepts the same lines (started_at stands for timestamp).
    plain = next(iter(planning.read_history(path)))
    assert plain.time_s == 1_772_323_200


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"timestamp": "2026-03-01T10:00:00"}, "timestamp"),
        ({"timestamp": "soon"}, "timestamp"),
        ({"timestamp": None}, "timestamp"),
        ({"timestamp": 5}, "timestamp"),
        ({"action": None, "action_type": None}, "action_type"),
        ({"action": 3}, "action"),
        ({"environment": ["x"]}, "environment"),
        ({"tags": {"team": 1}}, "tags"),
        ({"tags": {"team": ["a"]}}, "tags"),
        ({"tags": "team"}, "tags"),
        ({"resolved": "maybe"}, "resolved"),
        ({"units": 0}, "units"),
        ({"units": 1.5}, "units"),
        ({"conversation_id": 1.5}, "conversation_id"),
    ],
)
def test_bad_fields_are_named_with_their_line(change: dict[str, object], field: str) -> None:
    with pytest.raises(HistoryError) as info:
        list(planning.read_history(_jsonl(ROW, {**ROW, **change})))
    assert info.value.field == field
    assert info.value.line == 2
    assert "<stream>, line 2" in str(info.value)


@pytest.mark.parametrize(
    ("line", "message"), [("[1, 2]", "JSON object"), ("{oops", "not JSON"), ('{"a":1} x', "JSON")]
)
def test_lines_that_are_not_objects(line: str, message: str) -> None:
    with pytest.raises(HistoryError, match=message):
        list(planning.read_history(io.StringIO(line + "\n")))


def test_blank_lines_and_leading_spaces() -> None:
    text = "\n  " + json.dumps(ROW) + "\n\n"
    (row,) = planning.read_history(io.StringIO(text))
    assert row.line == 2


def test_csv_rows(tmp_path: Path) -> None:
    path = tmp_path / "h.csv"
    path.write_text(
        "timestamp,action,conversation_id,tags,resolved,units,extra\n"
        "2026-03-01T10:00:00Z,lookup,c1,team=a;region=eu,yes,3,x\n"
        "2026-03-01T10:00:00Z,lookup,c1,,,,x\n"
        "2026-03-01T10:00:00Z,lookup,c1,team,no,1,x\n"
        "2026-03-01T10:00:00Z,lookup\n"
    )
    errors: list[HistoryError] = []
    rows = list(planning.read_history(path, on_bad_row=errors.append))
    assert [(r.tags, r.resolved, r.units) for r in rows] == [
        ({"team": "a", "region": "eu"}, True, 3),
        ({}, False, 1),
    ]
    assert [(e.line, e.field) for e in errors] == [(4, "tags"), (5, "row")]


def test_csv_header_needs_action_and_timestamp(tmp_path: Path) -> None:
    path = tmp_path / "h.csv"
    path.write_text("when,what\n")
    with pytest.raises(HistoryError, match="header"):
        list(planning.read_history(path))
    path.write_text("")
    assert list(planning.read_history(path)) == []


def test_bad_format_and_source() -> None:
    with pytest.raises(fc.ConfigurationError, match="format"):
        list(planning.read_history("x.jsonl", format="xml"))  # type: ignore[arg-type]
    with pytest.raises(fc.ConfigurationError, match="source"):
        list(planning.read_history(42))  # type: ignore[arg-type]
