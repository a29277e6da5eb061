"""Run the wallet service on SQLite and meter an agent's actions into it over HTTP.

    python examples/wallet_service.py

The same steps as the shell commands in docs/server.md: create a tenant (its API key is shown
once), grant it a pack of credits, serve, point an `HttpWallet` at the service, meter, ask.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from flexcredits_sdk import Meter
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
        # flexcredits wallet create-tenant acme && flexcredits wallet grant acme 100000
        store = WalletStore(db)
        store.migrate()
        key = store.create_tenant("acme")
        store.grant(store.tenant("acme").id, 100_000, source="purchase")
        store.close()

        # flexcredits wallet serve --db wallet.db --port PORT
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
            production = Meter(environment="production", wallet=wallet)
            sandbox = Meter(environment="sandbox", wallet=wallet)
            for meter in (production, production, sandbox):
                with meter.action("answer_question", tags={"team": "support"}):
                    pass
            balance = wallet.balance()  # flushes what is pending first
            print(f"balance: {balance.credits:,} credits (${balance.usd:.2f})")
            for row in wallet.usage(["environment"]):
                env = row.key["environment"]
                print(f"  {env:<10} {row.actions} actions  {row.credits} credits")
            wallet.shutdown()
        finally:
            server.terminate()
            server.wait(30)


if __name__ == "__main__":
    main()
