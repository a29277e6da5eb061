"""examples/wallet_service.py runs end to end and prints what the service booked."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "wallet_service.py"


def test_the_wallet_service_example_runs() -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLE)], capture_output=True, text=True, check=True, timeout=120
    )
    assert result.stdout.splitlines() == [
        "balance: 99,944 credits ($499.72)",
        "  production 2 actions  40 credits",
        "  sandbox    1 actions  16 credits",
    ]


SPEND_CONTROL = EXAMPLE.parent / "spend_control.py"


def test_the_spend_control_example_refuses_before_the_body_runs() -> None:
    result = subprocess.run(
        [sys.executable, str(SPEND_CONTROL)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert result.stdout.splitlines() == [
        "refused before it ran: BudgetExceeded",
        "refused before it ran: InsufficientCredits",
        "ran: 3 service, 2 sales",
        "balance: 0 credits, held 0",
    ]
