"""What the example history would have cost under each pricing model.

    python examples/planning_simulate.py

Reads examples/history.jsonl (201 actions in 40 conversations), prices it under the presets and
under examples/pricing/team-plan.toml, and prints the report the `flexcredits simulate` command
prints.
"""

from __future__ import annotations

from pathlib import Path

from flexcredits_sdk import planning

HERE = Path(__file__).resolve().parent


def run() -> planning.SimulationResult:
    """Simulate the example history under five models and print the report."""
    result = planning.simulate(
        HERE / "history.jsonl",
        [
            "agentforce",
            "per-conversation",
            "per-resolution",
            "per-ticket",
            HERE / "pricing" / "team-plan.toml",
        ],
    )
    print(planning.render(result), end="")
    return result


if __name__ == "__main__":
    run()
