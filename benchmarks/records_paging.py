"""Paging through a million records on the wallet service: its memory stays flat, in one run.

    python benchmarks/records_paging.py [--records N] [--page P]

Starts the wallet service on SQLite in a temporary directory, books N records (1,000,000 by
default) in batches of 5,000, then reads them all back with `HttpWallet.records()` in pages of P
(10,000 by default, the most a page may hold) while sampling the server's resident memory
(RSS) after every page. Prints the server's RSS before the listing, its peak during it, and
the records read per second.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

import flexcredits_sdk as fc
from flexcredits_sdk._records import UsageRecord, new_id

_MIB = 1 << 20
_START_NS = 1_780_000_000 * 10**9


def rss_of(pid: int) -> int:
    """The resident memory of process `pid` (Linux)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--page", type=int, default=10_000)
    args = parser.parse_args(argv)
    command = [sys.executable, "-c", "from flexcredits_sdk.cli import main; main()"]
    with tempfile.TemporaryDirectory() as directory:
        db = str(Path(directory) / "wallet.db")
        env = {**os.environ, "FLEXCREDITS_ADMIN_KEY": "bench-admin-key-0123456789abcdef"}
        created = subprocess.run(
            [*command, "wallet", "create-tenant", "bench", "--db", db],
            capture_output=True,
            text=True,
            check=True,
            env=env,
        )
        key = created.stdout.strip().splitlines()[-1]
        port = _free_port()
        server = subprocess.Popen(
            [
                *command,
                "wallet",
                "serve",
                "--db",
                db,
                "--port",
                str(port),
                "--log-level",
                "WARNING",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            with httpx.Client(base_url=url, timeout=120) as client:
                for _ in range(200):
                    try:
                        if client.get("/readyz").status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    time.sleep(0.1)
                client.headers["Authorization"] = f"Bearer {key}"
                started = time.perf_counter()
                for first in range(0, args.records, 5_000):
                    batch = [
                        UsageRecord(
                            new_id(),
                            "answer",
                            "standard",
                            1,
                            20,
                            "production",
                            {"department": ("hr", "it", "sales")[i % 3]},
                            f"c-{i // 7}",
                            _START_NS + i * 1_000_000,
                            1_000,
                        ).to_dict()
                        for i in range(first, min(first + 5_000, args.records))
                    ]
                    answer = client.post("/v1/records", json={"records": batch})
                    answer.raise_for_status()
                booked_s = time.perf_counter() - started
            print(f"{args.records:,} records booked through POST /v1/records in {booked_s:.1f} s")

            wallet = fc.HttpWallet(url, key, outbox_dir=Path(directory) / "outbox")
            before = peak = rss_of(server.pid)
            read = 0
            started = time.perf_counter()
            for read, _record in enumerate(wallet.records(page_size=args.page), 1):
                if read % args.page == 0:
                    peak = max(peak, rss_of(server.pid))
            elapsed = time.perf_counter() - started
            peak = max(peak, rss_of(server.pid))
            wallet.shutdown()
            print(
                f"read {read:,} records back in pages of {args.page:,} in {elapsed:.1f} s "
                f"({read / elapsed:,.0f} records/s)"
            )
            print(
                f"server RSS before the listing {before / _MIB:.0f} MiB, peak during it "
                f"{peak / _MIB:.0f} MiB (+{(peak - before) / _MIB:.1f} MiB)"
            )
            print("target: the server's memory stays flat (it grows by a few pages, not with N)")
        finally:
            server.terminate()
            server.wait(30)


if __name__ == "__main__":
    main()
