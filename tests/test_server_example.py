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
