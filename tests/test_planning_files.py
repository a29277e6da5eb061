"""History files as people have them: a byte order mark, any delimiter, CRLF, rows out of time
order, grouped by conversation, empty; each gives the figures of the clean file sorted by time,
or stops with an error that says what to do."""

from __future__ import annotations

import datetime as dt
import io
import json
import random
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import IO, Any

import pytest
from click.testing import CliRunner

import flexcredits_sdk as fc
from flexcredits_sdk import planning
from flexcredits_sdk.cli import main
from flexcredits_sdk.planning import HistoryError, HistoryRow, _history, _plan_commands, _sort
from flexcredits_sdk.planning._simulate import Simulator

START = 1_772_323_200  # 2026-03-01T00:00:00Z
MODELS = ["agentforce", "per-conversation", "per-resolution"]
COLUMNS = ["conversation_id", "action", "action_type", "timestamp", "resolved", "tags"]

# Small: 47 conversations, 400 rows (the first 24 have 9 actions, the other 23 have 8), one
# every 3 hours, an action every 5 minutes; every fourth conversation (0, 4, ..., 44: 12 of
# them) resolved. Agentforce prices each production action at 20 credits, $500 per 100,000:
# 8,000 credits, $40. Per conversation, $2 each: $94. Per resolution, $0.99 each: $11.88.
SMALL = {"rows": 400, "conversations": 47, "credits": 8_000, "bills": ("40", "94", "11.88")}
# Large: 1,500 conversations of 4 actions (6,000 rows), one every 30 minutes over 31 days, so
# that the simulation sweeps its open conversations while reading; every third resolved (500).
# 6,000 actions: 120,000 credits, $600; per conversation $3,000; per resolution $495.
LARGE = {"rows": 6_000, "conversations": 1_500, "credits": 120_000, "bills": ("600", "3000", "495")}


def _events(conversations: int, actions: Callable[[int], int], every_s: int, resolved: int):  # type: ignore[no-untyped-def]
    """Return the rows of the clean file, sorted by time, as dicts of CSV column values."""
    events = []
    for c in range(conversations):
        n = actions(c)
        for a in range(n):
            t = START + c * every_s + a * 300
            events.append(
                {
                    "conversation_id": f"c{c}",
                    "action": "lookup_order",
                    "action_type": "standard",
                    "timestamp": dt.datetime.fromtimestamp(t, dt.UTC).strftime(
                        "%Y-%m-%dT%H:%M:%SZ"
                    ),
                    "resolved": "true" if c % resolved == 0 and a == n - 1 else "false",
                    "tags": "team=support" if c % 2 else "team=sales",
                    "_t": t,
                }
            )
    events.sort(key=lambda e: e["_t"])
    return events


def small() -> list[dict[str, Any]]:
    return _events(47, lambda c: 9 if c < 24 else 8, 3 * 3600, 4)


def large() -> list[dict[str, Any]]:
    return _events(1500, lambda c: 4, 1800, 3)


def _csv(
    events: list[dict[str, Any]],
    *,
    delimiter: str = ",",
    newline: str = "\n",
    bom: bool = False,
    columns: list[str] = COLUMNS,
) -> bytes:
    lines = [delimiter.join(columns)]
    lines += [delimiter.join(str(e[c]) for c in columns) for e in events]
    text = newline.join(lines) + newline
    return (("\ufeff" if bom else "") + text).encode()


def _jsonl(events: list[dict[str, Any]], *, newline: str = "\n", bom: bool = False) -> bytes:
    lines = []
    for e in events:
        row = {c: e[c] for c in COLUMNS if c not in ("tags", "resolved")}
        row["resolved"] = e["resolved"] == "true"
        row["tags"] = dict([e["tags"].split("=")])
        lines.append(json.dumps(row))
    return (("\ufeff" if bom else "") + newline.join(lines) + newline).encode()


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def figures(result: planning.SimulationResult) -> dict[str, Any]:
    return {
        "rows": result.rows,
        "conversations": result.conversations,
        "credits": result.model("agentforce").credits,
        "bills": tuple(format(result.model(m).total.normalize(), "f") for m in MODELS),
    }


