"""A new user's first hour with the pytest plugin, the Makefile and the README.

The helpers import without pytest, ``make demo`` installs only the core, the report reads
right (exact credits, money to the cent, records counted as records) and adds up under
pytest-xdist, and a conftest's metered call never builds a network wallet.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent

#: A ``sitecustomize`` that makes ``import pytest`` fail, as on a machine without it.
NO_PYTEST = """
import importlib.abc
import sys


class _NoPytest(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in {"pytest", "_pytest"}:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, _NoPytest())
"""

HELPERS_WITHOUT_PYTEST = """
import sys

import flexcredits_sdk as fc
from flexcredits_sdk.testing import DEFAULT_START_NS, FakeClock, FlexWallet

try:
    import pytest
except ModuleNotFoundError:
    pass
else:
    raise SystemExit("pytest was importable")

meter = fc.Meter()
checkout = meter.metered_action(name="checkout")(lambda: "done")
wallet = FlexWallet(meter, clock=FakeClock()).install()
try:
    assert checkout() == "done"
    wallet.assert_consumed(20)
    wallet.assert_actions(["checkout"])
    assert wallet.clock() == DEFAULT_START_NS
finally:
    wallet.uninstall()
assert "_pytest" not in sys.modules
print("ok")
"""


def run_python(code: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# --- 8: the helpers without pytest ------------------------------------------------------------


def test_the_helpers_import_and_work_where_pytest_is_not_installed(tmp_path: Path) -> None:
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(NO_PYTEST)
    env = {**os.environ, "PYTHONPATH": str(shim)}
    env.pop("FLEXCREDITS_URL", None)

    blocked = run_python("import pytest", env, tmp_path)
    assert blocked.returncode != 0
    assert "No module named 'pytest'" in blocked.stderr

    result = run_python(HELPERS_WITHOUT_PYTEST, env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "ok\n"


def test_the_fixture_still_imports_from_flexcredits_sdk_testing() -> None:
    from flexcredits_sdk import testing

    assert "flex_wallet" in testing.__all__
    assert callable(testing.flex_wallet)


def test_the_entry_point_loads_the_plugin(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
def test_fixture(flex_wallet):
    flex_wallet.assert_consumed(0)
"""
    )
    result = pytester.runpytest_subprocess("-p", "no:asyncio", "--flexcredits-report")
    result.assert_outcomes(passed=1)
    # Switched off by name, the entry point's plugin is gone with its fixture and option.
    result = pytester.runpytest_subprocess("-p", "no:flexcredits", "-p", "no:asyncio")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'flex_wallet' not found*"])


# --- 9: make demo installs the core only ------------------------------------------------------


