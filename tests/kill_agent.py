"""An agent process that meters until it is killed.

    python tests/kill_agent.py URL API_KEY OUTBOX_DIR DURABILITY LOG

After each metered action it appends ``<record id> <monotonic seconds>`` to LOG with one
``os.write``: what the agent was told was recorded, in a form that survives SIGKILL.
"""

from __future__ import annotations

import os
import sys
import time

from flexcredits_sdk import Meter
from flexcredits_sdk.wallets import HttpWallet


def main(url: str, key: str, outbox: str, durability: str, log: str) -> None:
    wallet = HttpWallet(url, key, outbox_dir=outbox, durability=durability, claim_ttl=1.0)
    meter = Meter(wallet=wallet)
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    while True:
        for _ in range(50):
            with meter.action("answer", tags={"agent": "killed"}) as act:
                pass
            assert act.record is not None
            os.write(fd, f"{act.record.id} {time.monotonic():.6f}\n".encode())
        time.sleep(0.005)


if __name__ == "__main__":
    main(*sys.argv[1:6])
