"""The first hour with the core: the traps a new user falls into, each in a real process where
the user would meet it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from wallet_stub import StubServer

import flexcredits_sdk as fc


def _python(
    script: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run `script` in a fresh interpreter, with `env` over a copy of this one's environment
    (the SDK's own variables removed first)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("FLEXCREDITS_")}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# --- 1. a bad FLEXCREDITS_ENVIRONMENT never breaks the import ---------------------------------


def test_a_bad_environment_variable_fails_at_first_use_not_at_import() -> None:
    done = _python(
        """
        import flexcredits_sdk as fc
        print("imported")
        try:
            @fc.metered_action
            def act() -> None: ...
        except fc.UnknownEnvironment as exc:
            print("first use:", exc)
        """,
        {"FLEXCREDITS_ENVIRONMENT": "staging"},
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "imported"
    assert lines[1].startswith("first use: FLEXCREDITS_ENVIRONMENT='staging': ")
    assert "['production', 'sandbox']" in lines[1]


def test_configure_settles_a_bad_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEXCREDITS_ENVIRONMENT", "staging")
    meter = fc._meter.default_meter()  # what the import makes
    with pytest.raises(fc.UnknownEnvironment) as info:
        meter.action("x")
    assert (info.value.field, info.value.value) == ("FLEXCREDITS_ENVIRONMENT", "staging")
    meter.configure(rate_card=fc.RateCard(action_types={"standard": {"staging": 3}}))
    assert meter.environment == "staging"
    meter.action("x")
    other = fc._meter.default_meter()
    other.configure(environment="sandbox")
    assert other.action("x") is not None


# --- 3. the environment's wallet is built off the caller's thread, for every meter ------------

_BUILDER = """
    import threading, time
    import flexcredits_sdk as fc
    from flexcredits_sdk.wallets import _http

    built_on = []
    init = _http.HttpWallet.__init__

    def spy(self, *args, **kwargs):
        built_on.append(threading.current_thread().name)
        init(self, *args, **kwargs)

    _http.HttpWallet.__init__ = spy
"""


def test_the_environment_wallet_is_built_off_the_callers_thread(
    server: StubServer, tmp_path: Path
) -> None:
    done = _python(
        _BUILDER
        + """
    @fc.metered_action
    def act() -> int:
        return 1

    start = time.perf_counter()
    act()
    first = time.perf_counter() - start
    assert fc.flush(timeout=10)
    print(built_on, fc.get_meter().stats().sent, f"{first * 1000:.1f} ms")
    assert threading.main_thread().name not in built_on, built_on
    """,
        {
            "FLEXCREDITS_URL": server.url,
            "FLEXCREDITS_API_KEY": "test-key",
            "FLEXCREDITS_OUTBOX_DIR": str(tmp_path),
        },
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.split("]")[1].split()[0] == "1"  # the record was delivered
    assert server.stub.booked == 1


def test_every_meter_reads_every_variable(
    monkeypatch: pytest.MonkeyPatch, server: StubServer, tmp_path: Path
) -> None:
    done = _python(
        """
        import flexcredits_sdk as fc
        meter = fc.Meter()
        print(meter.environment, type(meter.wallet).__name__)
        meter.metered_action(lambda: 1)()
        assert meter.flush(timeout=10)
        print(meter.wallet.balance().used)
        """,
        {
            "FLEXCREDITS_URL": server.url,
            "FLEXCREDITS_API_KEY": "test-key",
            "FLEXCREDITS_ENVIRONMENT": "sandbox",
            "FLEXCREDITS_OUTBOX_DIR": str(tmp_path),
        },
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["sandbox", "EnvWallet", "16"]


def test_under_pytest_a_meter_never_builds_a_network_wallet(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FLEXCREDITS_URL", "http://127.0.0.1:9")
    monkeypatch.setattr(fc._default, "_ENV_WALLET_ALLOWED", False)
    meter = fc.Meter()
    meter.metered_action(lambda: 1)()
    assert isinstance(meter.wallet.resolve(), fc.OfflineWallet)  # type: ignore[attr-defined]


# --- 4. records kept only in memory are said to be ---------------------------------------------


def test_a_meter_without_a_wallet_says_where_records_go_and_what_is_lost() -> None:
    done = _python(
        """
        import flexcredits_sdk as fc
        print("before")
        for _ in range(3):
            fc.metered_action(lambda: 1)()
        print("after")
        """
    )
    assert done.returncode == 0, done.stderr
    said = done.stderr.splitlines()
    assert len(said) == 2, said
    assert "kept in memory only" in said[0]
    assert "FLEXCREDITS_URL" in said[0]
    assert "3 records (60 credits) were kept only in memory" in said[1]


def test_a_configured_wallet_is_quiet() -> None:
    done = _python(
        """
        import flexcredits_sdk as fc
        wallet = fc.OfflineWallet()
        fc.configure(wallet=wallet)
        fc.metered_action(lambda: 1)()
        meter = fc.Meter(wallet=fc.OfflineWallet())
        meter.metered_action(lambda: 1)()
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""


