"""A fresh exporting sink for the overhead benchmark, pointed at a stub that accepts everything.

The stub (``tests/wallet_stub.py --accept-all``) runs in its own process, as a wallet service
would, so its work is not counted against the metered calls.
"""

from __future__ import annotations

import atexit
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from flexcredits_sdk.wallets import HttpWallet

_ROOT = Path(__file__).resolve().parent.parent
_stub: subprocess.Popen[str] | None = None
_url = ""
_dirs: list[tempfile.TemporaryDirectory[str]] = []


def _stop() -> None:
    if _stub is not None:
        _stub.terminate()
        _stub.wait()


def stub_url() -> str:
    """Return the URL of the accept-all stub, starting it on first use."""
    global _stub, _url
    if _stub is None:
        _stub = subprocess.Popen(
            [sys.executable, str(_ROOT / "tests" / "wallet_stub.py"), "--accept-all"],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(_ROOT)},
        )
        assert _stub.stdout is not None
        _url = _stub.stdout.readline().strip()
        atexit.register(_stop)
    return _url


def exporter_sink() -> HttpWallet:
    """Return an `HttpWallet` with a durable outbox in a fresh temporary directory."""
    outbox = tempfile.TemporaryDirectory(ignore_cleanup_errors=True)
    _dirs.append(outbox)
    return HttpWallet(stub_url(), "test-key", outbox_dir=outbox.name)
