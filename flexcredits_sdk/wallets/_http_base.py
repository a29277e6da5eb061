"""What `HttpWallet` and `AsyncHttpWallet` share: settings, the exporter, and the requests."""

from __future__ import annotations

import datetime as _dt
import difflib
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar, cast

import httpx
from pydantic import BaseModel, ValidationError

from .._environment import (
    ALLOW_HTTP_VARIABLE,
    API_KEY_VARIABLE,
    OUTBOX_DIR_VARIABLE,
    URL_VARIABLE,
)
from .._exceptions import ConfigurationError, WalletError
from .._export import DeadLetter, Exporter, Transport, check_url, default_outbox_dir
from .._export._settings import ExportSettings
from .._export._transport import error_from_response, is_loopback, reason_of
from .._models import BudgetInfo, validation_error
from .._paging import Position, encode_cursor
from .._pricing import RateCard
from .._records import UsageRecord, datetime_to_ns
from .._usage import Bucket
from .._validate import check_aware, check_credits, check_name, check_tags
from .._wire import GrantRequest, RecordsQuery, UsageQuery
from ._holds import LeaseMode, LeaseSettings
from ._leases import Leases

__all__ = [
    "API_KEY_VARIABLE",
    "OUTBOX_DIR_VARIABLE",
    "RATE_CARD_MAX_AGE",
    "URL_VARIABLE",
    "HttpWalletBase",
    "page",
]

logger = logging.getLogger("flexcredits_sdk")

#: Seconds a fetched rate card is used before the service is asked again whether it changed
#: (with ``If-None-Match``: an unchanged card costs a ``304`` and no body).
RATE_CARD_MAX_AGE = 60.0
#: What a rate card answer carries besides the card.
_VERSION_FIELDS = ("effective_from", "effective_until", "default")


M = TypeVar("M", bound=BaseModel)


def _outbox_files(
    outbox_dir: str | Path | None, url: httpx.URL, api_key: str | None
) -> tuple[Path, Path]:
    """Return the outbox file of a service (records wait by wallet; each chunk says which
    key sends it), and the file an earlier version kept per service and key."""
    base = outbox_dir or os.environ.get(OUTBOX_DIR_VARIABLE) or default_outbox_dir()
    if not isinstance(base, str | Path):
        raise ConfigurationError("outbox_dir", outbox_dir, "must be a path")
    directory = Path(base).expanduser()
    digest = hashlib.sha256(str(url).encode()).hexdigest()[:16]
    earlier = hashlib.sha256(f"{url}\n{api_key or ''}".encode()).hexdigest()[:16]
    return directory / f"outbox-{digest}.sqlite3", directory / f"outbox-{earlier}.sqlite3"


#: The arguments of `HttpWallet` that are not `ExportSettings`.
_ARGUMENTS = (
    "url",
    "api_key",
    "outbox_dir",
    "on_rejected",
    "client",
    "sleep",
    "clock",
    "allow_http",
)


def _not_an_option(name: str) -> str:
    """Say that `name` is not an argument of the wallet, with the closest ones and the list."""
    options = sorted((*_ARGUMENTS, *ExportSettings.names(), *LeaseSettings.names()))
    close = difflib.get_close_matches(name, options, n=2, cutoff=0.5)
    hint = f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""
    return f"is not an option{hint}; the options are {', '.join(options)}"


def _params(query: BaseModel) -> dict[str, Any]:
    """Return a query model as query parameters (unset ones left out)."""
    return query.model_dump(mode="json", exclude_none=True)


def _query(factory: type[M], what: str, **values: Any) -> M:
    try:
        return factory(**values)
    except ValidationError as exc:
        raise validation_error(exc, what) from None


