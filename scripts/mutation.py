"""Mutation testing of the accounting core: how many mutants of each module its own tests kill.

Each module is mutated by mutmut (one change at a time: operators flipped, numbers moved by one,
strings, arguments and statements changed or removed) in a copy of the working tree, and the
tests of that module run against every mutant. A mutant that survives is a change of behaviour
no test notices, unless it is listed in ``mutation_equivalents.toml`` beside this script as one
that cannot change behaviour, with the reason. The kill rate is

    killed / (mutants - equivalent ones)

Usage: ``python scripts/mutation.py [--jobs N] [--keep] [MODULE ...]`` (``make mutation``).
Exits 1 when a module's rate is under the target.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EQUIVALENTS = Path(__file__).resolve().parent / "mutation_equivalents.toml"
TARGET = 0.90

#: Each module and its own tests (files that do not exist yet are skipped).
MODULES: dict[str, list[str]] = {
    "flexcredits_sdk/_ledger.py": [
        "tests/test_ledger.py",
        "tests/test_ledger_state.py",
        "tests/test_booking.py",
    ],
    "flexcredits_sdk/_pricing.py": ["tests/test_pricing.py"],
}

# mutmut's exit codes of a mutant's test run (mutmut/stats.py).
_KILLED = {1, 3}
_SURVIVED = {0}
_NO_TESTS = {5, 33}
_TIMEOUT = {24, -24, 36, 152, 255}


@dataclass
class Mutant:
    key: str
    function: str
    status: str
    before: str = ""
    after: str = ""


@dataclass
class Result:
    module: str
    mutants: list[Mutant] = field(default_factory=list)
    seconds: float = 0.0


def _readable(mangled: str) -> str:
    """``xǁRateCardǁprice`` -> ``RateCard.price``; ``x__toml_key`` -> ``_toml_key``."""
    if mangled.startswith("xǁ"):
        return ".".join(mangled[2:].split("ǁ"))
    return mangled[2:]


def _status(code: int | None) -> str:
    if code in _KILLED or code in _TIMEOUT:
        return "killed"  # a mutant that makes the tests hang is noticed too
    if code in _SURVIVED:
        return "survived"
    if code in _NO_TESTS:
        return "no tests"
    return f"other ({code})"


def _functions(source: str) -> dict[str, str]:
    """Every function of mutmut's mutated module, unparsed, by name."""
    found: dict[str, str] = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and "__mutmut_" in node.name:
            node.decorator_list = []
            name, node.name = node.name, "f"
            found[name] = ast.unparse(node)
    return found


def _change(orig: str, mutant: str) -> tuple[str, str]:
    """The lines the mutant removed and the lines it added, without indentation."""
    before, after = [], []
    for line in difflib.ndiff(orig.splitlines(), mutant.splitlines()):
        if line.startswith("- "):
            before.append(line[2:].strip())
        elif line.startswith("+ "):
            after.append(line[2:].strip())
    return "\n".join(before), "\n".join(after)


#: A conftest.py for the root of the copy: hypothesis reports the first failing example without
#: shrinking it (a mutant is killed by any failure; shrinking one can take minutes).
_PLUGIN = """\
from hypothesis import Phase, settings

settings.register_profile(
    "mutation", phases=[Phase.explicit, Phase.reuse, Phase.generate], deadline=None
)
settings.load_profile("mutation")
"""


def _copy_tree(work: Path, module: str, tests: list[str]) -> None:
    ignore = shutil.ignore_patterns("__pycache__", ".hypothesis", "*.pyc")
    shutil.copytree(ROOT / "flexcredits_sdk", work / "flexcredits_sdk", ignore=ignore)
    shutil.copytree(ROOT / "tests", work / "tests", ignore=ignore)
    (work / "conftest.py").write_text(_PLUGIN, encoding="utf-8")
    config = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    selection = json.dumps(tests)
    config += (
        "\n[tool.mutmut]\n"
        'source_paths = ["flexcredits_sdk"]\n'
        f"only_mutate = [{json.dumps(module)}]\n"
        f"pytest_add_cli_args_test_selection = {selection}\n"
        'pytest_add_cli_args = ["-p", "no:cacheprovider", "--hypothesis-seed=0"]\n'
        'also_copy = ["conftest.py"]\n'
        "use_git_change_detection = false\n"
    )
    (work / "pyproject.toml").write_text(config, encoding="utf-8")


