"""Time `flexcredits_sdk.planning.simulate` on a large generated history, and its peak memory.

    python benchmarks/simulate.py [--rows 10000000] [--format jsonl|csv] [--dir DIR]

Wall time depends on what else the machine runs; CPU time is the steadier figure. Writes the
history once (into DIR, a temporary directory by default; an existing file of the
same size and format is reused), then simulates it under five models in a child process, so
the peak resident memory reported is the simulation's alone. Rows interleave 64 concurrent
conversations of 1 to 12 actions over 90 days, with two tags and a resolved flag.
"""

from __future__ import annotations

import argparse
import importlib.util
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
from flexcredits_sdk.planning import (
    Allotment,
    CreditPlan,
    PerConversation,
    PerResolution,
    PerTicket,
    Tier,
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


def generate(path: Path, rows: int, fmt: str, seed: int = 6) -> None:
    """Write `rows` action rows to `path` as JSONL or CSV."""
    rng = random.Random(seed)
    step = 90 * 86_400 / rows
    active: list[list[object]] = []
    next_id = 0
    with path.open("w", encoding="utf-8") as out:
        if fmt == "csv":
            out.write("conversation_id,action,action_type,timestamp,environment,tags,resolved\n")
        for i in range(rows):
            while len(active) < 64:
                next_id += 1
                team = ("support", "sales", "billing")[next_id % 3]
                env = "sandbox" if next_id % 10 == 0 else "production"
                active.append([f"c{next_id}", rng.randint(1, 12), team, env])
            k = rng.randrange(64)
            conv = active[k]
            conv[1] = int(conv[1]) - 1  # type: ignore[call-overload]
            done = conv[1] == 0
            if done:
                active[k] = active[-1]
                active.pop()
            action, kind = _ACTIONS[i % 4]
            stamp = _stamp(_START + int(i * step))
            resolved = done and rng.random() < 0.6
            if fmt == "csv":
                out.write(
                    f"{conv[0]},{action},{kind},{stamp},{conv[3]},"
                    f"team={conv[2]};region=eu,{'true' if resolved else 'false'}\n"
                )
            else:
                out.write(
                    json.dumps(
                        {
                            "conversation_id": conv[0],
                            "action": action,
                            "action_type": kind,
                            "timestamp": stamp,
                            "environment": conv[3],
                            "tags": {"team": conv[2], "region": "eu"},
                            "resolved": resolved,
                        }
                    )
                    + "\n"
                )


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


def run(path: Path) -> None:
    """Simulate `path` under five models; print the time, the peak RSS and the bills."""
    start, cpu_start = time.perf_counter(), time.process_time()
    result = simulate(path, _models())
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"{result.rows:,} rows, {result.conversations:,} conversations: {elapsed:.1f} s wall, "
        f"{cpu:.1f} s CPU ({cpu / result.rows * 1e6:.2f} us/row), peak RSS {peak_mib:.0f} MiB, "
        f"peak open conversations {result.peak_open:,}"
    )
    parser = "orjson" if importlib.util.find_spec("orjson") else "json (the standard library)"
    print(f"  JSON decoded with {parser}")
    for model in result.models:
        print(f"  {model.name:18} ${model.total:,.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--format", choices=("jsonl", "csv"), default="jsonl")
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--run", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run is not None:
        run(args.run)
        return
    path = args.dir / f"flexcredits-history-{args.rows}.{args.format}"
    if not path.exists():
        start = time.perf_counter()
        generate(path, args.rows, args.format)
        size = path.stat().st_size / 2**20
        print(f"wrote {path} ({size:,.0f} MiB) in {time.perf_counter() - start:.1f} s")
    env = dict(os.environ)
    subprocess.run([sys.executable, __file__, "--run", str(path)], check=True, env=env)


if __name__ == "__main__":
    main()
