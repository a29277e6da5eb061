"""A wallet service that says no before an action runs: overdraft denied and a hard budget.

    python examples/spend_control.py

The service holds 100 credits for tenant ``acme``, denies overdraft, and limits the
``department=service`` actions to 60 credits a day with a hard budget. An agent pointed at it
with `HttpWallet` takes leases (blocks of credit held on the service) and runs its actions
against them in memory; the action the budget cannot pay for is refused before its body runs,
and so is the one the balance cannot pay for.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from flexcredits_sdk import BudgetExceeded, InsufficientCredits, Meter
from flexcredits_sdk.server import WalletStore
from flexcredits_sdk.wallets import HttpWallet


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until_ready(url: str, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError("the wallet service did not start")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        db = str(Path(tmp) / "wallet.db")
        # flexcredits wallet create-tenant acme --overdraft deny
        # flexcredits wallet grant acme 100
        # flexcredits wallet budget add acme 60 --tag department=service --period day --hard
        store = WalletStore(db)
        store.migrate()
        key = store.create_tenant("acme", overdraft="deny")
        acme = store.tenant("acme").id
        store.grant(acme, 100)
        store.add_budget(
            acme, 60, tags={"department": "service"}, period="day", hard=True, name="service"
        )
        store.close()

        port = free_port()
        url = f"http://127.0.0.1:{port}"
        command = [sys.executable, "-m", "flexcredits_sdk.server", "serve", "--db", db]
        server = subprocess.Popen(
            [*command, "--port", str(port), "--log-level", "WARNING"],
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_until_ready(url)
            wallet = HttpWallet(url, key, durability="memory")
            meter = Meter(wallet=wallet)
            ran: list[str] = []

            @meter.metered_action(tags={"department": "service"})
            def answer_question() -> None:
                ran.append("service")

            @meter.metered_action(tags={"department": "sales"})
            def qualify_lead() -> None:
                ran.append("sales")

            for action in (answer_question,) * 4 + (qualify_lead,) * 3:
                try:
                    action()
                except (BudgetExceeded, InsufficientCredits) as refused:
                    print(f"refused before it ran: {type(refused).__name__}")
            wallet.flush()  # delivers the records, then gives back what leases still hold
            balance = wallet.balance()
            print(f"ran: {ran.count('service')} service, {ran.count('sales')} sales")
            print(f"balance: {balance.credits} credits, held {balance.held}")
            wallet.shutdown()
        finally:
            server.terminate()
            server.wait(30)


if __name__ == "__main__":
    main()