def run_module(module: str, jobs: int, keep: bool) -> Result:
    tests = [t for t in MODULES[module] if (ROOT / t).exists()]
    work = Path(tempfile.mkdtemp(prefix="flexcredits-mutation-"))
    result = Result(module)
    started = time.monotonic()
    try:
        _copy_tree(work, module, tests)
        log = work / "mutmut.log"
        with log.open("w", encoding="utf-8") as out:
            done = subprocess.run(
                [sys.executable, "-m", "mutmut", "run", "--max-children", str(jobs)],
                cwd=work,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONHASHSEED": "0"},
                check=False,
            )
        meta = work / "mutants" / f"{module}.meta"
        if done.returncode != 0 or not meta.exists():
            tail = log.read_text(encoding="utf-8", errors="replace")[-3000:]
            raise SystemExit(f"mutmut failed on {module} (exit {done.returncode}):\n{tail}")
        codes: dict[str, int | None] = json.loads(meta.read_text(encoding="utf-8"))[
            "exit_code_by_key"
        ]
        functions = _functions((work / "mutants" / module).read_text(encoding="utf-8"))
        for key, code in codes.items():
            name = key.rpartition(".")[2]
            mangled = name.rpartition("__mutmut_")[0]
            mutant = Mutant(key, _readable(mangled), _status(code))
            if mutant.status != "killed":
                orig = functions.get(f"{mangled}__mutmut_orig", "")
                mutant.before, mutant.after = _change(orig, functions.get(name, ""))
            result.mutants.append(mutant)
    finally:
        result.seconds = time.monotonic() - started
        if keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return result


def _equivalents() -> list[dict[str, str]]:
    with EQUIVALENTS.open("rb") as f:
        entries: list[dict[str, str]] = tomllib.load(f).get("equivalent", [])
    return entries


def report(result: Result, equivalents: list[dict[str, str]]) -> bool:
    """Print one module's figures; return whether it meets the target."""
    mine = [e for e in equivalents if e["module"] == result.module]
    used = [0] * len(mine)
    excluded: list[tuple[Mutant, str]] = []
    open_: list[Mutant] = []
    killed = 0
    for m in result.mutants:
        if m.status == "killed":
            killed += 1
            continue
        for i, e in enumerate(mine):
            if (e["function"], e["before"].strip(), e["after"].strip()) == (
                m.function,
                m.before,
                m.after,
            ):
                used[i] += 1
                excluded.append((m, e["why"]))
                break
        else:
            open_.append(m)
    counted = len(result.mutants) - len(excluded)
    rate = killed / counted if counted else 1.0
    print(f"\n== {result.module}: {len(result.mutants)} mutants in {result.seconds:.0f} s")
    print(f"   killed {killed}, equivalent {len(excluded)}, not killed {len(open_)}")
    print(f"   kill rate {killed}/{counted} = {rate:.1%} (target {TARGET:.0%})")
    if excluded:
        print("   excluded as equivalent:")
        for m, why in excluded:
            print(f"     {m.key.rpartition('.')[2]}: {why}")
    if open_:
        print("   not killed:")
        for m in open_:
            change = f"{m.before!r} -> {m.after!r}"
            print(f"     {m.key.rpartition('.')[2]} [{m.status}] {change}")
    unused = [e for e, n in zip(mine, used, strict=True) if n == 0]
    for e in unused:  # killed this time (a timeout, say), or the code changed
        print(f"   note: an exclusion matched no surviving mutant: {e['function']}: {e['after']}")
    return rate >= TARGET


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", default=list(MODULES), metavar="MODULE")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--keep", action="store_true", help="keep the mutated copy")
    args = parser.parse_args(argv)
    unknown = [m for m in args.modules if m not in MODULES]
    if unknown:
        parser.error(f"unknown module(s) {unknown}; known: {sorted(MODULES)}")
    equivalents = _equivalents()
    started = time.monotonic()
    ok = True
    for module in args.modules:
        result = run_module(module, args.jobs, args.keep)
        ok = report(result, equivalents) and ok
    print(f"\nmutation testing took {time.monotonic() - started:.0f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