def _bills(output: str) -> dict[str, Any]:
    data = json.loads(output)
    by_name = {m["name"]: m for m in data["models"]}
    return {
        "rows": data["rows"],
        "conversations": data["conversations"],
        "credits": int(by_name["agentforce"]["credits"]),
        "bills": tuple(format(Decimal(by_name[m]["total"]).normalize(), "f") for m in MODELS),
    }


def simulate_cli(path: Path, *options: str) -> dict[str, Any]:
    models = [arg for m in MODELS for arg in ("-m", m)]
    result = CliRunner().invoke(main, ["simulate", str(path), *models, "-o", "json", *options])
    assert result.exit_code == 0, result.output
    return _bills(result.output)


def test_the_clean_files_give_the_figures_worked_out_by_hand(tmp_path: Path) -> None:
    assert len(small()) == 400
    for name, data in (("small.csv", _csv(small())), ("small.jsonl", _jsonl(small()))):
        path = _write(tmp_path, name, data)
        assert figures(planning.simulate(path, MODELS)) == SMALL
        assert simulate_cli(path) == SMALL
    path = _write(tmp_path, "large.csv", _csv(large()))
    assert figures(planning.simulate(path, MODELS)) == LARGE
    assert simulate_cli(path) == LARGE


# --- a byte order mark, delimiters, line ends ---------------------------------------------------


@pytest.mark.parametrize("first", ["conversation_id", "action"])
def test_a_byte_order_mark_is_not_part_of_the_first_header(tmp_path: Path, first: str) -> None:
    columns = [first, *(c for c in COLUMNS if c != first)]
    path = _write(tmp_path, "excel.csv", _csv(small(), bom=True, columns=columns))
    assert path.read_bytes().startswith(b"\xef\xbb\xbf" + first.encode())
    # Read as a plain UTF-8 file, the first header was "\ufeffconversation_id": 400
    # conversations, $800; or, with action first, an error naming "action", which it has.
    assert figures(planning.simulate(path, MODELS)) == SMALL
    assert simulate_cli(path) == SMALL
    with path.open(encoding="utf-8", newline="") as text:  # a text stream keeps the mark
        assert figures(planning.simulate(planning.read_history(text, format="csv"), MODELS)) == (
            SMALL
        )
    assert planning.detect_format(_write(tmp_path, "excel.txt", path.read_bytes())) == "csv"


def test_a_byte_order_mark_and_a_missing_column(tmp_path: Path) -> None:
    path = _write(tmp_path, "excel.csv", b"\xef\xbb\xbfaction;when\r\nlookup;2026-03-01\r\n")
    with pytest.raises(HistoryError) as info:
        list(planning.read_history(path))
    assert str(info.value) == ("header=['action', 'when']: lacks ['timestamp'] (excel.csv, line 1)")
    result = CliRunner().invoke(main, ["simulate", str(path)])
    assert result.exit_code == 1
    assert result.output == (
        "Error: header=['action', 'when']: lacks ['timestamp'] (excel.csv, line 1)\n"
    )


@pytest.mark.parametrize("fast", [True, False], ids=["orjson", "json"])
@pytest.mark.parametrize("newline", ["\n", "\r\n"], ids=["LF", "CRLF"])
def test_a_jsonl_file_with_a_byte_order_mark_and_crlf(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fast: bool, newline: str
) -> None:
    if not fast:
        monkeypatch.setattr(_history, "_fast_loads", None)
    elif _history._fast_loads is None:  # pragma: no cover - the planning extra installs it
        pytest.skip("orjson is not installed")
    path = _write(tmp_path, "export.jsonl", _jsonl(small(), newline=newline, bom=True))
    assert figures(planning.simulate(path, MODELS)) == SMALL
    assert simulate_cli(path) == SMALL
    with path.open("rb") as binary:
        assert figures(planning.simulate(planning.read_history(binary), MODELS)) == SMALL


