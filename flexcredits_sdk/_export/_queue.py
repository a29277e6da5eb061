"""The caller's side of delivery: a bounded queue of records waiting for the next group commit.

`put` is what a metered call pays: one deque append, and every so often a check of the queue's
length against the overflow policy. Everything else here runs on the committing thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from .._records import UsageRecord
from .._usage import from_columns, to_columns
from ._sender import Status
from ._settings import ExportSettings

__all__ = ["RecordQueue"]

logger = logging.getLogger("flexcredits_sdk")

#: Queued records are moved into blocks of columns this many at a time, on the caller's thread:
#: tuples of strings and numbers that the garbage collector stops scanning. Records waiting as
#: they came would survive young collections, be promoted, and set off full collections of the
#: host process's heap, paid by the caller.
BLOCK = 128

Row = tuple[Any, ...]


class RecordQueue:
    """Records submitted and not yet committed, oldest first, at most ``max_queue`` of them.

    When the queue is over its limit, ``overflow="block"`` waits up to ``block_timeout`` for the
    committing thread to make room, then drops the record; ``"drop_newest"`` drops it at once.
    Every drop is counted in `status` and logged at most once a second.

    Args:
        settings: ``max_queue``, ``max_batch_records``, ``overflow``, ``block_timeout``.
        status: Where drops are counted.
        wake: Wakes the committing thread (a batch's worth waits, or the queue is full).
        clock: Monotonic seconds.
    """

    def __init__(
        self,
        settings: ExportSettings,
        status: Status,
        *,
        wake: Callable[[], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._records: deque[Row] = deque()
        self._blocks: deque[tuple[Row, ...]] = deque()  # older records, as columns
        self._in_blocks = 0
        self._lock = threading.Lock()  # between sealing a block and taking records
        self._space = threading.Event()
        self._status = status
        self._wake = wake
        self._clock = clock
        self._batch = settings.max_batch_records
        self._block_timeout = settings.block_timeout if settings.overflow == "block" else 0.0
        self._retry_every = settings.commit_interval
        self._drop_logged_at = -1e9
        #: Records that left the queue so far: taken for a commit, or dropped.
        self.left = 0
        #: Whether `put` may wait for room (not while the exporter shuts down).
        self.may_block = True
        self.set_limit(settings.max_queue)

    def set_limit(self, limit: int) -> None:
        """Hold at most `limit` records (an exporter without a disk lowers it as its memory
        outbox fills)."""
        self._limit = limit
        self._wake_at = max(1, min(self._batch, limit))
        self._plan()

    # --- the caller's thread ------------------------------------------------------------------

    def put(self, record: UsageRecord) -> None:
        """Queue one record: O(1), no I/O."""
        records = self._records
        records.append(record)
        if len(records) >= self._check_at:
            self._checkpoint()

    def _checkpoint(self) -> None:
        """Do what is due once the queue is this long: seal a block, wake the committing
        thread, apply the overflow policy; then say when to look again."""
        if len(self._records) >= BLOCK:
            self._seal()
        waiting = self.waiting()
        if waiting >= self._wake_at:
            self._wake()
        if waiting > self._limit:
            self._overflow()
        self._plan()

    def _plan(self) -> None:
        """Set the queue length at which `put` calls `_checkpoint` next."""
        queued, in_blocks = len(self._records), self._in_blocks
        due = [BLOCK, self._limit + 1 - in_blocks]
        if self._wake_at - in_blocks > queued:
            due.append(self._wake_at - in_blocks)
        self._check_at = max(1, min(due))

    def _seal(self) -> None:
        """Move the oldest `BLOCK` queued records into a block of columns (see `BLOCK`)."""
        with self._lock:
            records = self._records
            if len(records) >= BLOCK:
                self._blocks.append(to_columns([records.popleft() for _ in range(BLOCK)]))
                self._in_blocks += BLOCK

    def _overflow(self) -> None:
        """Wait for room (``"block"``), then drop the newest record if there still is none."""
        self._wake()
        end = self._clock() + self._block_timeout
        while self.waiting() > self._limit:  # room seen once is enough: other threads' records
            left = end - self._clock()  # may take it again at once
            if left <= 0 or not self.may_block:
                if self._drop_newest():
                    self._dropped()
                return
            self._space.clear()
            self._wake()
            self._space.wait(min(left, self._retry_every))

    def _drop_newest(self) -> bool:
        with self._lock:
            if self._records:
                self._records.pop()
            elif self._blocks:
                rows = from_columns(self._blocks.pop())
                self._in_blocks -= 1
                if len(rows) > 1:
                    self._blocks.append(to_columns(rows[:-1]))
            else:
                return False
            self.left += 1
            return True

    def _dropped(self) -> None:
        status = self._status
        with status.lock:
            status.dropped += 1
            status.last_error = f"{status.dropped} records dropped: the queue and outbox are full"
        now = self._clock()
        if now - self._drop_logged_at >= 1.0:
            self._drop_logged_at = now
            logger.warning("flexcredits delivery: %s", status.last_error)

    # --- the committing thread ----------------------------------------------------------------

    def waiting(self) -> int:
        """Records queued (none missed while a block is being sealed)."""
        with self._lock:
            return len(self._records) + self._in_blocks

    def submitted(self) -> int:
        """Records ever put: a flush waits until `left` reaches what this was when it began."""
        with self._lock:
            return self.left + len(self._records) + self._in_blocks

    def take(self, count: int) -> list[Row]:
        """Remove and return up to `count` of the oldest records."""
        rows: list[Row] = []
        with self._lock:
            blocks = self._blocks
            while blocks and len(rows) < count:
                block = from_columns(blocks.popleft())
                keep = count - len(rows)
                if len(block) > keep:  # split it: the rest stays, still the oldest
                    blocks.appendleft(to_columns(block[keep:]))
                    block = block[:keep]
                self._in_blocks -= len(block)
                rows += block
            records = self._records
            rows += [records.popleft() for _ in range(min(count - len(rows), len(records)))]
            self.left += len(rows)
        return rows

    def made_room(self) -> None:
        """Wake callers waiting for room, and plan the next check."""
        self._plan()
        self._space.set()
