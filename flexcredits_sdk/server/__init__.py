"""The reference wallet service: the Digital Wallet that many agent processes share.

Install with ``pip install 'flexcredits-sdk[server]'`` and run ``flexcredits wallet serve``.
`create_app` returns the ASGI application; `verify_signature` checks a webhook's signature on
the receiving side. The names are imported on first use, so the ``flexcredits`` command works
without the extra's dependencies until a server command is run.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._app import create_app
    from ._config import ServerSettings
    from ._database import WalletStore
    from ._webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign, verify_signature

__all__ = [
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "ServerSettings",
    "WalletStore",
    "create_app",
    "sign",
    "verify_signature",
]

_WHERE = {
    "SIGNATURE_HEADER": "_webhooks",
    "TIMESTAMP_HEADER": "_webhooks",
    "ServerSettings": "_config",
    "WalletStore": "_database",
    "create_app": "_app",
    "sign": "_webhooks",
    "verify_signature": "_webhooks",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
