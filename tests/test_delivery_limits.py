"""Delivery through a body-size limit smaller than the SDK's batches (a reverse proxy's 1 MiB,
here the wallet service's own limit set to its minimum): batches are split until accepted."""

from __future__ import annotations

from pathlib import Path

from server_fixtures import running_server

import flexcredits_sdk as fc
from flexcredits_sdk.wallets import HttpWallet


def test_a_413_splits_the_batch_until_every_record_is_booked(tmp_path: Path) -> None:
    env = {"FLEXCREDITS_WALLET_MAX_BODY": "1024"}  # two or three records per request
    with running_server(str(tmp_path / "wallet.db"), env=env) as server:
        key = server.tenant("acme")
        server.grant("acme", 1_000_000)
        wallet = HttpWallet(server.url, key, outbox_dir=tmp_path / "outbox", initial_backoff=0.01)
        meter = fc.Meter(wallet=wallet)
        try:
            for i in range(300):
                with meter.action("answer", tags={"agent": f"agent-{i % 3}"}):
                    pass
            big = {f"key-{n:02d}": "v" * 60 for n in range(20)}  # over 1,024 bytes alone
            with meter.action("answer", tags=big) as act:
                act.set_id("the-big-one")
            assert wallet.flush(timeout=30)
            stats = wallet.stats()
            letters = wallet.dead_letters()
        finally:
            wallet.shutdown(timeout=5)
        with server.client(key) as client:
            rows = client.get("/v1/usage", params={"group_by": "agent"}).json()["rows"]
    assert sum(row["records"] for row in rows) == 300
    assert (stats["sent"], stats["rejected"], stats["queued"], stats["in_outbox"]) == (300, 1, 0, 0)
    assert [letter.id for letter in letters] == ["the-big-one"]
    assert "too large to send even alone" in letters[0].reason
    assert "413" in letters[0].reason