# --- 6. only functions and methods are decorated ------------------------------------------------


class _Tool:
    """Like an agent framework's tool object: callable, wrapping a function."""

    def __init__(self) -> None:
        self.func = lambda: 1

    def __call__(self) -> int:
        return 1

    def invoke(self, _: Any) -> int:
        return 1


class _Callable:
    def __call__(self) -> int:
        return 1


@pytest.mark.parametrize(
    ("given", "says"),
    [
        (int, "is a class"),
        (_Tool(), "decorate the function under the framework's tool decorator"),
        (_Callable(), "decorate its class's __call__ method"),
        (42, "must be a function or a method"),
    ],
)
def test_only_functions_and_methods_are_decorated(given: Any, says: str) -> None:
    for decorate in (fc.metered_action, fc.metered_action(name="tool"), fc.Meter().metered_action):
        with pytest.raises(fc.ConfigurationError, match=says) as info:
            decorate(given)
        assert info.value.field == "func"


# --- 2. a wrong key or a service that is down fails at once, and exit does not wait -----------

_ASK_BALANCE = """
    import time
    import flexcredits_sdk as fc

    start = time.monotonic()
    wallet = fc.HttpWallet({url!r}, "wrong-key")
    fc.configure(wallet=wallet)
    fc.metered_action(lambda: 1)()
    try:
        wallet.balance()
    except fc.WalletError as exc:
        print(f"{{time.monotonic() - start:.2f}}", exc)
"""


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.mark.parametrize("where", ["wrong key", "nothing listening"])
def test_a_refused_key_or_connection_fails_at_once(
    where: str, server: StubServer, tmp_path: Path
) -> None:
    import time

    url = server.url if where == "wrong key" else f"http://127.0.0.1:{_free_port()}"
    start = time.monotonic()
    done = _python(_ASK_BALANCE.format(url=url), {"FLEXCREDITS_OUTBOX_DIR": str(tmp_path)})
    took = time.monotonic() - start
    assert done.returncode == 0, done.stderr
    asked, _, error = done.stdout.strip().partition(" ")
    assert float(asked) < 3.0, done.stdout  # was 10 s: the question waited for delivery
    assert took < 5.0, (took, done.stderr)  # was 15 s or more: the exit hook waited 5 s more
    if where == "wrong key":
        assert error == "wallet service answered 401: missing or wrong API key"
        assert "delivery paused: wallet service at" in done.stderr
        assert "refused the API key (401 Unauthorized)" in done.stderr
        assert "retrying" not in done.stderr
    else:
        assert "Connection refused" in error
        assert "ConnectError: [Errno 111] Connection refused" in done.stderr
    assert "stopped without waiting" in done.stderr
    assert done.stderr.count("stopped without waiting") == 1


def test_exit_still_waits_for_records_really_being_delivered(
    server: StubServer, tmp_path: Path
) -> None:
    done = _python(
        f"""
        import flexcredits_sdk as fc
        fc.configure(wallet=fc.HttpWallet({server.url!r}, "test-key", linger=60))
        for _ in range(5):
            fc.metered_action(lambda: 1)()
        """,
        {"FLEXCREDITS_OUTBOX_DIR": str(tmp_path)},
    )
    assert done.returncode == 0, done.stderr
    assert server.stub.booked == 5