@pytest.mark.parametrize(
    "delimiter", [",", ";", "\t", "|"], ids=["comma", "semicolon", "tab", "pipe"]
)
@pytest.mark.parametrize("newline", ["\n", "\r\n"], ids=["LF", "CRLF"])
def test_any_delimiter_and_line_end_give_the_same_figures(
    tmp_path: Path, delimiter: str, newline: str
) -> None:
    path = _write(tmp_path, "h.csv", _csv(small(), delimiter=delimiter, newline=newline))
    assert _history.delimiter_of(path.read_text().splitlines()[0]) == delimiter
    assert figures(planning.simulate(path, MODELS)) == SMALL
    assert simulate_cli(path) == SMALL
    other = _write(tmp_path, "h.log", path.read_bytes())  # no suffix: the header tells
    assert planning.detect_format(other) == "csv"
    assert figures(planning.simulate(other, MODELS)) == SMALL


def test_a_semicolon_file_with_decimal_commas_in_quotes(tmp_path: Path) -> None:
    # A European export: ";" between fields, so a comma inside a field is no delimiter.
    text = (
        "conversation_id;action;timestamp;tags\r\n"
        'a;lookup;2026-03-01T10:00:00Z;"team=a,b"\r\n'
        'a;lookup;2026-03-01T10:05:00Z;"team=a,b"\r\n'
    )
    rows = list(planning.read_history(_write(tmp_path, "eu.csv", text.encode())))
    assert [(r.line, r.conversation_id, r.tags) for r in rows] == [
        (2, "a", {"team": "a,b"}),
        (3, "a", {"team": "a,b"}),
    ]


# --- rows out of time order ---------------------------------------------------------------------


def _shuffled(events: list[dict[str, Any]], seed: int = 7) -> list[dict[str, Any]]:
    copy = list(events)
    random.Random(seed).shuffle(copy)
    return copy


def test_shuffled_rows_stop_with_an_error_that_says_to_sort(tmp_path: Path) -> None:
    path = _write(tmp_path, "shuffled.csv", _csv(_shuffled(large())))
    # Read in one pass as before, they gave 1,5xx conversations and a larger bill, silently.
    with pytest.raises(HistoryError) as info:
        planning.simulate(path, MODELS)
    error = info.value
    assert error.field == "timestamp"
    assert error.source == "shuffled.csv"
    assert "rows are out of time order by up to " in str(error)
    assert " hours, and conversation 'c" in str(error)
    assert str(error).endswith(
        f"sort them first (--sort, or sort=True) (shuffled.csv, line {error.line})"
    )
    result = CliRunner().invoke(main, ["simulate", str(path)])
    assert result.exit_code == 1
    assert result.output.startswith("Error: timestamp='2026-")
    assert "rows are out of time order by up to " in result.output
    assert "--skip-bad-rows" not in result.output  # skipping rows would not help
    assert figures(planning.simulate(path, MODELS, sort=True)) == LARGE
    assert simulate_cli(path, "--sort") == LARGE


def test_a_small_shuffled_file_is_right_in_one_pass(tmp_path: Path) -> None:
    # 400 rows over six days: no conversation closes before the end, so the order is moot.
    path = _write(tmp_path, "shuffled.csv", _csv(_shuffled(small())))
    assert figures(planning.simulate(path, MODELS)) == SMALL
    assert simulate_cli(path) == SMALL


