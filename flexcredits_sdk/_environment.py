"""The environment variables the SDK reads, each named once.

An argument always wins over its environment variable, and the variable over the default.
The wallet service's own variables are in `flexcredits_sdk.server`.
"""

from __future__ import annotations

__all__ = [
    "ALLOW_HTTP_VARIABLE",
    "API_KEY_VARIABLE",
    "ENVIRONMENT_VARIABLE",
    "OUTBOX_DIR_VARIABLE",
    "URL_VARIABLE",
]

#: A meter's environment (``production`` when unset), e.g. ``sandbox``.
ENVIRONMENT_VARIABLE = "FLEXCREDITS_ENVIRONMENT"
#: The wallet service's URL, for ``HttpWallet()`` and every meter made without a wallet.
URL_VARIABLE = "FLEXCREDITS_URL"
#: The API key sent as ``Authorization: Bearer <key>``.
API_KEY_VARIABLE = "FLEXCREDITS_API_KEY"
#: Where outboxes live; a per-user cache directory by default.
OUTBOX_DIR_VARIABLE = "FLEXCREDITS_OUTBOX_DIR"
#: ``1`` lets ``HttpWallet`` use plain ``http://`` to a host that is not loopback (an internal
#: service name such as ``http://wallet:8080``); a warning is logged.
ALLOW_HTTP_VARIABLE = "FLEXCREDITS_ALLOW_HTTP"
