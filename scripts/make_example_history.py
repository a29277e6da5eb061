"""Write the long example history and its daily credits (deterministic: seeded).

    python scripts/make_example_history.py

Writes ``examples/history-120d.csv``: 120 days of support conversations (2026-01-05 to
2026-05-04) with a weekday/weekend pattern, 1.5% growth a week, two public holidays (Good
Friday and Easter Monday, 2026-04-03 and 2026-04-06) and day-to-day noise. Each row is one
action of a conversation, ``units`` counting its repeats, so the file stays small. Writes
``examples/daily.csv`` too: the same history's credits per day under the Agentforce preset,
the other input ``flexcredits forecast`` takes.
"""

from __future__ import annotations

import csv
import datetime as dt
import random
from pathlib import Path

from flexcredits_sdk import planning

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
START = dt.date(2026, 1, 5)  # a Monday
DAYS = 120
SEED = 2026
#: Conversations on a day: a weekday base, shaped Monday to Sunday, slowed on holidays.
BASE = 8
SHAPE = (1.25, 1.2, 1.1, 1.0, 0.95, 0.35, 0.25)
GROWTH = 1.015  # a week
HOLIDAYS = {dt.date(2026, 4, 3): 0.2, dt.date(2026, 4, 6): 0.2}
ACTIONS = (
    ("lookup_order", "standard"),
    ("summarize_case", "standard"),
    ("get_time_slots", "standard"),
    ("refund", "custom"),
    ("escalate", "custom"),
)
TEAMS = ("support", "billing", "sales")


def conversations(rng: random.Random) -> list[list[str]]:
    """Return the history's CSV rows (without the header), in time order."""
    rows: list[tuple[dt.datetime, list[str]]] = []
    number = 0
    for offset in range(DAYS):
        day = START + dt.timedelta(days=offset)
        mean = BASE * SHAPE[day.weekday()] * GROWTH ** (offset / 7) * HOLIDAYS.get(day, 1.0)
        count = max(0, round(rng.gauss(mean, mean * 0.15)))
        for _ in range(count):
            number += 1
            team = rng.choice(TEAMS)
            at = dt.datetime.combine(day, dt.time(8), dt.UTC)
            at += dt.timedelta(seconds=rng.randrange(10 * 3600))
            environment = "sandbox" if rng.random() < 0.05 else "production"
            steps = rng.sample(ACTIONS, rng.choice((1, 1, 2, 2, 3)))
            resolved = rng.random() < 0.6
            for index, (action, action_type) in enumerate(steps):
                last = index == len(steps) - 1
                rows.append(
                    (
                        at,
                        [
                            f"c-{number:04d}",
                            action,
                            action_type,
                            at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                            environment,
                            f"team={team}",
                            "true" if resolved and last else "false",
                            str(rng.choice((1, 1, 1, 2, 3))),
                        ],
                    )
                )
                at += dt.timedelta(seconds=40)
    rows.sort(key=lambda pair: pair[0])
    return [row for _, row in rows]


def main() -> None:
    """Write both files."""
    history = EXAMPLES / "history-120d.csv"
    with history.open("w", encoding="utf-8", newline="") as stream:
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(planning.COLUMNS)
        writer.writerows(conversations(random.Random(SEED)))
    daily = planning.daily_from_history(history, "agentforce")
    with (EXAMPLES / "daily.csv").open("w", encoding="utf-8", newline="") as stream:
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(("date", "credits"))
        for offset in range(DAYS):
            day = START + dt.timedelta(days=offset)
            writer.writerow((day.isoformat(), daily.get(day, 0)))


if __name__ == "__main__":
    main()
