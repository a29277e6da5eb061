"""The first hour with the ``flexcredits`` command: every failure is one clear line.

The command runs as users run it: the console script that pyproject declares, in a real
subprocess, with an extra made unimportable where a test says so.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import runpy
import shlex
import subprocess
import sys
import tomllib
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner

import flexcredits_sdk as fc
from flexcredits_sdk import planning
from flexcredits_sdk.cli import main
from flexcredits_sdk.testing import FakeClock

ConfigurationError = fc.ConfigurationError

ROOT = Path(__file__).resolve().parent.parent
HISTORY = str(ROOT / "examples" / "history.jsonl")

#: Makes the top-level modules named in $FLEXCREDITS_TEST_BLOCK unimportable.
BLOCKER = """
import os
import sys

_BLOCKED = {name for name in os.environ.get("FLEXCREDITS_TEST_BLOCK", "").split(",") if name}


class _Block:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in _BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, _Block())
"""


def _entry_point() -> str:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    return str(scripts["flexcredits"])


def flexcredits(
    *args: str, block: tuple[str, ...] = (), cwd: Path | None = None, shim: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the console script pyproject declares, as its generated launcher does."""
    module, _, function = _entry_point().partition(":")
    code = (
        "import sys, importlib; sys.argv[0] = 'flexcredits'; "
        f"sys.exit(getattr(importlib.import_module({module!r}), {function!r})())"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(shim or ""), str(ROOT)]))}
    env["FLEXCREDITS_TEST_BLOCK"] = ",".join(block)
    env.pop("FLEXCREDITS_WALLET_DB", None)
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=cwd or ROOT,
        check=False,
    )


