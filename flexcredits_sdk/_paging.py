"""Records as a stream: time order, opaque cursors, and iterators that fetch a page at a time.

Every wallet lists records in the same order, by start time and then id, so a cursor means the
same thing everywhere: the position just after one record. A cursor is opaque to callers (URL-safe
text); inside, it is that record's start time and id.
"""

from __future__ import annotations

import base64
import binascii
from bisect import bisect_right
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from typing import Any

from ._exceptions import ConfigurationError
from ._records import UsageRecord
from ._validate import check_id

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "MAX_PAGE_SIZE",
    "AsyncRecordStream",
    "Position",
    "RecordStream",
    "check_limit",
    "decode_cursor",
    "encode_cursor",
    "page_after",
    "time_order",
]

#: Records per page when the caller does not say (`GET /v1/records` and the HTTP wallets).
DEFAULT_PAGE_SIZE = 1_000
#: The most records one page of `GET /v1/records` may hold.
MAX_PAGE_SIZE = 10_000

#: Where a listing stands: the start time and id of the last record returned.
Position = tuple[int, str]
#: Returns at most `size` records that come after `position` (all from the start when None).
Fetch = Callable[[Position | None, int], Sequence[UsageRecord]]
AsyncFetch = Callable[[Position | None, int], Awaitable[Sequence[UsageRecord]]]


def time_order(record: UsageRecord) -> Position:
    """The sort key of every listing: start time, then id."""
    return record.start_time_ns, record.id


def encode_cursor(position: Position) -> str:
    """Return the opaque cursor of a position."""
    start_ns, record_id = position
    return base64.urlsafe_b64encode(f"{start_ns}:{record_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: Any) -> Position:
    """Return the position a cursor stands for.

    Raises:
        ConfigurationError: `cursor` is not one this package made.
    """
    if not isinstance(cursor, str) or not cursor or len(cursor) > 200:
        raise ConfigurationError("cursor", cursor, "is not a cursor of a record listing")
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        start, record_id = text.split(":", 1)
        position = int(start), check_id(record_id, "cursor")
    except (binascii.Error, UnicodeDecodeError, ValueError, ConfigurationError):
        raise ConfigurationError("cursor", cursor, "is not a cursor of a record listing") from None
    if str(position[0]) != start or not 0 <= position[0] < 2**63:
        raise ConfigurationError("cursor", cursor, "is not a cursor of a record listing")
    return position


def check_limit(
    limit: Any, field: str = "limit", *, minimum: int = 0, maximum: int | None = None
) -> int | None:
    """Return `limit` checked: an int from `minimum` to `maximum`, or ``None``.

    Raises:
        ConfigurationError: Anything else.
    """
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < minimum:
        kind = "a positive" if minimum == 1 else "a non-negative"
        raise ConfigurationError(field, limit, f"must be {kind} int or None")
    if maximum is not None and limit > maximum:
        raise ConfigurationError(field, limit, f"must be at most {maximum}")
    return limit


class _Stream:
    __slots__ = ("_buffer", "_done", "_fetch", "_left", "_page_size", "_position")

    def __init__(
        self,
        fetch: Any,
        *,
        cursor: str | None = None,
        limit: int | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
    ) -> None:
        self._fetch = fetch  # a `Fetch`, or an `AsyncFetch` for `AsyncRecordStream`
        self._position = None if cursor is None else decode_cursor(cursor)
        self._left = check_limit(limit)
        size = check_limit(page_size, "page_size", minimum=1, maximum=MAX_PAGE_SIZE)
        if size is None:
            raise ConfigurationError("page_size", page_size, "must be a positive int")
        self._page_size = size
        self._buffer: list[UsageRecord] = []
        self._done = self._left == 0

    @property
    def cursor(self) -> str | None:
        """Where the listing stands: pass it as ``cursor=`` to go on after the last record
        returned so far (``None`` before the first, when no cursor was given)."""
        return None if self._position is None else encode_cursor(self._position)

    def _size(self) -> int:
        return self._page_size if self._left is None else min(self._page_size, self._left)

    def _take(self, page: Sequence[UsageRecord], asked: int) -> None:
        self._buffer = list(page)
        self._buffer.reverse()  # popped from the end, oldest first
        if len(page) < asked:
            self._done = True

    def _next(self) -> UsageRecord:
        record = self._buffer.pop()
        self._position = time_order(record)
        if self._left is not None:
            self._left -= 1
            if self._left == 0:
                self._done = True
                self._buffer.clear()
        return record


class RecordStream(_Stream, Iterator[UsageRecord]):
    """Booked records in time order (start time, then id), fetched a page at a time.

    An iterator: ``for record in wallet.records(...)`` or ``list(wallet.records(...))``. Its
    `cursor` says where it stands, so a later call can go on from there::

        stream = wallet.records(limit=500)
        page = list(stream)
        rest = wallet.records(cursor=stream.cursor)
    """

    __slots__ = ()

    def __iter__(self) -> RecordStream:
        return self

    def __next__(self) -> UsageRecord:
        if not self._buffer:
            if self._done:
                raise StopIteration
            asked = self._size()
            self._take(self._fetch(self._position, asked), asked)
            if not self._buffer:
                raise StopIteration
        return self._next()


class AsyncRecordStream(_Stream, AsyncIterator[UsageRecord]):
    """`RecordStream` for asyncio: ``async for record in wallet.records(...)``."""

    __slots__ = ()

    def __aiter__(self) -> AsyncRecordStream:
        return self

    async def __anext__(self) -> UsageRecord:
        if not self._buffer:
            if self._done:
                raise StopAsyncIteration
            asked = self._size()
            self._take(await self._fetch(self._position, asked), asked)
            if not self._buffer:
                raise StopAsyncIteration
        return self._next()

    async def to_list(self) -> list[UsageRecord]:
        """Return every record left, as a list."""
        return [record async for record in self]


def page_after(
    ordered: Sequence[UsageRecord], keys: Sequence[Position], position: Position | None, size: int
) -> Sequence[UsageRecord]:
    """Return the `size` records of `ordered` (sorted by `time_order`, whose keys are `keys`)
    that come after `position`."""
    start = 0 if position is None else bisect_right(keys, position)
    return ordered[start : start + size]
