"""HTTP transport to a wallet service: one `httpx.Client`, gzip bodies, answers classified.

The API key lives only in the ``Authorization`` header of each request; nothing here puts it
in a repr, a log line or an exception.
"""

from __future__ import annotations

import email.utils
import gzip
import hashlib
import ipaddress
import logging
import os
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from pydantic import ValidationError

from .._environment import ALLOW_HTTP_VARIABLE
from .._exceptions import ConfigurationError, WalletError
from .._wire import API_VERSION, ErrorResponse, IngestResponse, RecordResult

__all__ = [
    "BatchTooLarge",
    "is_loopback",
    "DeliveryRetry",
    "IngestOutcome",
    "Transport",
    "check_url",
    "error_from_response",
    "parse_retry_after",
    "reason_of",
]

_RETRY_STATUS = frozenset({408, 429}) | frozenset(range(500, 600))
_PAUSE_STATUS = frozenset({401, 403})
_USER_AGENT = "flexcredits-sdk-python"

logger = logging.getLogger("flexcredits_sdk")


class DeliveryRetry(Exception):
    """A batch was not acknowledged and should be sent again (internal to the exporter).

    Attributes:
        reason: Why, for `stats()` and logs.
        retry_after: Seconds the service asked to wait, if it did.
        paused: The service refused the credentials; delivery waits longer between attempts.
        unauthorized: The service does not know the API key (401).
        unreachable: No connection could be made (refused, no route, no such host).
    """

    def __init__(
        self,
        reason: str,
        *,
        retry_after: float | None = None,
        paused: bool = False,
        unauthorized: bool = False,
        unreachable: bool = False,
    ) -> None:
        self.reason = reason
        self.retry_after = retry_after
        self.paused = paused
        self.unauthorized = unauthorized
        self.unreachable = unreachable
        super().__init__(reason)


class BatchTooLarge(Exception):
    """The service (or a proxy in front of it) refused a batch as too large (413).

    Attributes:
        reason: The answer, for dead letters and logs.
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass
class IngestOutcome:
    """What the service did with a batch, by record id: settled, rejected, or to send again."""

    done: set[str] = field(default_factory=set)
    accepted: int = 0
    duplicates: int = 0
    rejected: dict[str, str] = field(default_factory=dict)
    resend: set[str] = field(default_factory=set)


def is_loopback(host: str) -> bool:
    """Whether `host` is this machine (``localhost``, ``127.0.0.0/8``, ``::1``)."""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_url(url: Any, *, allow_http: bool = False) -> httpx.URL:
    """Return the wallet service's base URL, refusing plain HTTP except to loopback hosts
    (or anywhere with `allow_http`, which logs a warning).

    Raises:
        ConfigurationError: The URL is not a string, not absolute, or plain HTTP elsewhere.
    """
    if not isinstance(url, str) or not url.strip():
        raise ConfigurationError("url", url, "must be the wallet service's URL, e.g. https://...")
    try:
        parsed = httpx.URL(url.strip())
    except (httpx.InvalidURL, TypeError) as exc:
        raise ConfigurationError("url", url, f"is not a URL ({exc})") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ConfigurationError("url", url, "must be an absolute http(s) URL")
    if parsed.scheme == "http" and not is_loopback(parsed.host):
        if not allow_http:
            raise ConfigurationError(
                "url",
                url,
                "must use https: plain http is allowed for loopback hosts only, unless you "
                f"allow it (allow_http=True or {ALLOW_HTTP_VARIABLE}=1) for a service on a "
                "private network, such as a docker-compose or Kubernetes service name",
            )
        logger.warning(
            "flexcredits: plain http to %s is allowed (allow_http): the API key and the "
            "records travel unencrypted",
            parsed.host,
        )
    if parsed.userinfo:
        raise ConfigurationError("url", url, "must not carry credentials; pass api_key")
    return parsed.copy_with(path=parsed.path.rstrip("/"), query=None, fragment=None)


def reason_of(exc: BaseException) -> str:
    """Return why a request failed: the error's class and its reason, e.g.
    ``ConnectError: [Errno 111] Connection refused``."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Return the seconds a ``Retry-After`` header asks for (delta or HTTP date), or ``None``."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def error_from_response(response: httpx.Response) -> WalletError:
    """Return a `WalletError` for an error answer, with the service's code and message."""
    try:
        detail = ErrorResponse.model_validate_json(response.content).error
        code, text = detail.code, detail.message
    except ValidationError:
        code, text = None, response.reason_phrase or "error"
    return WalletError(
        f"wallet service answered {response.status_code}: {text}",
        status_code=response.status_code,
        code=code,
    )