@pytest.fixture(scope="module")
def shim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory whose ``sitecustomize`` blocks the modules a test names."""
    where = tmp_path_factory.mktemp("shim")
    (where / "sitecustomize.py").write_text(BLOCKER)
    return where


def one_line_error(run: subprocess.CompletedProcess[str]) -> str:
    assert run.returncode != 0, run
    assert "Traceback" not in run.stderr, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith("Error: "), run.stderr
    return lines[0]


def last_line_error(run: subprocess.CompletedProcess[str]) -> str:
    """The error line of a command that may first say on stderr which database it uses."""
    assert run.returncode != 0, run
    assert "Traceback" not in run.stderr, run.stderr
    line = run.stderr.strip().splitlines()[-1]
    assert line.startswith("Error: "), run.stderr
    return line


def test_the_command_without_click_says_how_to_install_it(shim: Path) -> None:
    run = flexcredits("--help", block=("click",), shim=shim)
    line = one_line_error(run)
    assert "pip install 'flexcredits-sdk[cli]'" in line
    assert run.returncode == 1


def test_a_server_command_without_the_server_extra_says_how_to_install_it(
    shim: Path, tmp_path: Path
) -> None:
    run = flexcredits(
        "wallet", "tenants", "--db", str(tmp_path / "w.db"), block=("sqlalchemy",), shim=shim
    )
    line = last_line_error(run)
    assert "pip install 'flexcredits-sdk[server]'" in line


def test_a_missing_module_names_the_extra_that_installs_it() -> None:
    from flexcredits_sdk.cli import failure_text

    missing = ModuleNotFoundError("No module named 'sqlalchemy.orm'", name="sqlalchemy.orm")
    assert failure_text(missing) == (
        "this command needs sqlalchemy, which is not installed: "
        "pip install 'flexcredits-sdk[server]'"
    )
    assert "pip install 'flexcredits-sdk[planning]'" in failure_text(
        ModuleNotFoundError("No module named 'orjson'", name="orjson")
    )


def test_the_planning_commands_work_without_the_server_extra(shim: Path) -> None:
    run = flexcredits(
        "simulate", HISTORY, "-m", "per-ticket", block=("sqlalchemy", "fastapi"), shim=shim
    )
    assert run.returncode == 0, run.stderr
    assert "per-ticket" in run.stdout


def test_a_missing_model_file_is_one_line_naming_it(tmp_path: Path) -> None:
    run = flexcredits("simulate", HISTORY, "-m", "missing.toml", cwd=tmp_path)
    line = one_line_error(run)
    assert "missing.toml" in line


def test_an_unwritable_output_is_one_line_and_debug_shows_the_traceback(tmp_path: Path) -> None:
    out = str(tmp_path / "no" / "such" / "dir" / "report.txt")
    run = flexcredits("simulate", HISTORY, "-m", "per-ticket", "--out", out)
    assert one_line_error(run) == f"Error: {out}: No such file or directory"
    assert run.returncode == 1
    debug = flexcredits("--debug", "simulate", HISTORY, "-m", "per-ticket", "--out", out)
    assert debug.returncode != 0
    assert "Traceback" in debug.stderr
    assert "FileNotFoundError" in debug.stderr


def test_an_unopenable_database_is_no_traceback() -> None:
    run = flexcredits("wallet", "tenants", "--db", "/nonexistent/dir/w.db")
    line = last_line_error(run)
    assert "/nonexistent/dir/w.db" in line


def test_debug_shows_the_cause_of_a_one_line_error(tmp_path: Path) -> None:
    run = flexcredits("--debug", "simulate", HISTORY, "-m", "missing.toml", cwd=tmp_path)
    assert run.returncode != 0
    assert "Traceback" in run.stderr
    assert run.stderr.strip().splitlines()[-1].startswith("Error: ")


# --- model and rate-card files name the file, the line and the field's path -----------------


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


BAD_TOML = 'kind = "credits"\nname = "mine"\n[rate_card\npack_credits = 100000\n'


def test_a_model_file_that_does_not_parse_names_the_file_and_line(
    runner: CliRunner, tmp_path: Path
) -> None:
    path = tmp_path / "plan.toml"
    path.write_text(BAD_TOML)
    result = runner.invoke(main, ["simulate", HISTORY, "-m", str(path)])
    assert result.exit_code == 1
    assert result.output == (
        f"Error: model='{path}': is not valid TOML: Expected ']' at the end of a table "
        f"declaration ({path}, line 3, column 11)\n"
    )


def test_a_missing_field_names_its_path_not_the_whole_input(
    runner: CliRunner, tmp_path: Path
) -> None:
    path = tmp_path / "plan.toml"
    path.write_text('kind = "credits"\nname = "mine"\n')
    result = runner.invoke(main, ["simulate", HISTORY, "-m", str(path)])
    assert result.output == f"Error: rate_card: is required ({path})\n"
    path.write_text(
        'kind = "credits"\nname = "mine"\n[rate_card]\naction_types = { standard = '
        '{ production = 20 } }\n[[allotments]]\nname = "seat"\nprice = "30"\n'
    )
    result = runner.invoke(main, ["simulate", HISTORY, "-m", str(path)])
    assert result.output == f"Error: allotments.0.credits: is required ({path})\n"
    with pytest.raises(ConfigurationError) as info:
        planning.loads_model('{"kind": "per_ticket", "name": "x"}')
    assert str(info.value) == "price: is required"
    with pytest.raises(ConfigurationError) as info:
        planning.loads_model('{"name": "x"}')
    assert str(info.value) == "kind: is required"


def test_a_rate_card_file_names_the_file_and_line(runner: CliRunner, tmp_path: Path) -> None:
    wallet = tmp_path / "wallet.db"
    fc.OfflineWallet(path=wallet).shutdown()
    card = tmp_path / "card.toml"
    card.write_text("pack_credits = \n")
    result = runner.invoke(
        main, ["wallet", "balance", "--file", str(wallet), "--rate-card", str(card)]
    )
    assert result.output == (
        f"Error: rate_card='{card}': is not valid TOML: Invalid value ({card}, line 1, column 16)\n"
    )
    card.write_text("pack_credits = 1000\n")
    result = runner.invoke(
        main, ["wallet", "balance", "--file", str(wallet), "--rate-card", str(card)]
    )
    assert result.output == f"Error: action_types: is required ({card})\n"


# --- messages a person reads carry no library wording and no Python reprs --------------------


def test_model_errors_have_no_pydantic_prefix(runner: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "plan.json"
    path.write_text(
        json.dumps(
            {
                "kind": "credits",
                "name": "tiered",
                "rate_card": {"action_types": {"standard": {"production": 20}}},
                "tiers": [{"up_to": 10, "price": "0.01"}],
            }
        )
    )
    result = runner.invoke(main, ["simulate", HISTORY, "-m", str(path)])
    assert "Value error" not in result.output
    assert result.output == (
        f"Error: tiers.0.up_to=10: must be absent: the last tier has no bound ({path})\n"
    )
    path.write_text(json.dumps({"kind": "per_minute", "name": "x", "price": "1"}))
    result = runner.invoke(main, ["simulate", HISTORY, "-m", str(path)])
    assert result.output.startswith("Error: kind='per_minute': must be one of 'credits', ")


def test_dates_read_as_dates(runner: CliRunner, tmp_path: Path) -> None:
    daily = _daily_file(tmp_path, 20)
    result = runner.invoke(main, ["forecast", str(daily), "--until", "2020-01-01"])
    assert result.exit_code == 1
    assert "datetime.date(" not in result.output
    assert result.output == "Error: until='2020-01-01': must be a date on or after 2026-01-21\n"
    with pytest.raises(ConfigurationError) as info:
        planning.forecast({_dt.datetime(2026, 1, 1): 5})
    assert str(info.value) == "daily='2026-01-01 00:00:00': keys must be datetime.date values"
    with pytest.raises(ConfigurationError) as info:
        planning.simulate(Path(HISTORY), ["agentforce"], idle=_dt.timedelta(0))
    assert str(info.value) == "idle='0:00:00': must be a positive timedelta"


def _daily_file(tmp_path: Path, days: int) -> Path:
    path = tmp_path / "daily.csv"
    start = _dt.date(2026, 1, 1)
    lines = ["date,credits"] + [f"{start + _dt.timedelta(days=i)},{100 + i}" for i in range(days)]
    path.write_text("\n".join(lines) + "\n")
    return path


# --- a history's format comes from its content; an empty one is refused ----------------------


def test_a_csv_history_with_another_suffix_is_read_as_csv(
    runner: CliRunner, tmp_path: Path
) -> None:
    path = tmp_path / "history.txt"
    path.write_bytes((ROOT / "examples" / "history.csv").read_bytes())
    result = runner.invoke(main, ["simulate", str(path), "-m", "agentforce"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("201 rows, 40 conversations")
    jsonl = tmp_path / "history.log"
    jsonl.write_bytes((ROOT / "examples" / "history.jsonl").read_bytes())
    assert planning.detect_format(jsonl) == "jsonl"


def test_a_history_of_unknown_format_is_refused_unless_format_is_given(
    runner: CliRunner, tmp_path: Path
) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello\n")
    result = runner.invoke(main, ["simulate", str(path)])
    assert result.exit_code == 1
    assert result.output == (
        f"Error: history='{path}': cannot tell the format: the suffix .txt is not .csv or .jsonl "
        "and its first line is neither a JSON object nor a header; pass --format (jsonl, csv or "
        "records)\n"
    )
    result = runner.invoke(main, ["simulate", str(path), "--format", "jsonl"])
    assert result.exit_code == 1
    assert "is not JSON" in result.output


@pytest.mark.parametrize(
    ("name", "text"), [("empty.jsonl", ""), ("header.csv", "action,timestamp\n")]
)
def test_a_history_without_rows_is_an_error(
    runner: CliRunner, tmp_path: Path, name: str, text: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    for command in ("simulate", "forecast"):
        result = runner.invoke(main, [command, str(path)])
        assert result.exit_code == 1, result.output
        assert result.output == (
            f"Error: {path}: no rows to read (the file is empty or only a header)\n"
        )


def test_skip_bad_rows_is_suggested_only_when_not_given(runner: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    path.write_text('{"action": "a", "timestamp": "yesterday"}\n')
    result = runner.invoke(main, ["simulate", str(path)])
    assert result.output.endswith("; pass --skip-bad-rows to skip such rows\n")
    result = runner.invoke(main, ["simulate", str(path), "--skip-bad-rows"])
    assert result.exit_code == 1
    assert "--skip-bad-rows" not in result.output
    assert result.output == f"Error: {path}: none of its rows could be read (1 bad rows skipped)\n"
    bad_header = tmp_path / "bad.csv"
    bad_header.write_text("when,what\n2026-01-01,a\n")
    result = runner.invoke(main, ["simulate", str(bad_header)])
    assert result.exit_code == 1
    assert "--skip-bad-rows" not in result.output
    result = runner.invoke(main, ["forecast", str(path)])
    assert result.output.endswith("; pass --skip-bad-rows to skip such rows\n")


# --- values that make no sense are refused -------------------------------------------------


def test_a_negative_balance_is_refused(runner: CliRunner, tmp_path: Path) -> None:
    daily = _daily_file(tmp_path, 20)
    result = runner.invoke(main, ["forecast", str(daily), "--balance", "-5"])
    assert result.exit_code == 2
    assert "--balance" in result.output
    assert "-5" in result.output
    with pytest.raises(ConfigurationError, match=r"balance='-5': must not be negative"):
        planning.forecast(planning.read_daily(daily), balance=-5)


def test_a_window_that_ends_before_it_starts_is_refused(runner: CliRunner, tmp_path: Path) -> None:
    wallet = tmp_path / "wallet.db"
    fc.OfflineWallet(path=wallet).shutdown()
    for command in ("usage", "records", "export"):
        result = runner.invoke(
            main,
            [
                "wallet",
                command,
                "--file",
                str(wallet),
                "--since",
                "2026-12-01",
                "--until",
                "2026-11-01",
            ],
        )
        assert result.exit_code == 2, result.output
        assert "--until" in result.output
        assert "2026-11-01T00:00:00 is not after --since 2026-12-01T00:00:00" in result.output


# --- money to the cent, credits exactly ------------------------------------------------------


def test_wallet_tables_show_money_to_the_cent_and_credits_exactly(
    runner: CliRunner, tmp_path: Path
) -> None:
    path = tmp_path / "wallet.db"
    clock = FakeClock(_dt.datetime(2026, 11, 2, 9, tzinfo=_dt.UTC))
    wallet = fc.OfflineWallet(path=path, clock=clock)
    wallet.buy_packs(1)
    card = fc.RateCard(action_types={"standard": {"production": Decimal("2.5")}})
    meter = fc.Meter(wallet=wallet, clock=clock, rate_card=card)
    for _ in range(3):
        with fc.tags(team="a"), meter.action("answer"):
            clock.advance(60)
    wallet.shutdown()
    balance = runner.invoke(main, ["wallet", "balance", "--file", str(path)])
    assert balance.output.splitlines()[1].split() == [
        "99,992.5",
        "100,000",
        "7.5",
        "0",
        "0",
        "0",
        "$499.96",
    ]
    usage = runner.invoke(main, ["wallet", "usage", "--file", str(path), "-g", "team"])
    assert usage.output.splitlines()[1].split() == ["a", "3", "3", "7.5", "$0.04"]
    records = runner.invoke(main, ["wallet", "records", "--file", str(path)])
    assert records.output.splitlines()[1].split()[2:4] == ["1", "2.5"]
    assert all(line == line.rstrip() for line in balance.output.splitlines())


def test_the_simulation_report_rounds_money_halves_up(runner: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    path.write_text(
        json.dumps({"conversation_id": "c", "action": "a", "timestamp": "2026-01-05T10:00:00Z"})
        + "\n"
    )
    model = tmp_path / "half-cent.json"
    model.write_text(json.dumps({"kind": "per_conversation", "name": "half", "price": "0.125"}))
    result = runner.invoke(main, ["simulate", str(path), "-m", str(model)])
    assert result.exit_code == 0, result.output
    assert "Cheapest at this volume: half ($0.13)" in result.output


# --- every documented command runs on the shipped files -------------------------------------

BLOCK = re.compile(r"^```(console|shell)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def _documented() -> list[tuple[str, str, str]]:
    """(kind of block, command, the output shown after it) of each ``$ flexcredits`` line."""
    found = []
    for page in (ROOT / "docs" / "planning.md", ROOT / "README.md"):
        for kind, body in BLOCK.findall(page.read_text()):
            parts = re.split(r"^\$ ", body, flags=re.MULTILINE)[1:]
            for part in parts:
                command, _, shown = part.replace("\\\n", "").partition("\n")
                if command.startswith("flexcredits "):
                    found.append((kind, " ".join(command.split()), shown))
    return found


def test_the_documented_commands_are_found() -> None:
    commands = [command for _, command, _ in _documented()]
    assert any(c.startswith("flexcredits forecast examples/daily.csv") for c in commands)
    assert any(c.startswith("flexcredits forecast examples/history-120d.csv") for c in commands)
    assert len(commands) >= 6


@pytest.mark.parametrize(
    ("kind", "command", "shown"), _documented(), ids=[c for _, c, _ in _documented()]
)
def test_every_documented_command_runs_on_shipped_files(
    kind: str, command: str, shown: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = shlex.split(command)[1:]
    if kind == "shell":  # the user's own wallet: made here, in the working directory
        monkeypatch.chdir(tmp_path)
        _november_wallet(tmp_path / "wallet.db")
        if "november.jsonl" in args and args[0] == "simulate":
            assert CliRunner().invoke(main, _export_november()).exit_code == 0
    else:
        monkeypatch.chdir(ROOT)
        args = [a.replace("docs/planning-chart.svg", str(tmp_path / "chart.svg")) for a in args]
    result = CliRunner().invoke(main, args)
    if shown.startswith("Error: "):
        assert result.exit_code == 1
        assert result.output == shown
        return
    assert result.exit_code == 0, result.output
    if kind == "console" and shown:
        assert result.output == shown


def _export_november() -> list[str]:
    return next(shlex.split(c)[1:] for k, c, _ in _documented() if k == "shell" and "export" in c)


def _november_wallet(path: Path) -> None:
    clock = FakeClock(_dt.datetime(2026, 11, 3, 9, tzinfo=_dt.UTC))
    wallet = fc.OfflineWallet(path=path, clock=clock)
    meter = fc.Meter(wallet=wallet, clock=clock)
    for i in range(30):
        with fc.conversation(f"c-{i // 3}"), meter.action("answer"):
            clock.advance(3600)
    wallet.shutdown()


def test_the_forecast_figures_in_the_docs_are_the_commands() -> None:
    page = (ROOT / "docs" / "planning.md").read_text()
    runner = CliRunner()
    daily = runner.invoke(
        main,
        [
            "forecast",
            str(ROOT / "examples" / "daily.csv"),
            "--balance",
            "20000",
            "--until",
            "2026-07-31",
        ],
    )
    history = runner.invoke(
        main,
        [
            "forecast",
            str(ROOT / "examples" / "history-120d.csv"),
            "--model",
            "agentforce",
            "--balance",
            "20000",
        ],
    )
    assert daily.exit_code == 0, daily.output
    assert history.output.splitlines()[:5] == daily.output.splitlines()[:5]
    assert "Next 30 days: 15,216 credits at P50" in daily.output
    assert "Balance 20,000 runs out: 2026-06-14 at P50, 2026-06-08 at P90" in daily.output
    assert "15,216 credits over the next 30 days" in page
    assert "run out on 2026-06-14 at median use, 2026-06-08 at P90" in page


def test_the_long_history_is_what_its_script_writes(tmp_path: Path) -> None:
    script = ROOT / "scripts" / "make_example_history.py"
    module = runpy.run_path(str(script))
    module["main"].__globals__["EXAMPLES"] = tmp_path
    module["main"]()
    for name in ("history-120d.csv", "daily.csv"):
        assert (tmp_path / name).read_bytes() == (ROOT / "examples" / name).read_bytes()
    daily = planning.read_daily(ROOT / "examples" / "daily.csv")
    assert len(daily) == 120
    assert (ROOT / "examples" / "history-120d.csv").stat().st_size < 200_000


def test_a_history_row_without_a_required_field_names_the_field_alone(
    runner: CliRunner, tmp_path: Path
) -> None:
    path = tmp_path / "history.jsonl"
    path.write_text('{"action": "a"}\n')
    result = runner.invoke(main, ["simulate", str(path)])
    assert result.output.startswith(f"Error: timestamp: is required ({path.name}, line 1);")
    path.write_text('{"id": "x", "action": "a"}\n')
    result = runner.invoke(main, ["simulate", str(path), "--format", "records"])
    assert result.output.startswith("Error: action_type: is required (history.jsonl, line 1);")
