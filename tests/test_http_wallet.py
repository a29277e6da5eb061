"""HttpWallet and AsyncHttpWallet answer the same questions as OfflineWallet."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from wallet_stub import StubServer, StubWallet

import flexcredits_sdk as fc
from flexcredits_sdk import ConfigurationError, OfflineWallet, WalletError
from flexcredits_sdk.wallets import AsyncHttpWallet, HttpWallet, Sink, Wallet

UTC = _dt.UTC


@pytest.fixture
def wallet(server: StubServer, tmp_path: Path) -> Iterator[HttpWallet]:
    made = HttpWallet(server.url, "test-key", outbox_dir=tmp_path)
    yield made
    made.shutdown(timeout=5)


def _use(wallet: Any) -> None:
    meter = fc.Meter(wallet=wallet, tags={"team": "support"})

    @meter.metered_action(name="identify_customer")
    def identify_customer() -> str:
        return "c-1"

    @meter.metered_action(name="get_time_slots", tags={"team": "sales"}, units=2)
    def get_time_slots() -> list[str]:
        return []

    with fc.conversation("conv-7"):
        for _ in range(3):
            identify_customer()
    get_time_slots()


def test_it_is_a_wallet_and_a_sink(wallet: HttpWallet) -> None:
    assert isinstance(wallet, Wallet)
    assert isinstance(wallet, Sink)
    assert wallet.authorizes is True  # until the service's spend-control policy is known
    with pytest.raises(AttributeError):
        wallet.authorizes = False  # type: ignore[misc]
    assert wallet.authorize("x", 20, {}) is None  # this service has no spend control
    assert wallet.authorizes is False


def test_answers_match_the_offline_wallet(wallet: HttpWallet) -> None:
    offline = OfflineWallet()
    for each in (wallet, offline):
        each.grant(100_000, source="purchase")
        _use(each)
    assert wallet.balance().credits == offline.balance().credits == 100_000 - 100
    assert wallet.usage(["team"]) == offline.usage(["team"])
    assert wallet.usage(["action"], bucket="day") == offline.usage(["action"], bucket="day")
    assert [g.credits for g in wallet.grants()] == [g.credits for g in offline.grants()]
    assert len(list(wallet.records())) == 4
    assert {r.conversation_id for r in wallet.records(conversation_id="conv-7")} == {"conv-7"}
    assert [r.action for r in wallet.records(tags={"team": "sales"})] == ["get_time_slots"]
    assert len(list(wallet.records(action="identify_customer", limit=2))) == 2
    future = _dt.datetime.now(UTC) + _dt.timedelta(days=1)
    assert list(wallet.records(since=future)) == []
    assert wallet.usage(since=future) == []


def test_grants_carry_decimals_and_expiry(wallet: HttpWallet) -> None:
    expires = _dt.datetime(2100, 1, 1, tzinfo=UTC)
    info = wallet.grant(Decimal("10.5"), source="promotion", expires_at=expires, priority=0)
    assert (info.credits, info.source, info.expires_at, info.priority) == (
        Decimal("10.5"),
        "promotion",
        expires,
        0,
    )


def test_the_meter_reports_delivery(wallet: HttpWallet) -> None:
    meter = fc.Meter(wallet=wallet)
    meter.metered_action(lambda: 1)()
    assert meter.flush(timeout=10)
    stats = meter.stats()
    assert (stats.recorded, stats.sent, stats.queued, stats.in_outbox) == (1, 1, 0, 0)


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda w: w.usage("team"), "group_by"),
        (lambda w: w.usage(bucket="week"), "bucket"),
        (lambda w: w.usage(since=_dt.datetime(2026, 1, 1)), "since"),
        (lambda w: list(w.records(until=_dt.datetime(2026, 1, 1))), "until"),
        (lambda w: w.records(limit=-1), "limit"),
        (lambda w: w.records(cursor="not a cursor"), "cursor"),
        (lambda w: w.records(page_size=10_001), "page_size"),
        (lambda w: list(w.records(tags=["a"])), "tags"),
        (lambda w: w.grant(1.5), "credits"),
        (lambda w: w.grant(0), "credits"),
        (lambda w: w.grant(5, source=""), "source"),
        (lambda w: w.grant(5, priority="1"), "priority"),
        (lambda w: w.grant(5, expires_at=_dt.datetime(2100, 1, 1)), "expires_at"),
    ],
)
def test_bad_questions_name_the_field(wallet: HttpWallet, call: Any, field: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        call(wallet)
    assert info.value.field == field


def test_service_errors_are_wallet_errors(tmp_path: Path) -> None:
    with respx.mock() as router:
        router.get("https://wallet.test/v1/balance").respond(
            503, json={"error": {"code": "unavailable", "message": "maintenance"}}
        )
        router.get("https://wallet.test/v1/grants").respond(200, content=b"[]")
        router.get("https://wallet.test/v1/usage").mock(side_effect=httpx.ConnectError("no"))
        wallet = HttpWallet("https://wallet.test", "k", durability="memory", client=httpx.Client())
        with pytest.raises(WalletError, match="maintenance") as info:
            wallet.balance()
        assert (info.value.status_code, info.value.code) == (503, "unavailable")
        with pytest.raises(WalletError, match="malformed"):
            wallet.grants()
        with pytest.raises(WalletError, match="cannot reach") as unreachable:
            wallet.usage()
        assert str(unreachable.value).endswith(": ConnectError: no")  # the reason, not only a class
        wallet.shutdown(timeout=1)


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://wallet.example.com", True),
        ("https://wallet.example.com/base/", True),
        ("http://127.0.0.1:8080", True),
        ("http://localhost:8080", True),
        ("http://[::1]:8080", True),
        ("http://wallet.example.com", False),
        ("ftp://wallet.example.com", False),
        ("wallet.example.com", False),
        ("https://user:pw@wallet.example.com", False),
        ("", False),
        (42, False),
    ],
)
def test_https_is_required_except_for_loopback(url: Any, ok: bool) -> None:
    if ok:
        HttpWallet(url, "k", durability="memory").shutdown(timeout=0)
    else:
        with pytest.raises(ConfigurationError) as info:
            HttpWallet(url, "k", durability="memory")
        assert info.value.field == "url"


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("durability", "eventually"),
        ("overflow", "drop_oldest"),
        ("max_batch_records", 0),
        ("max_batch_records", 10_000),
        ("max_batch_bytes", -1),
        ("max_queue", 1.5),
        ("max_outbox", True),
        ("linger", 0),
        ("commit_interval", "fast"),
        ("timeout", -1),
        ("block_timeout", 0),
        ("max_backoff", 0),
        ("on_rejected", "print"),
        ("outbox_dir", 42),
        ("client", "httpx"),
        ("client", httpx.AsyncClient),  # a factory of the wrong client
        ("senders", 0),
        ("colour", "red"),
    ],
)
def test_bad_options_name_the_field(option: str, value: Any) -> None:
    with pytest.raises(ConfigurationError) as info:
        HttpWallet("http://127.0.0.1:1", **{option: value})
    assert info.value.field == option


def test_a_url_is_required(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigurationError, match="FLEXCREDITS_URL"):
        HttpWallet()


def test_url_and_key_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, server: StubServer, tmp_path: Path
) -> None:
    monkeypatch.setenv("FLEXCREDITS_URL", server.url)
    monkeypatch.setenv("FLEXCREDITS_API_KEY", "test-key")
    monkeypatch.setenv("FLEXCREDITS_OUTBOX_DIR", str(tmp_path))
    wallet = HttpWallet()
    try:
        assert wallet.url == server.url
        assert wallet.outbox_path is not None
        assert wallet.outbox_path.parent == tmp_path
        assert wallet.balance().used == 0  # the key from the environment is accepted
    finally:
        wallet.shutdown(timeout=5)


async def test_the_async_wallet_answers_without_blocking(
    server: StubServer, tmp_path: Path
) -> None:
    wallet = AsyncHttpWallet(server.url, "test-key", outbox_dir=tmp_path)
    try:
        await wallet.grant(1_000)
        _use(wallet)
        balance = await wallet.balance()
        assert balance.credits == 1_000 - 100
        assert [row.key for row in await wallet.usage(["team"])] == [
            {"team": "support"},
            {"team": "sales"},
        ]
        assert len(await wallet.records(action="get_time_slots").to_list()) == 1
        assert len(await wallet.grants()) == 1
    finally:
        assert await wallet.ashutdown(timeout=5)


async def test_the_async_wallet_accepts_an_async_client() -> None:
    stub = StubWallet(api_key=None)
    client = httpx.AsyncClient(transport=httpx.MockTransport(stub))
    wallet = AsyncHttpWallet("https://wallet.test", "k", client=client, durability="memory")
    assert (await wallet.balance()).credits == 0
    await wallet.ashutdown(timeout=1)
    await client.aclose()


def test_the_async_wallet_refuses_a_sync_client() -> None:
    with pytest.raises(ConfigurationError) as info:
        AsyncHttpWallet("http://127.0.0.1:1", client=httpx.Client())  # type: ignore[arg-type]
    assert info.value.field == "client"


def test_an_unknown_option_lists_the_options_and_the_closest() -> None:
    with pytest.raises(ConfigurationError) as info:
        HttpWallet("http://127.0.0.1:1", batch_size=10)
    message = str(info.value)
    assert message.startswith("batch_size=10: is not an option (did you mean ")
    assert "'max_batch_records'" in message
    assert "the options are allow_http, api_key, block_timeout, claim_ttl, client," in message


@pytest.mark.parametrize("url", ["https://wallet.example.com", "http://wallet:8080"])
def test_a_remote_service_needs_a_key(url: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        HttpWallet(url, durability="memory", allow_http=True)
    assert info.value.field == "api_key"
    assert "FLEXCREDITS_API_KEY" in str(info.value)


def test_a_loopback_service_may_run_without_a_key() -> None:
    for url in ("http://127.0.0.1:8080", "http://localhost:8080", "http://[::1]:8080"):
        HttpWallet(url, durability="memory").shutdown(timeout=0)


def test_plain_http_to_an_internal_host_needs_an_opt_in(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(ConfigurationError, match="allow_http=True or FLEXCREDITS_ALLOW_HTTP=1"):
        HttpWallet("http://wallet:8080", "k", durability="memory")
    with caplog.at_level("WARNING", logger="flexcredits_sdk"):
        HttpWallet("http://wallet:8080", "k", durability="memory", allow_http=True).shutdown(0)
        monkeypatch.setenv("FLEXCREDITS_ALLOW_HTTP", "1")
        HttpWallet("http://wallet.internal:8080", "k", durability="memory").shutdown(0)
    said = [r.getMessage() for r in caplog.records if "plain http" in r.getMessage()]
    assert len(said) == 2
    assert "plain http to wallet is allowed" in said[0]
    assert "unencrypted" in said[0]
    with pytest.raises(ConfigurationError) as info:
        HttpWallet("http://wallet:8080", "k", durability="memory", allow_http="yes")
    assert info.value.field == "allow_http"
