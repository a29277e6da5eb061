"""Wallets that live in a wallet service: `HttpWallet` and its asyncio twin `AsyncHttpWallet`.

Both hand records to a background exporter (batches, a durable outbox, retries) and answer the
questions every wallet answers over HTTP, with the same models as `OfflineWallet`.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any

import httpx

from .._exceptions import ConfigurationError, WalletError
from .._models import Balance, BudgetInfo, GrantInfo, UsageRow
from .._paging import DEFAULT_PAGE_SIZE, AsyncRecordStream, Position, RecordStream
from .._pricing import RateCard
from .._records import UsageRecord
from .._usage import Bucket
from .._wire import GrantsResponse, RecordsResponse, UsageResponse
from ._http_base import (
    API_KEY_VARIABLE,
    OUTBOX_DIR_VARIABLE,
    URL_VARIABLE,
    HttpWalletBase,
    page,
)

__all__ = [
    "API_KEY_VARIABLE",
    "OUTBOX_DIR_VARIABLE",
    "URL_VARIABLE",
    "AsyncHttpWallet",
    "HttpWallet",
]


class HttpWallet(HttpWalletBase):
    """A wallet service, reached over HTTP; a drop-in for `OfflineWallet`.

    Records go to a background exporter (``submit`` only queues them); questions go to the
    service. Every answer includes the records this wallet submitted before the question:
    pending records are flushed first, for up to `timeout` seconds.

    Args:
        url: The service's base URL (``FLEXCREDITS_URL`` when omitted); ``https`` required
            except for loopback hosts.
        api_key: The bearer token (``FLEXCREDITS_API_KEY`` when omitted). It is sent only in
            the ``Authorization`` header and never shown in a repr, log line or exception.
        outbox_dir: Where the outbox file lives (``FLEXCREDITS_OUTBOX_DIR``, else a per-user
            cache directory). Several processes may share it.
        durability: ``"batch"`` (default: group commits every `commit_interval`),
            ``"sync"`` (``submit`` returns once the record is on disk) or ``"memory"``
            (no outbox; records wait in memory only).
        max_batch_records: Records per batch (at most 5,000).
        max_batch_bytes: JSON bytes per batch, before gzip.
        linger: Seconds a record may wait for a fuller batch.
        commit_interval: Seconds between group commits to the outbox.
        max_queue: Records held in memory at most.
        max_outbox: Records held on disk at most.
        overflow: When both are full: ``"block"`` (``submit`` waits up to `block_timeout`,
            then drops) or ``"drop_newest"``; every drop is counted and logged.
        block_timeout: Seconds ``submit`` may wait under ``"block"``.
        timeout: Seconds for connecting and for each read or write.
        max_backoff: Longest wait between retries, ``Retry-After`` aside.
        claim_ttl: Seconds a process's claim on outbox chunks lasts (another process takes
            the chunks of one that died after this long).
        lease: How actions are authorized when the service's spend-control policy needs it
            (overdraft denied, or a hard budget the action's tags match): ``"auto"``
            (default: credit is reserved in blocks, each about a second of actions, and
            actions draw on it in-process), ``"per_action"`` (one hold of exactly each
            action's credits: a round trip per action, no credit held idle) or ``"off"``
            (never: actions are booked after they ran and never refused). A refused action
            raises `InsufficientCredits` or `BudgetExceeded` before its body runs.
        lease_ttl: Seconds a hold lasts on the service unless given back (30); a process
            that dies gives its leases back this long after taking them.
        lease_max_credits: The most credits one block reserves (200,000: a second of 10,000
            actions of 20 credits; below that rate a block is about a second of actions).
        lease_idle: Seconds after which a lease no action drew on is given back (5).
        on_rejected: Called with each `DeadLetter` the service rejected, on the exporter thread.
        client: An `httpx.Client` for questions and delivery, or a function that makes one.
            A function is called again in each forked child (gunicorn, ``multiprocessing``);
            a client given as it is cannot be copied, so a forked child sends nothing through
            it and leaves its records in the outbox for another process (``stats()`` says so).
        sleep: Waits between retries (for tests).
        clock: Monotonic seconds (for tests).

    Raises:
        ConfigurationError: An argument is missing or out of range.

    Example:
        >>> wallet = HttpWallet("http://127.0.0.1:8080", durability="memory")
        >>> wallet.shutdown(timeout=0)
        True
    """

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        client: httpx.Client | Callable[[], httpx.Client] | None = None,
        **options: Any,
    ) -> None:
        super().__init__(url, api_key, exporter_client=client, **options)

    def _get(self, path: str, params: dict[str, Any] | None = None) -> httpx.Response:
        self._exporter.flush(self._timeout, until_blocked=True)
        try:
            return self._transport.client.get(
                self._transport.endpoint(path), params=params, headers=self._transport.headers
            )
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None

    @property
    def rate_card(self) -> RateCard:
        """The tenant's rate card on the service: the prices the service books records at.

        Fetched on first use, and asked for again (``If-None-Match``: a ``304`` when it did
        not change) once it is a minute old or when the service said a new version comes into
        force. When the service cannot be reached then, the card fetched before is used.

        Raises:
            WalletError: The card was never fetched and the service cannot give it.
        """
        card = self._card
        if card is not None and not self._card_stale():
            return card
        try:
            return self.fetch_rate_card()
        except WalletError as exc:
            return self._cached_card(exc)

    def fetch_rate_card(self) -> RateCard:
        """Ask the service for the tenant's rate card now (a ``304`` when unchanged).

        Raises:
            WalletError: The service could not be reached or answered with an error.
        """
        try:
            response = self._transport.client.get(
                self._transport.endpoint("rate-card"), headers=self._card_headers()
            )
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None
        return self._card_answer(response)

    def balance(self) -> Balance:
        """Return the current balance.

        Raises:
            WalletError: The service could not be reached or answered with an error.
        """
        return self._parse(self._get("balance"), Balance)

    def grants(self) -> list[GrantInfo]:
        """Return every grant with what is left of it."""
        return self._parse(self._get("grants"), GrantsResponse).grants

    def budgets(self) -> list[BudgetInfo]:
        """Return every budget with what it spent in its current period."""
        return self._budgets(self._get("budgets"))

    def grant(
        self,
        credits: int | Decimal,
        *,
        source: str = "grant",
        expires_at: _dt.datetime | None = None,
        priority: int = 1,
    ) -> GrantInfo:
        """Add credits (the service may require an admin key)."""
        body = self._grant_body(credits, source, expires_at, priority)
        try:
            response = self._transport.client.post(
                self._transport.endpoint("grants"), json=body, headers=self._transport.headers
            )
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None
        return self._parse(response, GrantInfo)

    def usage(
        self,
        group_by: Sequence[str] = (),
        *,
        environment: str | None = None,
        since: _dt.datetime | None = None,
        until: _dt.datetime | None = None,
        bucket: Bucket | None = None,
    ) -> list[UsageRow]:
        """Return usage grouped by record fields and tags, the most credits first."""
        params = self._usage_params(group_by, environment, since, until, bucket)
        return self._parse(self._get("usage", params), UsageResponse).rows

    def records(
        self,
        *,
        action: str | None = None,
        tags: Mapping[str, str] | None = None,
        environment: str | None = None,
        conversation_id: str | None = None,
        since: _dt.datetime | None = None,
        until: _dt.datetime | None = None,
        cursor: str | None = None,
        limit: int | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
    ) -> RecordStream:
        """Iterate over booked records in time order, following the service's pages.

        Each page is fetched when the one before is used up, `page_size` records at a time.

        Raises:
            ConfigurationError: A filter, `cursor`, `limit` or `page_size` is not valid.
        """
        params = self._records_params(action, tags, environment, conversation_id, since, until)

        def fetch(position: Position | None, size: int) -> list[UsageRecord]:
            answer = self._parse(
                self._get("records", page(params, position, size)), RecordsResponse
            )
            return [UsageRecord.from_model(model) for model in answer.records]

        return RecordStream(fetch, cursor=cursor, limit=limit, page_size=page_size)


class AsyncHttpWallet(HttpWalletBase):
    """`HttpWallet` for asyncio apps: the same questions as coroutines on `httpx.AsyncClient`.

    Delivery runs on the exporter thread, so metered calls never wait on the network; the
    questions never block the event loop. Takes the arguments of `HttpWallet`, with `client`
    an `httpx.AsyncClient`.

    Authorization (`lease`) is synchronous: when an action needs a new block of credit, the
    request for it blocks the event loop for one round trip, once per block (about once a
    second per set of matched budgets, under load); ``lease="per_action"`` does so for every
    action that needs a hold.
    """

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        client: httpx.AsyncClient | None = None,
        **options: Any,
    ) -> None:
        if client is not None and not isinstance(client, httpx.AsyncClient):
            raise ConfigurationError("client", client, "must be an httpx.AsyncClient")
        super().__init__(url, api_key, **options)
        self._own_async = client is None
        self._aclient = client or httpx.AsyncClient(timeout=httpx.Timeout(self._timeout))

    async def aflush(self, timeout: float | None = None) -> bool:
        """`flush` without blocking the event loop."""
        return await asyncio.to_thread(self.flush, timeout)

    async def ashutdown(self, timeout: float | None = None) -> bool:
        """`shutdown` without blocking the event loop; also closes the async client."""
        done = await asyncio.to_thread(self.shutdown, timeout)
        if self._own_async:
            await self._aclient.aclose()
        return done

    async def _get(self, path: str, params: dict[str, Any] | None = None) -> httpx.Response:
        await asyncio.to_thread(self._exporter.flush, self._timeout, until_blocked=True)
        try:
            return await self._aclient.get(
                self._transport.endpoint(path), params=params, headers=self._transport.headers
            )
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None

    @property
    def rate_card(self) -> RateCard:
        """The tenant's rate card as `fetch_rate_card` last fetched it.

        Raises:
            WalletError: No card was fetched yet: ``await wallet.fetch_rate_card()`` first.
        """
        if self._card is None:
            raise WalletError(
                f"the rate card of {self.url} was not fetched yet: "
                "await wallet.fetch_rate_card() first"
            )
        return self._card

    async def fetch_rate_card(self) -> RateCard:
        """Ask the service for the tenant's rate card (a ``304`` when unchanged); return it.

        Raises:
            WalletError: The service could not be reached or answered with an error.
        """
        try:
            response = await self._aclient.get(
                self._transport.endpoint("rate-card"), headers=self._card_headers()
            )
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None
        return self._card_answer(response)

    async def balance(self) -> Balance:
        """Return the current balance."""
        return self._parse(await self._get("balance"), Balance)

    async def grants(self) -> list[GrantInfo]:
        """Return every grant with what is left of it."""
        return self._parse(await self._get("grants"), GrantsResponse).grants

    async def budgets(self) -> list[BudgetInfo]:
        """Return every budget with what it spent in its current period."""
        return self._budgets(await self._get("budgets"))

    async def grant(
        self,
        credits: int | Decimal,
        *,
        source: str = "grant",
        expires_at: _dt.datetime | None = None,
        priority: int = 1,
    ) -> GrantInfo:
        """Add credits (the service may require an admin key)."""
        body = self._grant_body(credits, source, expires_at, priority)
        try:
            response = await self._aclient.post(
                self._transport.endpoint("grants"), json=body, headers=self._transport.headers
            )
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None
        return self._parse(response, GrantInfo)

    async def usage(
        self,
        group_by: Sequence[str] = (),
        *,
        environment: str | None = None,
        since: _dt.datetime | None = None,
        until: _dt.datetime | None = None,
        bucket: Bucket | None = None,
    ) -> list[UsageRow]:
        """Return usage grouped by record fields and tags, the most credits first."""
        params = self._usage_params(group_by, environment, since, until, bucket)
        return self._parse(await self._get("usage", params), UsageResponse).rows

    def records(
        self,
        *,
        action: str | None = None,
        tags: Mapping[str, str] | None = None,
        environment: str | None = None,
        conversation_id: str | None = None,
        since: _dt.datetime | None = None,
        until: _dt.datetime | None = None,
        cursor: str | None = None,
        limit: int | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
    ) -> AsyncRecordStream:
        """Iterate (``async for``) over booked records in time order, following the pages.

        Raises:
            ConfigurationError: A filter, `cursor`, `limit` or `page_size` is not valid.
        """
        params = self._records_params(action, tags, environment, conversation_id, since, until)

        async def fetch(position: Position | None, size: int) -> list[UsageRecord]:
            answer = self._parse(
                await self._get("records", page(params, position, size)), RecordsResponse
            )
            return [UsageRecord.from_model(model) for model in answer.records]

        return AsyncRecordStream(fetch, cursor=cursor, limit=limit, page_size=page_size)
