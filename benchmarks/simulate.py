"""Time ``flexcredits simulate`` on a large generated history: rows a second, CPU, peak memory.

    python benchmarks/simulate.py [--rows 10000000] [--format jsonl|csv]
        [--order sorted|grouped] [--parser orjson|json] [--via cli|api] [--sort] [--dir DIR]

Wall time depends on what else the machine runs; CPU time is the steadier figure. Writes the
history once (into DIR, a temporary directory by default; an existing file of the same size,
format and order is reused), then simulates it under five models in a child process, through
the command (``--via cli``, the default) or `planning.simulate`, so the peak resident memory
reported is the simulation's alone. ``--parser json`` makes the child decode JSONL with the
standard library, as when orjson is not installed.

``sorted``: rows interleave 64 concurrent conversations of 1 to 12 actions over 90 days, with
two tags and a resolved flag. ``grouped``: the same kinds of conversations, each one's rows
together, starting at random times over the 90 days (as a file sorted by conversation id is).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

from flexcredits_sdk import RateCard
from flexcredits_sdk.cli import main as cli_main
from flexcredits_sdk.planning import (
    Allotment,
    CreditPlan,
    PerConversation,
    PerResolution,
    PerTicket,
    Tier,
    _history,
    dump_model,
    preset,
    simulate,
)

_ACTIONS = (
    ("lookup_order", "standard"),
    ("get_time_slots", "standard"),
    ("summarize_case", "standard"),
    ("escalate", "custom"),
)
_START = 1_767_225_600  # 2026-01-01T00:00:00Z


def _stamp(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def _line(fmt: str, conv: list[object], i: int, t: int, resolved: bool) -> str:
    action, kind = _ACTIONS[i % 4]
    stamp = _stamp(t)
    if fmt == "csv":
        return (
            f"{conv[0]},{action},{kind},{stamp},{conv[3]},"
            f"team={conv[2]};region=eu,{'true' if resolved else 'false'}\n"
        )
    row = {
        "conversation_id": conv[0],
        "action": action,
        "action_type": kind,
        "timestamp": stamp,
        "environment": conv[3],
        "tags": {"team": conv[2], "region": "eu"},
        "resolved": resolved,
    }
    return json.dumps(row) + "\n"


def _conversation(number: int, rng: random.Random) -> list[object]:
    team = ("support", "sales", "billing")[number % 3]
    env = "sandbox" if number % 10 == 0 else "production"
    return [f"c{number}", rng.randint(1, 12), team, env]


def generate(path: Path, rows: int, fmt: str, order: str = "sorted", seed: int = 6) -> None:
    """Write `rows` action rows to `path` as JSONL or CSV, sorted by time or grouped."""
    rng = random.Random(seed)
    step = 90 * 86_400 / rows
    active: list[list[object]] = []
    next_id = 0
    with path.open("w", encoding="utf-8") as out:
        if fmt == "csv":
            out.write("conversation_id,action,action_type,timestamp,environment,tags,resolved\n")
        if order == "grouped":
            i = 0
            while i < rows:
                next_id += 1
                conv = _conversation(next_id, rng)
                start = _START + rng.randrange(90 * 86_400)
                n = min(int(conv[1]), rows - i)  # type: ignore[call-overload]
                for k in range(n):
                    done = k == n - 1
                    resolved = done and rng.random() < 0.6
                    out.write(_line(fmt, conv, i, start + k * 64 * int(step + 1), resolved))
                    i += 1
            return
        for i in range(rows):
            while len(active) < 64:
                next_id += 1
                active.append(_conversation(next_id, rng))
            k = rng.randrange(64)
            conv = active[k]
            conv[1] = int(conv[1]) - 1  # type: ignore[call-overload]
            done = conv[1] == 0
            if done:
                active[k] = active[-1]
                active.pop()
            resolved = done and rng.random() < 0.6
            out.write(_line(fmt, conv, i, _START + int(i * step), resolved))


def _models() -> list[CreditPlan | PerConversation | PerResolution | PerTicket]:
    team = CreditPlan(
        name="team-plan",
        rate_card=RateCard.agentforce(),
        rounding="per_month",
        allotments=(Allotment(name="seat", credits=2000, price=Decimal(30), quantity=50),),
        tiers=(Tier(up_to=5_000_000, price=Decimal("0.005")), Tier(price=Decimal("0.004"))),
    )
    return [
        preset(n) for n in ("agentforce", "per-conversation", "per-resolution", "per-ticket")
    ] + [team]


def run(path: Path, via: str, parser: str, sort: bool) -> None:
    """Simulate `path` under five models; print rows a second, CPU, peak RSS and the bills."""
    if parser == "json":
        _history._fast_loads = None  # as without orjson installed
    elif _history._fast_loads is None:
        sys.exit("orjson is not installed: pip install 'flexcredits-sdk[planning]'")
    models = _models()
    out = path.with_suffix(".result.json")
    start, cpu_start = time.perf_counter(), time.process_time()
    if via == "cli":
        with tempfile.TemporaryDirectory() as tmp:
            model_file = Path(tmp) / "team-plan.json"
            dump_model(models[-1], model_file)
            names = [*(m.name for m in models[:-1]), str(model_file)]
            args = ["simulate", str(path), "-o", "json", "--out", str(out), "--no-progress"]
            args += [arg for name in names for arg in ("-m", name)]
            cli_main(args + (["--sort"] if sort else []), standalone_mode=False)
        result = json.loads(out.read_text())
        out.unlink()
        rows, conversations, peak_open = (
            result["rows"],
            result["conversations"],
            result["peak_open"],
        )
        bills = [(m["name"], Decimal(m["total"])) for m in result["models"]]
    else:
        done = simulate(path, models, sort=sort)
        rows, conversations, peak_open = done.rows, done.conversations, done.peak_open
        bills = [(m.name, m.total) for m in done.models]
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"{rows:,} rows, {conversations:,} conversations through the "
        f"{'command' if via == 'cli' else 'API'}{' with --sort' if sort else ''}: "
        f"{rows / elapsed:,.0f} rows/s, {elapsed:.1f} s wall, {cpu:.1f} s CPU "
        f"({cpu / rows * 1e6:.2f} us/row), peak RSS {peak_mib:.0f} MiB, "
        f"peak open conversations {peak_open:,}"
    )
    decoder = "orjson" if parser == "orjson" else "json (the standard library)"
    print(f"  JSON decoded with {decoder}" if path.suffix == ".jsonl" else "  CSV")
    for name, total in bills:
        print(f"  {name:18} ${total:,.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--format", choices=("jsonl", "csv"), default="jsonl")
    parser.add_argument("--order", choices=("sorted", "grouped"), default="sorted")
    parser.add_argument("--parser", choices=("orjson", "json"), default="orjson")
    parser.add_argument("--via", choices=("cli", "api"), default="cli")
    parser.add_argument("--sort", action="store_true", help="pass --sort (sort=True)")
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--run", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run is not None:
        run(args.run, args.via, args.parser, args.sort)
        return
    suffix = "" if args.order == "sorted" else f"-{args.order}"
    path = args.dir / f"flexcredits-history-{args.rows}{suffix}.{args.format}"
    if not path.exists():
        start = time.perf_counter()
        generate(path, args.rows, args.format, args.order)
        size = path.stat().st_size / 2**20
        print(f"wrote {path} ({size:,.0f} MiB) in {time.perf_counter() - start:.1f} s")
    child = [sys.executable, __file__, "--run", str(path), "--via", args.via]
    child += ["--parser", args.parser] + (["--sort"] if args.sort else [])
    subprocess.run(child, check=True, env=dict(os.environ))


if __name__ == "__main__":
    main()