ClientFactory = Callable[[], httpx.Client]


class Transport:
    """Sends batches and questions to one wallet service.

    Args:
        url: The service's base URL (checked by `check_url`).
        api_key: The bearer token, or ``None`` for a service without auth.
        client: An `httpx.Client` to use (its own settings apply), or a function that makes
            one (called again in each forked child). Without it, a client with keep-alive is
            made, and made again in a forked child.
        timeout: Seconds for connecting, and for each read and write.
        gzip_min_bytes: Bodies at least this long are gzip-compressed.
    """

    def __init__(
        self,
        url: httpx.URL,
        api_key: str | None,
        *,
        client: httpx.Client | ClientFactory | None = None,
        timeout: float = 10.0,
        gzip_min_bytes: int = 1024,
    ) -> None:
        self.url = url
        #: The fingerprint of the API key, stored with the records it sends (never the key).
        self.key_id = hashlib.sha256((api_key or "").encode()).hexdigest()[:16]
        self._headers = {"User-Agent": _USER_AGENT, "Accept": "application/json"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._timeout = timeout
        self._gzip_min = gzip_min_bytes
        self._factory: ClientFactory | None = None
        self._made: httpx.Client | None = None  # a client this transport made, to close
        if isinstance(client, httpx.Client):
            self._client = client
        else:
            self._factory = client or self.new_client
            self._client = self._make()
        #: Why this process may not send (it is a forked child and the client is the
        #: parent's), or ``None``.
        self.refusal: str | None = None

    def __repr__(self) -> str:
        return f"Transport(url={str(self.url)!r})"

    @property
    def client(self) -> httpx.Client:
        """The client requests go through.

        Raises:
            WalletError: This is a forked child and the client given is the parent's.
        """
        if self.refusal is not None:
            raise WalletError(self.refusal)
        return self._client

    def _make(self) -> httpx.Client:
        assert self._factory is not None
        made = self._factory()
        if not isinstance(made, httpx.Client):
            raise ConfigurationError("client", made, "must make an httpx.Client")
        self._made = made
        return made

    def new_client(self) -> httpx.Client:
        """Return a fresh client with keep-alive and this transport's timeouts."""
        return httpx.Client(
            timeout=httpx.Timeout(self._timeout),
            limits=httpx.Limits(max_keepalive_connections=4, keepalive_expiry=30.0),
        )

    def after_fork(self) -> None:
        """In a forked child: never touch the parent's connections. A client this transport
        makes is made again (here, while the child has one thread); one given as it is cannot
        be copied, so this child sends nothing through it (its records wait in the outbox for
        another process)."""
        if self._factory is not None:
            self._client = self._make()
        else:
            self.refusal = (
                f"the httpx.Client given to the wallet belongs to process {os.getppid()}, and "
                f"process {os.getpid()} is a fork of it: its connections are the parent's, so "
                "this process sends nothing; its records wait in the outbox for another "
                "process. Pass client=<a function returning an httpx.Client> to send from "
                "forked processes too"
            )

    def close(self) -> None:
        """Close the client if this transport made it."""
        if self._made is not None:
            self._made.close()

    def endpoint(self, path: str) -> str:
        """Return the absolute URL of a protocol path such as ``records``."""
        return f"{self.url}/{API_VERSION}/{path}"

    @property
    def headers(self) -> dict[str, str]:
        """The headers every request carries (including the credentials)."""
        return self._headers

    def send(
        self, ids: Sequence[str], bodies: Sequence[str], batch_id: str | None = None
    ) -> IngestOutcome:
        """POST one batch (records' ids and JSON texts) to ``/v1/records``; classify the answer.

        Raises:
            DeliveryRetry: Nothing in the batch is acknowledged; send it again later.
            BatchTooLarge: The body is over a limit on the way (413); send less at once.
        """
        body = ('{"records":[' + ",".join(bodies) + "]}").encode()
        headers = {
            **self._headers,
            "Content-Type": "application/json",
            "Idempotency-Key": batch_id or uuid.uuid4().hex,
            "Prefer": "return=minimal",  # results only for records not settled
        }
        if len(body) >= self._gzip_min:
            body = gzip.compress(body, compresslevel=1, mtime=0)
            headers["Content-Encoding"] = "gzip"
        try:
            response = self.client.post(self.endpoint("records"), content=body, headers=headers)
        except httpx.TimeoutException as exc:
            raise DeliveryRetry(f"timed out: {reason_of(exc)}") from None
        except httpx.TransportError as exc:
            raise DeliveryRetry(
                f"cannot reach the wallet service at {self.url}: {reason_of(exc)}",
                unreachable=isinstance(exc, httpx.ConnectError),
            ) from None
        return self._classify(ids, response)

    def _classify(self, ids: Sequence[str], response: httpx.Response) -> IngestOutcome:
        status = response.status_code
        if status in _RETRY_STATUS:
            raise DeliveryRetry(
                f"wallet service answered {status}",
                retry_after=parse_retry_after(response.headers.get("Retry-After")),
            )
        if status == 413:
            raise BatchTooLarge(str(error_from_response(response)))
        if status in _PAUSE_STATUS:
            raise DeliveryRetry(
                f"wallet service at {self.url} refused the API key ({status} "
                f"{response.reason_phrase})",
                paused=True,
                unauthorized=status == 401,
            )
        if status not in (200, 422):
            raise DeliveryRetry(f"{error_from_response(response)}; records kept", paused=True)
        try:
            answer = IngestResponse.model_validate_json(response.content)
        except ValidationError:
            raise DeliveryRetry(f"wallet service answered {status} with a malformed body") from None
        if "return=minimal" in response.headers.get("Preference-Applied", ""):
            return _minimal_outcome(ids, answer)
        return _outcome(ids, answer.results)


def _minimal_outcome(ids: Sequence[str], answer: IngestResponse) -> IngestOutcome:
    """Classify an answer that lists only the records it did not settle (``return=minimal``).

    The records it does not list were settled (accepted or duplicates, as counted), provided
    the counts add up; if they do not, those records are sent again, which is always safe.
    """
    wanted = set(ids)
    listed = {result.id: result for result in answer.results if result.id in wanted}
    outcome = _tally(IngestOutcome(), list(listed), list(listed.values()), count=False)
    unlisted = wanted - listed.keys()
    if len(listed) == len(answer.results) and (
        answer.accepted + answer.duplicates + len(answer.results) == len(ids)
    ):
        outcome.done |= unlisted
        outcome.accepted, outcome.duplicates = answer.accepted, answer.duplicates
    else:
        outcome.resend |= unlisted
    return outcome


def _tally(
    outcome: IngestOutcome,
    ids: Sequence[str],
    found: Sequence[RecordResult | None],
    *,
    count: bool = True,
) -> IngestOutcome:
    """Add each record's result to `outcome` (a missing result: send the record again)."""
    for record_id, result in zip(ids, found, strict=True):
        if result is None or result.status == "not_booked":
            outcome.resend.add(record_id)
        elif result.status == "rejected":
            outcome.rejected[record_id] = result.reason or "rejected"
        else:
            outcome.done.add(record_id)
            if count and result.status == "accepted":
                outcome.accepted += 1
            elif count:
                outcome.duplicates += 1
    return outcome


def _outcome(ids: Sequence[str], results: list[RecordResult]) -> IngestOutcome:
    if len(results) == len(ids) and all(
        result.id == record_id for result, record_id in zip(results, ids, strict=True)
    ):  # the protocol's order: one result per record, in the batch's order
        statuses = [result.status for result in results]
        accepted = statuses.count("accepted")
        duplicates = statuses.count("duplicate")
        if accepted + duplicates == len(ids):  # the usual answer: every record settled
            return IngestOutcome(done=set(ids), accepted=accepted, duplicates=duplicates)
        found: Sequence[RecordResult | None] = results
    else:
        by_id = {result.id: result for result in results}
        found = [by_id.get(record_id) for record_id in ids]
    return _tally(IngestOutcome(), ids, found)
