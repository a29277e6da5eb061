"""An agent process for the spend-control tests: threads that meter actions under leases.

    python tests/lease_agent.py URL API_KEY OUTBOX_DIR CONFIG_JSON

CONFIG_JSON: ``threads``; ``tags`` (the actions' tags); ``actions`` (per thread; ``null``:
until `stop_file` exists); ``stop_file``; ``lease`` and ``lease_*`` settings; ``hold``: after
the actions, print ``{"ready": ...}`` and wait to be killed instead of shutting down.

Each action's body counts itself, so the output says how many bodies ran and how many actions
were refused (before their body) as JSON: ``bodies``, ``refused``, ``refusals`` (a few
messages), ``delivered``, ``leases`` (the wallet's lease stats).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

from flexcredits_sdk import ActionRefused, Meter, RateCard
from flexcredits_sdk.wallets import HttpWallet


def main(url: str, key: str, outbox: str, config: dict[str, Any]) -> None:
    settings = {k: v for k, v in config.items() if k.startswith("lease")}
    wallet = HttpWallet(url, key, outbox_dir=outbox, linger=0.02, **settings)
    meter = Meter(rate_card=RateCard.agentforce(), wallet=wallet)
    lock = threading.Lock()
    counts = {"bodies": 0, "refused": 0}
    messages: list[str] = []
    stop_file = Path(config["stop_file"]) if config.get("stop_file") else None
    actions = config.get("actions")

    @meter.metered_action(name="answer", tags=config.get("tags") or {})
    def answer() -> None:
        with lock:
            counts["bodies"] += 1

    def work() -> None:
        done = 0
        while actions is None or done < actions:
            if stop_file is not None and stop_file.exists():
                return
            try:
                answer()
                done += 1
            except ActionRefused as exc:
                with lock:
                    counts["refused"] += 1
                    if len(messages) < 3:
                        messages.append(str(exc))
                if actions is not None:
                    done += 1
                time.sleep(0.02)

    threads = [threading.Thread(target=work) for _ in range(config["threads"])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if config.get("hold"):
        deadline = time.monotonic() + 60
        while wallet.stats()["sent"] < counts["bodies"] and time.monotonic() < deadline:
            time.sleep(0.02)
        print(json.dumps({"ready": counts["bodies"], "leases": wallet.leases()}), flush=True)
        time.sleep(600)  # until SIGKILL
    delivered = meter.shutdown(timeout=60)
    print(
        json.dumps(
            {
                **counts,
                "refusals": messages,
                "delivered": delivered,
                "leases": wallet.stats()["leases"],
            },
            default=str,
        ),
        flush=True,
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4]))
