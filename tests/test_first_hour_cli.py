"""The first hour with the ``flexcredits`` command: every failure is one clear line.

The command runs as users run it: the console script that pyproject declares, in a real
subprocess, with an extra made unimportable where a test says so.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

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
