"""Meter a few agent actions into the wallet service at FLEXCREDITS_URL.

    FLEXCREDITS_URL=https://wallet.example.com FLEXCREDITS_API_KEY=... python examples/delivery.py

Records are batched by a background exporter, kept in a durable outbox until the service
acknowledged them, and delivered exactly once.
"""

from __future__ import annotations

import flexcredits_sdk as fc
from flexcredits_sdk.wallets import HttpWallet


def main() -> None:
    wallet = HttpWallet()  # FLEXCREDITS_URL and FLEXCREDITS_API_KEY
    fc.configure(wallet=wallet)

    @fc.metered_action(name="identify_customer")
    def identify_customer(email: str) -> str:
        return "customer-" + email.split("@")[0]

    @fc.metered_action(name="get_cases")
    def get_cases(customer: str) -> list[str]:
        return [f"{customer}/case-1"]

    with fc.tags(team="support"):
        for email in ("ada@example.com", "alan@example.com"):
            get_cases(identify_customer(email))

    delivered = fc.flush(timeout=10)
    stats = fc.get_meter().stats()
    print(f"delivered: {delivered}, sent: {stats.sent}, duplicates: {stats.duplicates}")
    print(f"used: {wallet.balance().used} credits")
    for row in wallet.usage(["action"]):
        print(f"{row.key['action']}: {row.actions} actions, {row.credits} credits")
    fc.shutdown(timeout=5)


if __name__ == "__main__":
    main()