@pytest.mark.parametrize("reverse", [False, True], ids=["by-id", "newest-first"])
def test_rows_grouped_by_conversation_are_right_in_one_pass(tmp_path: Path, reverse: bool) -> None:
    # Grouped by conversation id ("c0", "c1", "c10", ...): the times jump back and forth.
    events = sorted(large(), key=lambda e: (e["conversation_id"], e["_t"]))
    if reverse:
        events = sorted(large(), key=lambda e: (-int(e["conversation_id"][1:]), e["_t"]))
    path = _write(tmp_path, "grouped.jsonl", _jsonl(events))
    result = planning.simulate(path, MODELS)
    assert figures(result) == LARGE
    assert simulate_cli(path) == LARGE
    grouped_small = sorted(small(), key=lambda e: (e["conversation_id"], e["_t"]))
    path = _write(tmp_path, "grouped.csv", _csv(grouped_small))
    assert figures(planning.simulate(path, MODELS)) == SMALL


def test_rows_a_little_out_of_order_are_right_in_one_pass(tmp_path: Path) -> None:
    # Logs merged from several machines: each row up to two hours from its place.
    rng = random.Random(3)
    events = sorted(large(), key=lambda e: e["_t"] + rng.randrange(7200))
    path = _write(tmp_path, "merged.csv", _csv(events))
    assert figures(planning.simulate(path, MODELS)) == LARGE


def _row(cid: str, hours: float, line: int = 0) -> HistoryRow:
    t = START + int(hours * 3600)
    day = dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d")
    return HistoryRow(line, cid, "lookup", "standard", "production", {}, 1, False, t, day)


def test_the_first_row_in_time_sets_a_conversations_month_and_tags() -> None:
    # Sorted, "a" starts on 28 February with the sales tag; the file lists it in March first.
    late = _row("a", 1)._replace(tags={"team": "support"})
    early = _row("a", -2)._replace(tags={"team": "sales"}, day="2026-02-28")
    result = planning.simulate([late, early], ["per-conversation"])
    ordered = planning.simulate([early, late], ["per-conversation"])
    assert result.conversations == ordered.conversations == 1
    model, expected = result.model("per-conversation"), ordered.model("per-conversation")
    assert [(b.month, b.conversations) for b in model.by_month] == [("2026-02", 1)]
    assert model.by_month == expected.by_month
    assert [(t.key, t.value) for t in model.by_tag] == [("team", "sales")]


@pytest.mark.parametrize(
    ("rows", "what"),
    [
        # "a" at 0 h and 30 h are two conversations; the row at 12 h joins them.
        ([_row("a", 0, 1), _row("a", 30, 2), _row("a", 12, 3)], "earlier than where it was split"),
        # A row 30 h before the conversation's first: a conversation of its own, before it.
        ([_row("a", 40, 1), _row("a", 10, 2)], "earlier than where it was split"),
    ],
)
def test_a_row_that_would_join_or_split_conversations_stops_the_run(
    rows: list[HistoryRow], what: str
) -> None:
    with pytest.raises(HistoryError) as info:
        planning.simulate(rows, ["per-conversation"])
    assert what in str(info.value)
    assert info.value.line == rows[-1].line
    sorted_rows = sorted(rows, key=lambda r: r.time_s)
    assert planning.simulate(rows, ["per-conversation"], sort=True).conversations == (
        planning.simulate(sorted_rows, ["per-conversation"]).conversations
    )


def test_a_row_of_a_closed_conversation_stops_the_run() -> None:
    # "a" closes once the newest time is a day past its last row; a row of it an hour after
    # that last row (read later) belongs to it.
    history = [_row("a", 0, 1)] + [_row(f"x{i}", 30 + i / 1000, i + 2) for i in range(2100)]
    history.append(_row("a", 1, 9999))
    with pytest.raises(HistoryError, match=r"conversation 'a' continues here after it was closed"):
        planning.simulate(history, ["per-conversation"])
    assert planning.simulate(history, ["per-conversation"], sort=True).conversations == 2101
    # A row of it more than a day after its last one is a new conversation, as when sorted.
    history[-1] = _row("a", 40, 9999)
    assert planning.simulate(history, ["per-conversation"]).conversations == 2102