def make_dry_run(target: str, venv: Path) -> str:
    result = subprocess.run(
        ["make", "-n", "--no-print-directory", target, f"VENV={venv}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_demo_installs_the_core_only_and_make_test_the_dev_extra(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    demo = make_dry_run("demo", venv)
    assert "pip install" in demo
    assert "[dev]" not in demo
    assert "examples/agentforce_use_cases.py" in demo

    # As after `make demo` in a fresh clone: the venv and the core install are there.
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").touch()
    for stamp in re.findall(r"touch (\S+)", demo):
        Path(stamp).touch()
    assert (
        make_dry_run("demo", venv).strip() == f"{venv}/bin/python examples/agentforce_use_cases.py"
    )
    assert "-e '.[dev]'" in make_dry_run("pytest", venv)


def test_the_dashboard_test_says_how_to_get_chromium(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    dashboard = pytest.importorskip("test_server_dashboard")
    monkeypatch.setattr(dashboard, "CHROMIUM", str(tmp_path / "no-chromium"))
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception) as info:
        dashboard.test_the_dashboard_renders_in_headless_chromium(tmp_path)
    assert "apt-get install chromium" in str(info.value)
    assert ".ci/services.sh" in str(info.value)


# --- 17: what the plugin prints ---------------------------------------------------------------

DECIMAL_AGENT = """
from decimal import Decimal

import pytest

import flexcredits_sdk as fc

CARD = fc.RateCard(
    name="quarter",
    pack_credits=1000,
    pack_price=Decimal(5),
    action_types={"standard": {"production": Decimal("0.25"), "dev": 1}},
)


@fc.metered_action(name="search")
def search(pages=1):
    fc.current_action().units = pages


@pytest.fixture(autouse=True)
def _card():
    fc.configure(rate_card=CARD)


def test_four_pages():
    search(pages=4)
    search(pages=4)


def test_two_searches():
    search()
    search()


@pytest.mark.flexcredits(rate_card=CARD, max_credits=Decimal("0.500"))
def test_over(flex_wallet):
    search(pages=4)
    search(pages=4)


def test_consumed(flex_wallet):
    search(pages=4)
    flex_wallet.assert_consumed(Decimal("1.5"))
"""


def test_the_plugin_prints_credits_exactly_money_to_the_cent_and_counts_records(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_agent=DECIMAL_AGENT)
    result = pytester.runpytest("-p", "no:asyncio", "--flexcredits-report")
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines(
        [
            "flexcredits: the test consumed 2 credits, more than max_credits=0.5 (production)",
            "  action  calls  credits  money",
            "  search      2        2  $0.01",
            "  total       2        2  $0.01",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "*AssertionError: expected 1.5 credits to be consumed, got 1",
            "*  action  calls  credits  money",
            "*  search      1        1  $0.01",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "*= flexcredits report =*",
            "  credits  money  records  test",
            "        2  $0.01        2  test_agent.py::test_four_pages",
            "        2  $0.01        2  test_agent.py::test_over",
            "        1  $0.01        1  test_agent.py::test_consumed",
            "      0.5  $0.00        2  test_agent.py::test_two_searches",
            "      5.5  $0.03        7  total (4 tests)",
        ]
    )
    output = result.stdout.str()
    assert "Decimal('" not in output
    assert "<FlexWallet 1 credits in 1 records>" in output
    assert "1.00" not in output
    assert "2.00" not in output


# --- 20: the report under pytest-xdist --------------------------------------------------------

XDIST_AGENT = """
import pytest

import flexcredits_sdk as fc


@fc.metered_action(name="search")
def search(pages=1):
    fc.current_action().units = pages


@pytest.mark.parametrize("pages", range(1, 9))
def test_pages(pages):
    for _ in range(pages):
        search(pages=pages)


def test_with_the_fixture(flex_wallet):
    search(pages=3)
    flex_wallet.assert_consumed(60)


def test_nothing():
    pass
"""


def report_lines(output: str) -> list[str]:
    section = output.split(" flexcredits report ", 1)[1].splitlines()[1:]
    return [line for line in section if line and not line.startswith("=")]


def test_the_report_adds_up_the_workers_under_xdist(pytester: pytest.Pytester) -> None:
    pytest.importorskip("xdist")
    pytester.makepyfile(test_agent=XDIST_AGENT)
    serial = pytester.runpytest_subprocess("-p", "no:asyncio", "--flexcredits-report")
    serial.assert_outcomes(passed=10)
    parallel = pytester.runpytest_subprocess(
        "-p", "no:asyncio", "--flexcredits-report", "-n", "2", "-p", "xdist"
    )
    parallel.assert_outcomes(passed=10)
    assert "2 workers" in parallel.stdout.str()
    lines = report_lines(serial.stdout.str())
    assert lines[0] == "  credits   money  records  test"
    assert lines[-1] == "    4,140  $20.70       37  total (9 tests)"
    assert report_lines(parallel.stdout.str()) == lines


# --- 21: a conftest's metered call stays offline ----------------------------------------------


@pytest.fixture
def listener() -> Iterator[tuple[int, list[bytes]]]:
    """A loopback port that records every connection made to it (and the first bytes)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.2)
    seen: list[bytes] = []
    done = threading.Event()

    def accept() -> None:
        while not done.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(1)
                try:
                    seen.append(conn.recv(1024))
                except OSError:
                    seen.append(b"")

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1], seen
    finally:
        done.set()
        thread.join()
        server.close()


def test_a_metered_call_in_a_conftest_never_reaches_the_network(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    listener: tuple[int, list[bytes]],
    tmp_path: Path,
) -> None:
    port, seen = listener
    monkeypatch.setenv("FLEXCREDITS_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("FLEXCREDITS_API_KEY", "key-for-tests-0123456789")
    monkeypatch.setenv("FLEXCREDITS_OUTBOX_DIR", str(tmp_path / "outbox"))
    pytester.makeconftest(
        textwrap.dedent(
            """
            import flexcredits_sdk as fc

            warm_up = fc.metered_action(name="warm_up")(lambda: "warm")
            assert warm_up() == "warm"
            wallet = fc.get_meter().wallet
            WALLET = type(getattr(wallet, "resolve", lambda: wallet)()).__name__
            fc.flush(2)
            """
        )
    )
    pytester.makepyfile(
        """
import conftest

import flexcredits_sdk as fc


def test_the_conftest_booked_offline():
    assert conftest.WALLET == "OfflineWallet"
    (record,) = fc.get_meter().wallet.records(action="warm_up")
    assert record.credits == 20
"""
    )
    result = pytester.runpytest_subprocess("-p", "no:asyncio", timeout=60)
    result.assert_outcomes(passed=1)
    assert seen == []


# --- the README's quickstart ------------------------------------------------------------------


def test_the_readme_quickstart_prints_what_its_comments_say(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    (block,) = re.findall(r"^```python\n(.*?)^```", readme, re.MULTILINE | re.DOTALL)
    expected = [line.split("  # ", 1)[1] for line in block.splitlines() if "print(" in line]
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEXCREDITS_")}
    result = run_python(block, env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == expected
    assert "Decimal(" not in result.stdout
