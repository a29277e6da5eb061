"""History files: JSONL, CSV and usage records, and the errors of bad rows."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import IO

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


# Reading JSONL files: orjson when installed, the standard library otherwise, the same rows.

A = b'{"action": "a", "action_type": "standard", "timestamp": "2026-03-01T10:00:00Z"'
TRICKY = b"".join(
    [
        json.dumps(ROW).encode() + b"\r\n",  # a Windows line ending
        json.dumps({**ROW, "conversation_id": 2**64}).encode() + b"\n",  # a float to orjson
        json.dumps({**ROW, "units": 2**64}).encode() + b"\n",
        json.dumps({**ROW, "tags": {"team": 2**64}}).encode() + b"\n",
        A + b', "resolved": NaN}\n',
        A + b', "conversation_id": "\\ud800"}\n',  # a lone surrogate
        A + b', "tags": {"t": "1", "t": "2"}}\n',  # the last one wins
        A + b', "units": 1e400}\n',
        A + b',\r "units": 2}\n',  # a lone CR ends a line, as in text mode
        A + b"}\r" + A + b"} \x0c\n",
        b"  \n\n[1, 2]\nnull\n{oops\n",
        A + ', "conversation_id": "\u00e9"}\n'.encode(),
        b"\xef\xbb\xbf" + A + b"}\n",  # a byte order mark
        A + b', "conversation_id": "last"}',  # no final newline
    ]
)


@pytest.fixture(params=["orjson", "stdlib"])
def parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Read JSONL files with orjson (when installed) or with the standard library alone."""
    from flexcredits_sdk.planning import _history

    if request.param == "orjson":
        pytest.importorskip("orjson")
    else:
        monkeypatch.setattr(_history, "_fast_loads", None)
    return str(request.param)


def _read(source: Path | IO[str]) -> tuple[list[tuple[object, ...]], list[str]]:
    errors: list[HistoryError] = []
    rows = list(planning.read_history(source, on_bad_row=errors.append))
    return [(*row, list(row.tags.items())) for row in rows], [str(e) for e in errors]


def test_both_parsers_read_a_file_as_text_would(tmp_path: Path, parser: str) -> None:
    path = tmp_path / "tricky.jsonl"
    path.write_bytes(TRICKY)
    rows, errors = _read(path)
    with path.open(encoding="utf-8") as stream:  # text mode: always the standard library
        assert (rows, errors) == _read(stream)
    assert [row[:3] + row[6:7] + row[-1:] for row in rows] == [
        (1, "c1", "lookup", 2, [("team", "support")]),
        (2, str(2**64), "lookup", 2, [("team", "support")]),
        (3, "c1", "lookup", 2**64, [("team", "support")]),
        (6, "\ud800", "a", 1, []),
        (7, None, "a", 1, [("t", "2")]),
        (11, None, "a", 1, []),
        (12, None, "a", 1, []),
        (18, "\u00e9", "a", 1, []),
        (20, "last", "a", 1, []),
    ]
    assert [(e.split("=")[0], e.rsplit(" ", 1)[1]) for e in errors] == [
        ("tags", "4)"),
        ("resolved", "5)"),
        ("units", "8)"),
        ("row", "9)"),
        ("row", "10)"),
        ("row", "15)"),
        ("row", "16)"),
        ("row", "17)"),
        ("row", "19)"),
    ]
    assert "Unexpected UTF-8 BOM" in errors[-1]


def test_a_file_that_is_not_utf8_stops_the_reading(tmp_path: Path, parser: str) -> None:
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(json.dumps(ROW).encode() + b"\n" + A + b', "action": "caf\xe9"}\n')
    with pytest.raises(UnicodeDecodeError):
        list(planning.read_history(path, on_bad_row=lambda error: None))


def test_both_parsers_simulate_a_file_alike(tmp_path: Path, parser: str) -> None:
    path = tmp_path / "history.jsonl"
    path.write_bytes((ROOT / "examples" / "history.jsonl").read_bytes() + TRICKY)
    models = ["agentforce", "per-conversation", "per-resolution"]
    result = planning.simulate(path, models, skip_bad_rows=True)
    with path.open(encoding="utf-8") as stream:
        rows = list(planning.read_history(stream, on_bad_row=lambda error: None))
    expected = planning.simulate(rows, models)
    assert (result.rows, result.bad_rows, len(result.bad_row_errors)) == (210, 9, 9)
    assert result.model_copy(update={"bad_rows": 0, "bad_row_errors": []}) == expected


def _parse_alone(value: object) -> object:
    from flexcredits_sdk.planning._rows import _Bad, _Times

    try:
        return _Times()(value)  # nothing remembered
    except _Bad as exc:
        return exc.args


_CLOCK = st.builds(
    "{:02d}:{:02d}:{:02d}".format,
    st.integers(0, 24),
    st.integers(0, 60),
    st.integers(0, 60),
)


@settings(max_examples=300, deadline=None)
@given(
    days=st.lists(st.sampled_from(["2026-03-01T", "2026-03-02T", "1969-12-31T", "2026-03-01 "])),
    clocks=st.lists(_CLOCK, min_size=1, max_size=40),
    zones=st.lists(
        st.sampled_from(["Z", "+00:00", "-00:00", "+02:00", "-02:00", "+05:30", "+00:00:30"]),
        min_size=1,
    ),
    fractions=st.lists(st.sampled_from(["", "", ".000", ".5"]), min_size=1),
)
def test_remembered_days_parse_as_a_full_parse_would(
    days: list[str], clocks: list[str], zones: list[str], fractions: list[str]
) -> None:
    from flexcredits_sdk.planning._rows import _Bad, _Times

    times = _Times()
    for i, clock in enumerate(clocks):
        day = days[i % len(days)] if days else "2026-03-01T"
        value = day + clock + fractions[i % len(fractions)] + zones[i % len(zones)]
        try:
            got: object = times(value)
        except _Bad as exc:
            got = exc.args
        assert got == _parse_alone(value), value


def test_an_empty_first_timestamp_is_missing() -> None:
    with pytest.raises(HistoryError, match="is required"):
        list(planning.read_history(_jsonl({**ROW, "timestamp": ""})))
