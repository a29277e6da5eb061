"""Signed webhooks: alerts POSTed to a tenant's URL, retried with backoff until delivered.

Each alert that fires is stored with a pending delivery in the same transaction, so a delivery
survives a crash of the server. Every server process runs a `Deliverer` that claims due
deliveries (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so two processes never claim the same
one), POSTs them and records the outcome; a failed attempt is due again after an exponential
backoff, until `MAX_ATTEMPTS`.

A webhook goes only to public addresses: `check_destination` resolves the URL's host and refuses
it when any address is loopback, private, link-local, unspecified, multicast, reserved or
otherwise not global (an IPv4-mapped IPv6 address is judged as its IPv4 address). It runs when a
webhook is set and again before each delivery, since DNS can change; a delivery to a refused
address is not sent and counts as a failed attempt. The operator may allow such addresses
(``FLEXCREDITS_WEBHOOK_ALLOW_PRIVATE``), e.g. for a receiver on the same machine.

A request carries two headers. ``FlexCredits-Timestamp`` is the Unix time in seconds when it was
sent; ``FlexCredits-Signature`` is ``v1=`` and the hex HMAC-SHA256, keyed with the webhook's
secret, of the timestamp, a full stop and the raw body. A receiver recomputes it with
`verify_signature` and refuses old timestamps, so a captured request cannot be replayed.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import socket
import threading
import time
from collections.abc import Callable

import httpx
import sqlalchemy as sa

from .._exceptions import ConfigurationError
from .._models import Alert
from ._db import WRITE
from ._schema import deliveries, tenants

__all__ = [
    "MAX_ATTEMPTS",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "Deliverer",
    "alert_body",
    "check_destination",
    "sign",
    "verify_signature",
]

SIGNATURE_HEADER = "FlexCredits-Signature"
TIMESTAMP_HEADER = "FlexCredits-Timestamp"
#: Attempts before a delivery is given up (about 17 hours of backoff at the default base).
MAX_ATTEMPTS = 12
_LEASE_NS = 60 * 10**9
_MAX_BACKOFF_S = 6 * 3600

logger = logging.getLogger("flexcredits_sdk.server")


def _refusal(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Return what kind of non-public address `address` is, or ``None`` when it is public."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    kinds = (
        ("loopback", address.is_loopback),
        ("private", address.is_private),
        ("link-local", address.is_link_local),
        ("unspecified", address.is_unspecified),
        ("multicast", address.is_multicast),
        ("reserved", address.is_reserved),
        ("non-global", not address.is_global),
    )
    return next((kind for kind, found in kinds if found), None)


def check_destination(url: str, field: str = "url") -> None:
    """Check that every address the host of `url` resolves to is public.

    Raises:
        ConfigurationError: The host does not resolve, or resolves to a loopback, private,
            link-local, unspecified, multicast, reserved or other non-global address; the error
            names `field`, the URL and the address.
    """
    parsed = httpx.URL(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        found = socket.getaddrinfo(parsed.host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise ConfigurationError(field, url, f"the host does not resolve ({exc})") from None
    for *_, sockaddr in found:
        address = ipaddress.ip_address(str(sockaddr[0]).partition("%")[0])  # no IPv6 scope
        kind = _refusal(address)
        if kind is not None:
            raise ConfigurationError(
                field,
                url,
                f"{parsed.host} resolves to {address}, a {kind} address; webhooks go to public"
                " addresses unless the service allows others (FLEXCREDITS_WEBHOOK_ALLOW_PRIVATE)",
            )


def alert_body(alert_id: int, alert: Alert) -> str:
    """Return the JSON body a webhook carries for an alert."""
    data = {"type": "alert", "id": alert_id, "alert": alert.model_dump(mode="json")}
    return json.dumps(data, separators=(",", ":"), sort_keys=True)


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """Return the ``FlexCredits-Signature`` header value for `body` sent at `timestamp`."""
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


def verify_signature(
    secret: str,
    body: bytes,
    timestamp: str,
    signature: str,
    *,
    tolerance_s: int = 300,
    now_s: int | None = None,
) -> bool:
    """Return whether a webhook request is authentic and recent.

    Args:
        secret: The webhook's secret (shown once when the webhook was set).
        body: The raw request body, exactly as received.
        timestamp: The ``FlexCredits-Timestamp`` header.
        signature: The ``FlexCredits-Signature`` header.
        tolerance_s: How old (or how far in the future) a timestamp may be.
        now_s: The current Unix time in seconds (for tests).
    """
    try:
        sent = int(timestamp)
    except ValueError:
        return False
    now = int(time.time()) if now_s is None else now_s
    if abs(now - sent) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, sent, body), signature)


class Deliverer:
    """Delivers due webhooks from a background thread of one server process.

    Args:
        engine: The wallet's database.
        interval_s: How often to look for due deliveries.
        backoff_s: The first retry's delay; each further one doubles it.
        allow_private: Deliver to loopback, private and other non-public addresses too.
        client: The HTTP client (for tests); a new one with a 10-second timeout by default.
        clock: Returns the current Unix time in nanoseconds.
        on_attempt: Called after each attempt with its result: ``delivered``, ``retry`` or
            ``failed`` (given up).
    """

    def __init__(
        self,
        engine: sa.Engine,
        *,
        interval_s: float = 1.0,
        backoff_s: float = 5.0,
        allow_private: bool = False,
        client: httpx.Client | None = None,
        clock: Callable[[], int] = time.time_ns,
        on_attempt: Callable[[str], None] | None = None,
    ) -> None:
        self.engine = engine
        self.interval_s = interval_s
        self.backoff_s = backoff_s
        self.allow_private = allow_private
        self._client = client or httpx.Client(timeout=10.0)
        self._clock = clock
        self._on_attempt = on_attempt
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the background thread."""
        self._thread = threading.Thread(target=self._run, name="flexcredits-webhooks", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread after its current delivery."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._client.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                while self.deliver_due() and not self._stop.is_set():
                    pass
            except Exception:
                logger.exception("webhook delivery failed", extra={"event": "webhook.error"})
            self._stop.wait(self.interval_s)

    def deliver_due(self, limit: int = 20) -> int:
        """Claim and attempt up to `limit` due deliveries; return how many were attempted."""
        now = self._clock()
        d = deliveries.c
        with self.engine.connect().execution_options(**WRITE) as conn, conn.begin():
            claimed = conn.execute(
                sa.select(d.id, d.url, d.body, d.attempts, tenants.c.webhook_secret)
                .join(tenants, tenants.c.id == d.tenant_id)
                .where(d.status == "pending", d.due_ns <= now)
                .order_by(d.due_ns)
                .limit(limit)
                .with_for_update(skip_locked=True, of=deliveries)
            ).all()
            if claimed:  # leased: another process will not pick them up meanwhile
                conn.execute(
                    sa.update(deliveries)
                    .where(d.id.in_([row.id for row in claimed]))
                    .values(due_ns=now + _LEASE_NS)
                )
        for row in claimed:
            self._attempt(row.id, row.url, row.body, row.attempts, row.webhook_secret or "")
        return len(claimed)

    def _attempt(self, delivery_id: int, url: str, body: str, attempts: int, secret: str) -> None:
        raw = body.encode()
        timestamp = self._clock() // 10**9
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: sign(secret, timestamp, raw),
            "User-Agent": "flexcredits-wallet",
        }
        error: str | None = None
        try:
            if not self.allow_private:
                check_destination(url)
            response = self._client.post(url, content=raw, headers=headers)
            if response.status_code >= 300:
                error = f"HTTP {response.status_code}"
        except ConfigurationError as exc:
            error = f"not sent: {exc}"[:500]
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
        attempts += 1
        if error is None:
            values = {"status": "delivered", "attempts": attempts, "last_error": None}
        elif attempts >= MAX_ATTEMPTS:
            values = {"status": "failed", "attempts": attempts, "last_error": error}
        else:
            delay = min(self.backoff_s * 2 ** (attempts - 1), _MAX_BACKOFF_S)
            due = self._clock() + int(delay * 1e9)
            values = {"attempts": attempts, "last_error": error, "due_ns": due}
        logger.info(
            "webhook %s",
            values.get("status", "retry"),
            extra={"event": "webhook.attempt", "delivery": delivery_id, "error": error},
        )
        with self.engine.connect().execution_options(**WRITE) as conn, conn.begin():
            conn.execute(sa.update(deliveries).where(deliveries.c.id == delivery_id).values(values))
        if self._on_attempt is not None:
            self._on_attempt(str(values.get("status", "retry")))