def test_ids_beyond_what_max_open_remembers_stop_the_run() -> None:
    # Grouped newest first: every conversation comes late. With room to remember only 50
    # closed conversations, a late new id may be one that was forgotten: the run stops.
    history = [_row(f"c{c}", c * 2 + a / 100, 0) for c in range(200, 0, -1) for a in range(60)]
    with pytest.raises(HistoryError, match=r"beyond what the last 50 closed conversations"):
        planning.simulate(history, ["per-conversation"], max_open=50)
    result = planning.simulate(history, ["per-conversation"])
    assert (result.conversations, result.forced_closes) == (200, 0)


# --- the external sort --------------------------------------------------------------------------


def test_the_external_sort_merges_runs_from_temporary_files(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    files: list[IO[bytes]] = []
    real = tempfile.TemporaryFile

    def tracked() -> IO[bytes]:
        file = real()
        files.append(file)
        return file

    monkeypatch.setattr(_sort.tempfile, "TemporaryFile", tracked)
    rng = random.Random(5)
    rows = [_row(f"c{i % 37}", rng.randrange(200) / 4, i) for i in range(1000)]
    expected = sorted(rows, key=lambda r: r.time_s)  # stable: ties keep the file's order
    assert list(_sort.sorted_by_time(iter(rows), run_rows=7)) == expected
    assert len(files) == 143  # ceil(1000 / 7) runs, merged
    assert all(file.closed for file in files)
    assert list(_sort.sorted_by_time(iter(rows), run_rows=1000)) == expected  # in memory
    assert len(files) == 143
    assert list(_sort.sorted_by_time(iter([]), run_rows=3)) == []
    for bad in (0, -1, True, "7"):
        with pytest.raises(fc.ConfigurationError) as info:
            list(_sort.sorted_by_time(iter(rows), run_rows=bad))  # type: ignore[arg-type]
        assert info.value.field == "run_rows"


def test_a_sort_that_stops_early_closes_its_files(monkeypatch: pytest.MonkeyPatch) -> None:
    files: list[IO[bytes]] = []
    real = tempfile.TemporaryFile
    monkeypatch.setattr(_sort.tempfile, "TemporaryFile", lambda: files.append(real()) or files[-1])
    merged = _sort.sorted_by_time((_row("a", i % 5, i) for i in range(50)), run_rows=10)
    next(merged)
    merged.close()
    assert len(files) == 5
    assert all(file.closed for file in files)


def test_the_command_sorts_a_shuffled_file_through_runs_on_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        _plan_commands, "sorted_by_time", partial(_sort.sorted_by_time, run_rows=500)
    )
    path = _write(tmp_path, "shuffled.jsonl", _jsonl(_shuffled(large())))
    assert simulate_cli(path, "--sort") == LARGE


# --- empty files --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("empty.csv", b""),
        ("empty.jsonl", b""),
        ("header.csv", _csv([])),
        ("excel-header.csv", _csv([], delimiter=";", newline="\r\n", bom=True)),
        ("bom.jsonl", b"\xef\xbb\xbf"),
        ("blank.jsonl", b"\n\r\n\n"),
    ],
)
def test_a_file_without_rows(tmp_path: Path, name: str, data: bytes) -> None:
    path = _write(tmp_path, name, data)
    result = planning.simulate(path, MODELS)  # the API: an empty result
    assert (result.rows, result.conversations, result.cheapest, result.break_even) == (
        0,
        0,
        None,
        [],
    )
    assert [m.total for m in result.models] == [Decimal(0)] * 3
    for options in ((), ("--sort",)):  # the command: an error
        run = CliRunner().invoke(main, ["simulate", str(path), *options])
        assert run.exit_code == 1
        assert (
            run.output == f"Error: {path}: no rows to read (the file is empty or only a header)\n"
        )


# --- no quadratic step --------------------------------------------------------------------------


class _CountingDict(dict):  # type: ignore[type-arg]
    """A dict that counts how often iteration starts at its front."""

    starts = 0

    def __iter__(self) -> Iterator[Any]:
        type(self).starts += 1
        return super().__iter__()


