"""Signed alert webhooks: delivered by a real server to a real receiver, retried on failure."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from server_fixtures import ServerProcess, db_url, pg_cluster, running_server

from flexcredits_sdk._exceptions import ConfigurationError
from flexcredits_sdk._records import UsageRecord, new_id
from flexcredits_sdk.server import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign, verify_signature
from flexcredits_sdk.server._webhooks import check_destination

__all__ = ["db_url", "pg_cluster"]


class Receiver:
    """An HTTP endpoint on 127.0.0.1 that fails the first `failures` requests with 503."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.accepted = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((dict(self.headers), body))
                failing = len(receiver.requests) <= receiver.failures
                self.send_response(503 if failing else 204)
                self.end_headers()
                if not failing:
                    receiver.accepted.set()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(failures=2)
    yield r
    r.close()


#: The receivers here listen on loopback, which the service refuses unless told otherwise.
ALLOW_LOOPBACK = {"FLEXCREDITS_WEBHOOK_ALLOW_PRIVATE": "1"}


def spend(server: ServerProcess, key: str, credits: int) -> None:
    """Book `credits` (a multiple of 20, the default card's production price) as one record."""
    units, rest = divmod(credits, 20)
    assert units > 0, credits
    assert rest == 0, credits
    record = UsageRecord(
        new_id(), "answer", "standard", units, credits, "production", {}, None, 0, 1
    )
    with server.client(key) as client:
        record = record._replace(start_time_ns=time.time_ns())
        assert client.post("/v1/records", json={"records": [record.to_dict()]}).status_code == 200


def test_a_low_balance_alert_is_signed_and_retried(db_url: str, receiver: Receiver) -> None:
    with running_server(db_url, env=ALLOW_LOOPBACK) as server:
        key = server.tenant("acme")
        server.grant("acme", 1000)
        with server.client(key) as client:
            hook = client.put("/v1/webhook", json={"url": receiver.url}).json()
            assert hook["secret"].startswith("whsec_")
            client.post("/v1/watches", json={"credits": 500})
        spend(server, key, 600)
        assert receiver.accepted.wait(30)
    assert len(receiver.requests) == 3  # two 503s, then delivered
    bodies = {body for _, body in receiver.requests}
    assert len(bodies) == 1  # the same delivery each time
    headers, body = receiver.requests[-1]
    assert verify_signature(
        hook["secret"], body, headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER]
    )
    assert not verify_signature(
        "whsec_other", body, headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER]
    )
    event = json.loads(body)
    assert event["type"] == "alert"
    assert event["alert"]["kind"] == "low_balance"
    assert event["alert"]["value"] == 400


def test_a_tenant_without_a_webhook_still_lists_its_alerts(db_url: str) -> None:
    with running_server(db_url) as server:
        key = server.tenant("acme")
        with server.client(key) as client:
            server.grant("acme", 100)
            client.post("/v1/watches", json={"credits": 10})
            spend(server, key, 100)
            assert [a["kind"] for a in client.get("/v1/alerts").json()["alerts"]] == ["low_balance"]
            assert client.delete("/v1/webhook").status_code == 204
            bad = client.put("/v1/webhook", json={"url": "not a url"})
            assert bad.status_code == 422


def test_signatures_refuse_replays_and_tampering() -> None:
    body = b'{"type":"alert"}'
    now = 1_800_000_000
    signature = sign("whsec_k", now, body)
    assert verify_signature("whsec_k", body, str(now), signature, now_s=now + 299)
    assert not verify_signature("whsec_k", body, str(now), signature, now_s=now + 301)
    assert not verify_signature("whsec_k", body + b" ", str(now), signature, now_s=now)
    assert not verify_signature("whsec_k", body, str(now + 1), signature, now_s=now)
    assert not verify_signature("whsec_k", body, "yesterday", signature, now_s=now)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hooks",
        "http://127.8.9.10:8080/hooks",
        "http://localhost/hooks",
        "http://[::1]/hooks",
        "http://[::ffff:127.0.0.1]/hooks",
        "http://[::ffff:10.1.2.3]/hooks",
        "http://10.0.0.1/hooks",
        "http://172.16.5.4/hooks",
        "http://192.168.1.1/hooks",
        "http://169.254.169.254/latest/meta-data",
        "http://[fe80::1]/hooks",
        "http://[fd00::1]/hooks",
        "http://0.0.0.0/hooks",
        "http://[::]/hooks",
        "http://224.0.0.1/hooks",
        "http://[ff02::1]/hooks",
        "http://240.0.0.1/hooks",
        "http://100.64.0.1/hooks",
        "http://2130706433/hooks",  # 127.0.0.1 as one number
    ],
)
def test_non_public_destinations_are_refused(url: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        check_destination(url)
    assert info.value.field == "url"
    assert info.value.value == url
    assert "address" in info.value.reason


@pytest.mark.parametrize("url", ["http://93.184.215.14/hooks", "https://[2606:4700::1111]/"])
def test_public_addresses_are_allowed(url: str) -> None:
    check_destination(url)


def test_a_loopback_webhook_is_refused_unless_allowed(db_url: str, receiver: Receiver) -> None:
    with running_server(db_url) as server:
        key = server.tenant("acme")
        with server.client(key) as client:
            refused = client.put("/v1/webhook", json={"url": receiver.url})
            assert refused.status_code == 422, refused.text
            message = refused.json()["error"]["message"]
            assert message.startswith(f"url='{receiver.url}'")
            assert "127.0.0.1, a loopback address" in message
            for url in ("http://[::ffff:127.0.0.1]/h", "http://169.254.169.254/", "http://[::1]/"):
                assert client.put("/v1/webhook", json={"url": url}).status_code == 422, url
    with (
        running_server(db_url, env=ALLOW_LOOPBACK) as server,
        server.client(server.tenant("other")) as client,
    ):
        assert client.put("/v1/webhook", json={"url": receiver.url}).status_code == 200


def test_a_delivery_to_a_refused_address_is_a_failure_not_a_request(
    db_url: str, receiver: Receiver
) -> None:
    # Set while the service allowed loopback; delivered after it no longer does (as when a
    # host name's address changes between the two).
    with running_server(db_url, env=ALLOW_LOOPBACK) as server:
        key = server.tenant("acme")
        server.grant("acme", 1000)
        with server.client(key) as client:
            assert client.put("/v1/webhook", json={"url": receiver.url}).status_code == 200
            client.post("/v1/watches", json={"credits": 500})
    with running_server(db_url) as server:
        spend(server, key, 600)
        server.wait_for(
            lambda logs: any(
                e.get("event") == "webhook.attempt" and "loopback" in (e.get("error") or "")
                for e in logs
            )
        )
        with server.client(key) as client:
            assert [a["kind"] for a in client.get("/v1/alerts").json()["alerts"]] == ["low_balance"]
    assert receiver.requests == []