class HttpWalletBase:
    """The exporter side shared by the sync and async wallets."""

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        outbox_dir: str | Path | None = None,
        on_rejected: Callable[[DeadLetter], Any] | None = None,
        exporter_client: httpx.Client | Callable[[], httpx.Client] | None = None,
        sleep: Callable[[float], Any] | None = None,
        clock: Callable[[], float] | None = None,
        allow_http: bool | None = None,
        lease: LeaseMode = "auto",
        **settings: Any,
    ) -> None:
        leasing = {name: settings.pop(name) for name in LeaseSettings.names() & settings.keys()}
        unknown = sorted(settings.keys() - ExportSettings.names())
        if unknown:
            raise ConfigurationError(unknown[0], settings[unknown[0]], _not_an_option(unknown[0]))
        if url is None:
            url = os.environ.get(URL_VARIABLE)
            if url is None:
                raise ConfigurationError("url", None, f"pass a URL or set {URL_VARIABLE}")
        if allow_http is None:
            allow_http = os.environ.get(ALLOW_HTTP_VARIABLE, "").strip() == "1"
        elif not isinstance(allow_http, bool):
            raise ConfigurationError("allow_http", allow_http, "must be True or False")
        self._url = check_url(url, allow_http=allow_http)
        if api_key is None:
            api_key = os.environ.get(API_KEY_VARIABLE) or None
        if api_key is not None and (not isinstance(api_key, str) or not api_key.isprintable()):
            raise ConfigurationError("api_key", "***", "must be a printable string")
        if api_key is None and not is_loopback(self._url.host):
            raise ConfigurationError(
                "api_key",
                None,
                f"the wallet service at {self.url} needs an API key: pass api_key= or set "
                f"{API_KEY_VARIABLE} (only a service on this machine, a loopback URL, may run "
                "without one)",
            )
        options = ExportSettings(**settings)
        lease_settings = LeaseSettings(lease=lease, **leasing)
        if on_rejected is not None and not callable(on_rejected):
            raise ConfigurationError("on_rejected", on_rejected, "must be callable")
        if exporter_client is not None and not (
            isinstance(exporter_client, httpx.Client) or callable(exporter_client)
        ):
            raise ConfigurationError(
                "client", exporter_client, "must be an httpx.Client or a function making one"
            )
        self._timeout = float(options.timeout)
        self._transport = Transport(
            self._url, api_key, client=exporter_client, timeout=options.timeout
        )
        outbox: Path | None = None
        earlier: tuple[Path, ...] = ()
        if options.durability != "memory":
            outbox, old = _outbox_files(outbox_dir, self._url, api_key)
            earlier = (old,)
        self._exporter = Exporter(
            self._transport,
            options,
            outbox_path=outbox,
            earlier_outboxes=earlier,
            on_rejected=on_rejected,
            sleep=sleep,
            clock=clock,
        )
        self._leases = Leases(
            self._transport,
            self._exporter.flush,
            lease_settings,
            policy_max_age=RATE_CARD_MAX_AGE,
            timeout=self._timeout,
            sleep=sleep,
            clock=clock,
        )
        # the meter calls it before every action that needs a hold: one call less
        self.authorize = self._leases.authorize  # type: ignore[method-assign]
        self._card: RateCard | None = None
        self._card_etag: str | None = None
        self._card_checked = -float("inf")  # time.monotonic() of the last answer
        self._card_until: int | None = None  # when the service said the next version starts
        self._card_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self._url)!r})"

    @property
    def url(self) -> str:
        """The wallet service's base URL."""
        return str(self._url)

    @property
    def outbox_path(self) -> Path | None:
        """The outbox file, or ``None`` when records are kept in memory only."""
        disk = self._exporter.outbox
        return disk.path if disk is not None else None

    @property
    def authorizes(self) -> bool:
        """Whether actions must be authorized (hold credit) before they run.

        ``False`` with ``lease="off"``, and while the service's spend-control policy says no
        action needs a hold (until the policy is asked for again); ``True`` until the policy
        is known.
        """
        return self._leases.authorizes

    def authorize(
        self, action: str, credits: int | Decimal, tags: Mapping[str, str]
    ) -> object | None:
        """Reserve `credits` for an action about to run: drawn from this process's lease for
        the budgets `tags` match, or a new hold; ``None`` when the action needs none.

        Raises:
            InsufficientCredits: The tenant denies overdraft and cannot cover the action.
            BudgetExceeded: A hard budget that `tags` match cannot cover it.
        """
        return self._leases.authorize(action, credits, tags)

    def submit(self, record: UsageRecord, hold: Any = None, /) -> None:
        """Queue one record for delivery (O(1), no I/O on the caller's thread); a record
        authorized by `authorize` carries its hold's id."""
        if hold is None:
            self._exporter.submit(record)
        else:
            # the record's fields and its hold's id: the exporter sends it with ``hold_id``;
            # queued before its lease is settled, so a flush that gives the lease back after
            # the settling sends this record first
            self._exporter.submit(cast(UsageRecord, record + (hold[0].hold_id,)))  # noqa: RUF005
            self._leases.settle(record, hold)

    def flush(self, timeout: float | None = None) -> bool:
        """Deliver every record submitted so far, then give back every lease; return whether
        all records were acknowledged in time."""
        delivered = self._exporter.flush(timeout)
        if delivered:
            self._leases.flush(timeout)
        return delivered

    def shutdown(self, timeout: float | None = None) -> bool:
        """Deliver what is left within `timeout` seconds (5 by default), give back every
        lease, and stop the exporter.

        Undelivered records stay in the outbox for the next process; a lease whose records
        were not delivered is not given back (the service releases it when it expires).
        """
        if timeout is None:
            self._leases.shutdown(None)
            return self._exporter.shutdown(None)
        end = time.monotonic() + timeout
        self._leases.shutdown(timeout)
        return self._exporter.shutdown(max(0.0, end - time.monotonic()))

    def leases(self) -> list[dict[str, Any]]:
        """Return the leases this process holds: for each, the ids of the budgets it is for
        (``budgets``), its ``tags``, ``hold_id``, ``credits``, the credits not yet drawn
        (``remaining``) and the seconds it may still be drawn on (``usable_for``)."""
        return self._leases.leases()

    def stats(self) -> dict[str, Any]:
        """Return queued, in_outbox, sent, duplicates, rejected, dropped and last_error, and
        under ``leases``: holds asked, released, refused, policy fetches, errors, their sum of
        ``round_trips``, the credits ``held`` and the number of ``leases``."""
        return {**self._exporter.stats(), "leases": self._leases.stats()}

    def dead_letters(self) -> list[DeadLetter]:
        """Return the records the service rejected as invalid, with its reasons."""
        return self._exporter.dead_letters()

    # --- requests, shared by both faces --------------------------------------------------------

    def _usage_params(
        self,
        group_by: Sequence[str],
        environment: str | None,
        since: _dt.datetime | None,
        until: _dt.datetime | None,
        bucket: Bucket | None,
    ) -> dict[str, Any]:
        if isinstance(group_by, str) or not isinstance(group_by, Sequence):
            raise ConfigurationError("group_by", group_by, "must be a list of field or tag names")
        for name, when in (("since", since), ("until", until)):
            if when is not None:
                check_aware(when, name)
        query = _query(
            UsageQuery,
            "usage",
            group_by=list(group_by),
            environment=environment,
            since=since,
            until=until,
            bucket=bucket,
        )
        return _params(query)

    def _records_params(
        self,
        action: str | None,
        tags: Mapping[str, str] | None,
        environment: str | None,
        conversation_id: str | None,
        since: _dt.datetime | None,
        until: _dt.datetime | None,
    ) -> dict[str, Any]:
        for name, when in (("since", since), ("until", until)):
            if when is not None:
                check_aware(when, name)
        if tags is not None:
            tags = check_tags(tags)
        query = _query(
            RecordsQuery,
            "records",
            action=action,
            environment=environment,
            conversation_id=conversation_id,
            tags=None if tags is None else json.dumps(dict(tags)),
            since=since,
            until=until,
        )
        params = _params(query)
        params.pop("limit", None)  # set per page
        if "tags" in params:
            params["tags"] = json.dumps(params["tags"], separators=(",", ":"))
        return params

    def _grant_body(
        self,
        credits: int | Decimal,
        source: str,
        expires_at: _dt.datetime | None,
        priority: int,
    ) -> dict[str, Any]:
        check_credits(credits, "credits", allow_zero=False)
        check_name(source, "source")
        if expires_at is not None:
            check_aware(expires_at, "expires_at")
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise ConfigurationError("priority", priority, "must be an int")
        request = _query(
            GrantRequest,
            "grant",
            credits=credits,
            source=source,
            expires_at=expires_at,
            priority=priority,
        )
        return request.model_dump(mode="json")

    def _budgets(self, response: httpx.Response) -> list[BudgetInfo]:
        """Return the budgets of a ``GET /v1/budgets`` answer (each without what only the
        service shows: its holds and its parent)."""
        if response.status_code >= 400:
            raise error_from_response(response)
        fields = BudgetInfo.model_fields
        try:
            return [
                BudgetInfo.model_validate({k: v for k, v in entry.items() if k in fields})
                for entry in response.json()["budgets"]
            ]
        except (ValueError, TypeError, KeyError, AttributeError):
            raise WalletError(
                f"wallet service answered {response.status_code} with malformed budgets",
                status_code=response.status_code,
            ) from None

    def _parse(self, response: httpx.Response, model: type[M]) -> M:
        if response.status_code >= 400:
            raise error_from_response(response)
        try:
            return model.model_validate_json(response.content)
        except ValidationError:
            raise WalletError(
                f"wallet service answered {response.status_code} with a malformed {model.__name__}",
                status_code=response.status_code,
            ) from None

    # --- the tenant's rate card ----------------------------------------------------------------

    def _card_stale(self) -> bool:
        """Whether the rate card must be asked for (again) before it is used."""
        if self._card is None or time.monotonic() - self._card_checked >= RATE_CARD_MAX_AGE:
            return True
        return self._card_until is not None and time.time_ns() >= self._card_until

    def _card_headers(self) -> dict[str, str]:
        headers = dict(self._transport.headers)
        if self._card_etag is not None:
            headers["If-None-Match"] = self._card_etag
        return headers

    def _card_answer(self, response: httpx.Response) -> RateCard:
        """Return the card of a ``GET /v1/rate-card`` answer (the cached one on 304)."""
        with self._card_lock:
            if response.status_code == 304 and self._card is not None:
                self._card_checked = time.monotonic()
                return self._card
            if response.status_code >= 400:
                raise error_from_response(response)
            try:
                data = response.json()
                versions = {name: data.pop(name, None) for name in _VERSION_FIELDS}
                card = RateCard(**data)
                until = versions["effective_until"]
                until_ns = (
                    None if until is None else datetime_to_ns(_dt.datetime.fromisoformat(until))
                )
            except (ValueError, TypeError, AttributeError) as exc:
                raise WalletError(
                    f"wallet service answered {response.status_code} with a malformed rate card: "
                    f"{exc}",
                    status_code=response.status_code,
                ) from None
            self._card, self._card_until = card, until_ns
            self._card_etag = response.headers.get("etag")
            self._card_checked = time.monotonic()
            return card

    def _cached_card(self, exc: WalletError) -> RateCard:
        """Return the card fetched before, when asking again failed; else raise `exc`."""
        if self._card is None:
            raise exc
        logger.warning(
            "flexcredits: cannot check the rate card of %s (%s); using the one fetched before",
            self.url,
            exc,
        )
        return self._card

    def _unreachable(self, exc: httpx.HTTPError) -> WalletError:
        return WalletError(f"cannot reach the wallet service at {self.url}: {reason_of(exc)}")


def page(params: dict[str, Any], position: Position | None, size: int) -> dict[str, Any]:
    """Return the query parameters of the page of `size` records after `position`."""
    paged = {**params, "limit": size}
    if position is not None:
        paged["cursor"] = encode_cursor(position)
    return paged
