"""An agent process for the end-to-end tests: meters actions into a wallet service.

    python tests/server_agent.py URL API_KEY OUTBOX_DIR ACTIONS ENVIRONMENT NAME [TIMEOUT]

Runs ACTIONS metered actions through the SDK's `HttpWallet` exporter, shuts it down (which
delivers everything), and prints what it metered as JSON: records, credits and exporter stats.
"""

from __future__ import annotations

import json
import sys

from flexcredits_sdk import Meter, RateCard
from flexcredits_sdk.wallets import HttpWallet


def main(
    url: str, key: str, outbox: str, actions: int, environment: str, name: str, timeout: float
) -> None:
    wallet = HttpWallet(
        url,
        key,
        outbox_dir=outbox,
        max_batch_records=5_000,
        max_batch_bytes=4 * 1024 * 1024,
        linger=0.05,
        timeout=timeout,
        max_backoff=0.2,
        max_queue=200_000,
    )
    meter = Meter(rate_card=RateCard.agentforce(), environment=environment, wallet=wallet)
    credits = 0
    for i in range(actions):
        with meter.action("answer", tags={"agent": name, "kind": f"k{i % 3}"}) as act:
            pass
        assert act.record is not None
        credits += act.record.credits
    delivered = meter.shutdown(timeout=120)
    stats = meter.stats()
    print(
        json.dumps(
            {
                "records": actions,
                "credits": str(credits),
                "delivered": delivered,
                "sent": stats.sent,
                "duplicates": stats.duplicates,
                "rejected": stats.rejected,
                "dropped": stats.dropped,
                "in_outbox": stats.in_outbox,
            }
        )
    )


if __name__ == "__main__":
    url, key, outbox, actions, environment, name = sys.argv[1:7]
    timeout = float(sys.argv[7]) if len(sys.argv) > 7 else 30.0
    main(url, key, outbox, int(actions), environment, name, timeout)