def test_closing_200000_open_conversations_is_one_pass() -> None:
    # Popping a dict's first key again and again is quadratic: each `next(iter(d))` skips the
    # holes the earlier pops left, so closing N conversations that way costs N**2 / 2 steps
    # (3,000,000 rows grouped by conversation took 384 s). The end closes them in one pass;
    # this checks the structure (how often iteration restarts), not a time.
    _CountingDict.starts = 0
    simulator = Simulator(["per-conversation"])
    simulator._open = _CountingDict()
    simulator.feed(_row(f"c{i}", i / 100_000) for i in range(200_000))
    starts = _CountingDict.starts
    assert starts <= 200_000 // 1024 + 1  # at most a sweep's look at the front per 1,024 rows
    result = simulator.result()
    assert result.conversations == 200_000
    assert result.peak_open == 200_000
    assert _CountingDict.starts == starts  # none while closing


def test_forced_closes_take_the_front_a_batch_at_a_time() -> None:
    _CountingDict.starts = 0
    simulator = Simulator(["per-conversation"], max_open=6_400)
    simulator._open = _CountingDict()
    simulator.feed(_row(f"c{i}", i / 100_000) for i in range(100_000))
    result = simulator.result()
    assert result.conversations == 100_000
    assert result.forced_closes == 100_000 - 6_400
    # One look at the front per 100 forced closes (6,400 // 64), plus the sweeps.
    assert _CountingDict.starts <= (100_000 - 6_400) // 100 + 100_000 // 1024 + 2


def test_binary_and_text_streams_read_alike(tmp_path: Path) -> None:
    data = _csv(small(), delimiter=";", newline="\r\n", bom=True)
    binary = planning.read_history(io.BytesIO(data), format="csv")
    text = planning.read_history(io.StringIO(data.decode("utf-8"), newline=""), format="csv")
    assert list(binary) == list(text)


def test_the_error_says_how_far_out_of_order_the_rows_are() -> None:
    # "a" at 0 h closes when the newest time is 24 h 20 min; its row at 24 h comes 20 minutes
    # behind the newest time, and within a day of its last row.
    history = [_row("a", 0, 1)] + [_row(f"x{i}", 24 + 1 / 3, i + 2) for i in range(2100)]
    history.append(_row("a", 24, 9999))
    with pytest.raises(HistoryError) as info:
        planning.simulate(history, ["per-conversation"])
    assert str(info.value) == (
        "timestamp='2026-03-02T00:00:00Z': rows are out of time order by up to 20 minutes, and "
        "conversation 'a' continues here after it was closed; sort them first (--sort, or "
        "sort=True) (<rows>, line 9999)"
    )


@pytest.mark.parametrize("order", ["sorted", "grouped"])
def test_the_benchmark_prints_its_figures(tmp_path: Path, order: str) -> None:
    script = Path(__file__).resolve().parent.parent / "benchmarks" / "simulate.py"
    args = [sys.executable, str(script), "--rows", "3000", "--dir", str(tmp_path)]
    run = subprocess.run(
        [*args, "--order", order], capture_output=True, text=True, check=True, timeout=300
    )
    lines = run.stdout.splitlines()
    assert lines[0].startswith("wrote ")
    assert lines[1].startswith("3,000 rows, ")
    assert " conversations through the command: " in lines[1]
    for figure in (" rows/s, ", " s wall, ", " s CPU (", " us/row), peak RSS ", " MiB, "):
        assert figure in lines[1]
    assert lines[2] == "  JSON decoded with orjson"
    assert len(lines) == 3 + 5  # a bill per model
    again = subprocess.run(
        [*args, "--order", order, "--via", "api", "--parser", "json", "--sort"],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    ).stdout.splitlines()
    assert "through the API with --sort: " in again[0]  # the file is reused
    assert again[1] == "  JSON decoded with json (the standard library)"
    assert again[2:] == lines[3:]  # the same bills
