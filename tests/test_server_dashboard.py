"""The dashboard page, rendered by headless Chromium (Debian's ``chromium``, via Playwright)."""

from __future__ import annotations

import os
import shutil
import time
from decimal import Decimal
from pathlib import Path

import pytest
from server_fixtures import ServerProcess, running_server

from flexcredits_sdk._models import UsageRow
from flexcredits_sdk._records import UsageRecord, new_id
from flexcredits_sdk.server._dashboard import stacked_bars

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
#: Where the screenshot goes; the documentation's copy is made with FLEXCREDITS_SCREENSHOT set.
SCREENSHOT_VARIABLE = "FLEXCREDITS_SCREENSHOT"
HOUR = 3_600 * 10**9


def populate(server: ServerProcess) -> str:
    key = server.tenant("acme")
    server.grant("acme", 100_000, source="purchase")
    with server.client(key) as client:
        client.post("/v1/watches", json={"percent": "80"})
        # A monthly budget counts this month only, and the records below go back 6 days:
        # today's support records alone (64 of them, 1,216 credits) go past it on any date.
        client.post("/v1/budgets", json={"credits": 500, "tags": {"team": "support"}})
        now = time.time_ns()
        start = now - now % (24 * HOUR) - 6 * 24 * HOUR
        records = []
        for day in range(7):
            for i in range(40 + 25 * day):
                team = ("support", "sales", "billing")[i % 3]
                sandbox = i % 4 == 0
                records.append(
                    UsageRecord(
                        new_id(),
                        "answer",
                        "standard",
                        1,
                        16 if sandbox else 20,
                        "sandbox" if sandbox else "production",
                        {"team": team},
                        None,
                        min(now, start + day * 24 * HOUR + i * 60 * 10**9),
                        10**6,
                    ).to_dict()
                )
        assert client.post("/v1/records", json={"records": records}).status_code == 200
    return key


def test_the_dashboard_renders_in_headless_chromium(tmp_path: Path) -> None:
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; .ci/services.sh installs it")
        pytest.skip(
            "chromium is not installed: install it with `apt-get install chromium` "
            "(or run .ci/services.sh as root, which installs what the tests need)"
        )
    from playwright.sync_api import sync_playwright

    with running_server(str(tmp_path / "wallet.db")) as server:
        key = populate(server)
        shot = Path(os.environ.get(SCREENSHOT_VARIABLE) or tmp_path / "dashboard.png")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(
                    viewport={"width": 1160, "height": 900},
                    http_credentials={"username": "acme", "password": key},
                )
                external: list[str] = []
                page.on(
                    "request",
                    lambda r: external.append(r.url) if server.url not in r.url else None,
                )
                response = page.goto(f"{server.url}/dashboard?tag=team")
                assert response is not None
                assert response.status == 200
                assert page.title() == "acme · flexcredits wallet"
                assert "Digital Wallet" in page.inner_text("header")
                assert page.locator("svg rect").count() >= 14  # 7 days x 2 environments
                assert "support" in page.inner_text("main")
                assert "budget" in page.inner_text("main")  # the budget alert fired
                assert external == []  # no CDN, no font, nothing but the page itself
                page.screenshot(path=str(shot), full_page=True)
            finally:
                browser.close()
    assert shot.stat().st_size > 10_000


def test_the_dashboard_needs_the_tenants_key(tmp_path: Path) -> None:
    with running_server(str(tmp_path / "wallet.db")) as server:
        populate(server)
        with server.client() as anon:
            response = anon.get("/dashboard")
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Basic")


def test_the_chart_escapes_names_and_stacks_each_bucket() -> None:
    rows = [
        UsageRow(
            key={"team": "<script>", "bucket": "2026-01-01"},
            actions=1,
            records=1,
            credits=30,
            usd=Decimal("0.15"),
        ),
        UsageRow(
            key={"team": "b", "bucket": "2026-01-01"},
            actions=1,
            records=1,
            credits=10,
            usd=Decimal("0.05"),
        ),
    ]
    svg = stacked_bars(rows, "team")
    assert "<script>" not in svg
    assert "&lt;script&gt;" in svg
    assert svg.count("<rect") == 2
    assert stacked_bars([], "team") == '<p class="empty">No usage in this period.</p>'
