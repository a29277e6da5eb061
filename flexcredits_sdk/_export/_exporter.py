"""The exporter: a background thread that moves records from memory to the outbox and on to
the wallet service, in batches, with retries.

Shaped like OpenTelemetry's batch processor: a daemon thread, a bounded in-memory queue, a
wake-up event, `flush` and `shutdown` with deadlines, an atexit hook, and a fresh lock, queue,
thread and HTTP client in a forked child (the parent's queued records stay the parent's).
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import uuid
import weakref
from collections import deque
from collections.abc import Callable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

from .._records import UsageRecord
from .._usage import from_columns, to_columns
from ._outbox import DeadLetter, OutboxUnavailable, encode
from ._outboxes import Outboxes
from ._sender import Sender, Status
from ._settings import ExportSettings
from ._sqlite import SqliteOutbox
from ._transport import Transport

__all__ = ["Exporter"]

logger = logging.getLogger("flexcredits_sdk")

RejectedCallback = Callable[[DeadLetter], Any]
T = TypeVar("T")


_EXPORTERS: weakref.WeakSet[Exporter] = weakref.WeakSet()
#: Queued records are moved into blocks of columns this many at a time, on the caller's thread:
#: tuples of strings and numbers that the garbage collector stops scanning. Records waiting as
#: they came would survive young collections, be promoted, and set off full collections of the
#: host process's heap, paid by the caller.
_BLOCK = 128


def _take_oldest(queue: deque[T], count: int) -> list[T]:
    """Remove and return the `count` oldest records of `queue` (the caller holds its lock)."""
    return [queue.popleft() for _ in range(count)]


class Exporter:
    """Batches records to a wallet service, through a bounded queue and an outbox.

    Args:
        transport: Sends batches.
        settings: How to batch, store and retry.
        outbox_path: The SQLite outbox file, or ``None`` to keep records in memory only.
        on_rejected: Called with each `DeadLetter`, on an exporter thread.
        sleep: Waits between retries (for tests).
        clock: Monotonic seconds (for tests).
        start: Start the threads now.
    """

    def __init__(
        self,
        transport: Transport,
        settings: ExportSettings | None = None,
        *,
        outbox_path: Path | None,
        on_rejected: RejectedCallback | None = None,
        sleep: Callable[[float], Any] | None = None,
        clock: Callable[[], float] | None = None,
        start: bool = True,
    ) -> None:
        self.settings = settings = settings or ExportSettings()
        self._transport = transport
        self._outbox_path = outbox_path if settings.durability != "memory" else None
        self._sync = settings.durability == "sync"
        self._batch = settings.max_batch_records
        self._commit_interval = settings.commit_interval
        self._max_queue = settings.max_queue
        self._block = settings.overflow == "block"
        self._slice = settings.max_batch_records * 8
        self._on_rejected = on_rejected
        self._user_sleep = sleep
        self._clock = clock or time.monotonic
        self._started = start
        self._setup()
        _EXPORTERS.add(self)

    # --- state, made again in a forked child --------------------------------------------------

    def _setup(self) -> None:
        self._pid = os.getpid()
        self._owner = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self._queue: deque[tuple[Any, ...]] = deque()  # records
        self._blocks: deque[tuple[tuple[Any, ...], ...]] = deque()  # older ones, as columns
        self._in_blocks = 0
        self._left = 0  # records that left the queue: committed, or dropped
        self._flush_targets: dict[int, int] = {}  # flush number -> `_left` it waits for
        self._block_lock = threading.Lock()
        self._status = Status()
        self._commit_lock = threading.Lock()
        self._wake = threading.Event()
        self._space = threading.Event()
        self._cond = threading.Condition()
        self._flush_requested = self._flush_done = self._committed = 0
        self._stopping = False
        self._closed = False
        self._deadline: float | None = None
        self._last_send = self._clock()
        self._last_refresh = self._last_send
        self._drop_logged_at = -1e9
        self._boxes = Outboxes(
            self._outbox_path, owner=self._owner, settings=self.settings, status=self._status
        )
        self._limit = self._max_queue
        self._wake_at = min(self._batch, self._limit)
        self._plan_check()
        self._thread: threading.Thread | None = None
        self._helpers: list[threading.Thread] = []
        self._send_wake = threading.Event()
        self._halt = threading.Event()
        self._inflight = 0
        self._inflight_cond = threading.Condition()
        self._sender = Sender(
            self._transport,
            self._status,
            self.settings,
            on_rejected=self._on_rejected,
            sleep=self._sleep,
            clock=self._clock,
            should_stop=self._should_stop,
        )
        if self._started:
            self.start()

    def start(self) -> None:
        """Start the committing thread and the sending threads (once)."""
        if self._thread is None:
            self._started = True
            self._thread = threading.Thread(target=self._run, name="flexcredits-exporter")
            self._thread.daemon = True
            self._thread.start()
            for number in range(self.settings.senders):
                sender = threading.Thread(target=self._help, name=f"flexcredits-sender-{number}")
                sender.daemon = True
                sender.start()
                self._helpers.append(sender)

    def _after_fork(self) -> None:
        """In a forked child: new lock, queue, thread, client and claim token."""
        if self._closed:
            return
        self._boxes.abandon()
        self._transport.after_fork()
        self._setup()

    def _check_pid(self) -> None:
        if self._pid != os.getpid():
            self._after_fork()

    # --- the caller's side --------------------------------------------------------------------

    @property
    def authorizes(self) -> bool:
        """``False``: the exporter delivers records after their actions ran."""
        return False

    def authorize(self, action: str, credits: int | Decimal, tags: Mapping[str, str]) -> None:
        """Never refuses (see `authorizes`)."""
        return None

    def submit(self, record: UsageRecord, hold: Any = None, /) -> None:
        """Queue one record: O(1), no I/O (with ``durability="sync"``: on disk on return)."""
        if self._sync:
            self._submit_sync(record)
            return
        queue = self._queue
        queue.append(record)
        if len(queue) >= self._check_at:
            self._checkpoint()

    def _checkpoint(self) -> None:
        """Do what is due once the queue is this long: seal a block, wake the committing
        thread, apply the overflow policy; then say when to look again."""
        if len(self._queue) >= _BLOCK:
            self._seal()
        waiting = self._waiting()
        if waiting >= self._wake_at and not self._wake.is_set():
            self._wake.set()
        if waiting > self._limit:
            self._queue_full()
        self._plan_check()

    def _plan_check(self) -> None:
        """Set the queue length at which `submit` calls `_checkpoint` next."""
        queued, in_blocks = len(self._queue), self._in_blocks
        due = [_BLOCK, self._limit + 1 - in_blocks]
        if self._wake_at - in_blocks > queued:
            due.append(self._wake_at - in_blocks)
        self._check_at = max(1, min(due))

    def _seal(self) -> None:
        """Move the oldest `_BLOCK` queued records into a block of columns (see `_BLOCK`)."""
        with self._block_lock:
            queue = self._queue
            if len(queue) >= _BLOCK:
                self._blocks.append(to_columns(_take_oldest(queue, _BLOCK)))
                self._in_blocks += _BLOCK

    def _waiting(self) -> int:
        """Records queued in memory, not yet committed (none missed while a block is sealed)."""
        with self._block_lock:
            return len(self._queue) + self._in_blocks

    def _take(self, count: int) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        """Remove up to `count` of the oldest queued records; return them as blocks of columns
        and as records, the blocks' being older."""
        blocks: list[tuple[Any, ...]] = []
        taken = 0
        with self._block_lock:
            waiting = self._blocks
            while waiting and taken < count:
                block = waiting.popleft()
                size = len(block[0])
                if taken + size > count:  # split it: the rest stays, still the oldest
                    keep = count - taken
                    rows = from_columns(block)
                    waiting.appendleft(to_columns(rows[keep:]))
                    block = to_columns(rows[:keep])
                    size = keep
                self._in_blocks -= size
                blocks.append(block)
                taken += size
            queue = self._queue
            records = _take_oldest(queue, min(count - taken, len(queue)))
            self._left += taken + len(records)
        return blocks, records

    def _drop_newest(self) -> bool:
        """Drop the newest queued record; return whether there was one."""
        with self._block_lock:
            if self._queue:
                self._queue.pop()
                self._left += 1
                return True
            if not self._blocks:
                return False
            self._left += 1
            rows = from_columns(self._blocks.pop())
            self._in_blocks -= 1
            if len(rows) > 1:
                self._blocks.append(to_columns(rows[:-1]))
            return True

    def _queue_full(self) -> None:
        if not self._wake.is_set():
            self._wake.set()
        if self._waiting() <= self._limit:
            return
        self._check_pid()
        if self._block and not self._stopping:
            end = self._clock() + self.settings.block_timeout
            while self._waiting() > self._limit:  # room seen once is enough: other threads'
                left = end - self._clock()  # records may take it again at once
                if left <= 0:
                    break
                self._space.clear()
                self._wake.set()
                self._space.wait(min(left, self._commit_interval))
            else:
                return
        if self._drop_newest():
            self._drop()

    def _drop(self) -> None:
        status = self._status
        with status.lock:
            status.dropped += 1
            dropped = status.dropped
        self._status.last_error = f"{dropped} records dropped: the queue and outbox are full"
        now = self._clock()
        if now - self._drop_logged_at >= 1.0:
            self._drop_logged_at = now
            logger.warning("flexcredits delivery: %s", self._status.last_error)

    def _submit_sync(self, record: UsageRecord) -> None:
        self._check_pid()
        boxes = self._boxes
        disk = boxes.disk
        if disk is not None and not self._stopping and boxes.room() > 0:
            try:
                disk.add([record[0]], [encode(record)])
            except OutboxUnavailable as exc:
                boxes.failed(exc)
            else:
                if disk.count() >= self._batch:
                    self._wake.set()
                return
        self._queue.append(record)
        self._queue_full()

    def flush(self, timeout: float | None = None) -> bool:
        """Deliver every record submitted so far; return whether all were acknowledged in time."""
        self._check_pid()
        if self._thread is None or not self._thread.is_alive():
            return self._idle_state()
        with self._cond:
            self._flush_requested += 1
            wanted = self._flush_requested
            with self._block_lock:  # what must leave the queue before this flush is committed
                self._flush_targets[wanted] = self._left + len(self._queue) + self._in_blocks
        self._wake.set()
        with self._cond:
            return self._cond.wait_for(lambda: self._flush_done >= wanted, timeout)

    def shutdown(self, timeout: float | None = None) -> bool:
        """Deliver what is left within `timeout` seconds, then stop; return whether all went.

        Records not delivered in time stay in the outbox on disk for the next process (those
        held in memory only are lost, and logged). Without a timeout, the settings'
        ``exit_timeout`` applies: a shutdown never hangs on a wallet service that is down.
        """
        self._check_pid()
        if self._closed:
            return self._idle_state()
        if timeout is None:
            timeout = self.settings.exit_timeout
        first = not self._stopping
        if first:
            self._deadline = self._clock() + timeout
            self._stopping = True
            self._send_wake.set()
            self._halt.set()
            self._wake.set()
        thread = self._thread
        end = self._clock() + timeout
        if thread is None and first:
            self._final()
        for worker in [thread, *self._helpers]:
            if worker is not None and worker.is_alive():
                worker.join(max(0.0, end - self._clock()))
        done = self._idle_state()
        if any(worker.is_alive() for worker in [*self._helpers, thread] if worker is not None):
            logger.warning("flexcredits exporter did not finish within %ss", timeout)
            return False
        self._closed = True
        left = self._waiting() + self._boxes.memory.count()
        if left:
            logger.warning("flexcredits delivery: %d records held in memory were not sent", left)
        self._boxes.close()
        self._transport.close()
        return done

    def _idle_state(self) -> bool:
        return not self._waiting() and not self._boxes.pending()

    def stats(self) -> dict[str, Any]:
        """Return the delivery figures `Meter.stats` merges into `MeterStats`."""
        self._check_pid()
        status = self._status
        return {
            "queued": self._waiting() + self._boxes.memory.count(),
            "in_outbox": self._boxes.on_disk(),
            "sent": status.sent,
            "duplicates": status.duplicates,
            "rejected": status.rejected,
            "dropped": status.dropped,
            "last_error": self._status.last_error,
        }

    def dead_letters(self) -> list[DeadLetter]:
        """Return the records the service rejected, with its reasons."""
        return self._boxes.dead_letters()

    @property
    def outbox(self) -> SqliteOutbox | None:
        """The outbox file written to, if any."""
        return self._boxes.disk

    @property
    def quarantined(self) -> Path | None:
        """Where a corrupt outbox file was moved at start, if one was."""
        return self._boxes.quarantined

    # --- the thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        """The committing thread: a group commit every `commit_interval`, never blocked by I/O
        to the service, so a killed process loses at most one commit window."""
        while not self._stopping:
            self._wake.wait(self._commit_interval)
            self._wake.clear()
            self._guarded(self._cycle)
        self._guarded(self._final)

    def _guarded(self, step: Callable[..., object], **kwargs: Any) -> None:
        try:
            step(**kwargs)
        except Exception as exc:  # never let the thread die: say so and carry on
            self._status.last_error = f"exporter error: {type(exc).__name__}: {exc}"
            logger.exception("flexcredits exporter step failed")

    def _final(self) -> None:
        """Commit everything and deliver what the deadline allows, on this thread."""
        wanted = self._flush_requested
        self._commit(everything=True)
        if self._deliver():
            self._flushed(wanted)
        with self._cond:
            self._cond.notify_all()

    def _cycle(self) -> None:
        wanted = self._flush_requested
        # A flush waits for a commit another thread is making: its records must all be in the
        # outbox before the flush is marked committed.
        self._commit(wait=wanted > self._committed)
        # A flush counts as committed once every record submitted before it left the queue (a
        # full outbox lets records in only as the senders make room).
        if self._left >= self._flush_targets.get(wanted, 0):
            self._committed = wanted
            with self._cond:
                for number in [n for n in self._flush_targets if n <= wanted]:
                    del self._flush_targets[number]
        if wanted > self._flush_done or self._due():
            self._last_send = self._clock()
            self._send_wake.set()

    def _flushed(self, wanted: int) -> None:
        with self._cond:
            self._flush_done = max(self._flush_done, wanted)
            self._cond.notify_all()

    def _due(self) -> bool:
        now = self._clock()
        if now - self._last_refresh >= 5.0:
            self._last_refresh = now
            self._boxes.refresh()
        pending = self._boxes.pending()
        return pending >= self._batch or (
            pending > 0 and now - self._last_send >= self.settings.linger
        )

    def _commit(self, *, everything: bool = False, wait: bool = False) -> None:
        """Move queued records to the outbox in one group commit (one transaction per slice);
        unless `everything` or `wait`, leave it to a thread that is committing right now."""
        if not self._commit_lock.acquire(blocking=everything or wait):
            return
        try:
            boxes = self._boxes
            while self._waiting():
                take = self._slice if everything else min(self._slice, boxes.room())
                blocks, records = self._take(take) if take > 0 else ([], [])
                if not (blocks or records):
                    break
                ids: list[str] = []
                for block in blocks:
                    ids += block[0]
                ids += [record[0] for record in records]
                bodies = [encode(row) for block in blocks for row in from_columns(block)]
                bodies += map(encode, records)
                try:
                    boxes.add(ids, bodies)
                except UnicodeEncodeError:
                    self._add_each(ids, bodies)
            if boxes.disk is None:
                self._limit = max(0, self._max_queue - boxes.memory.count())
                self._wake_at = max(1, min(self._batch, self._limit))
            self._plan_check()
        finally:
            self._commit_lock.release()
            self._space.set()

    def _add_each(self, ids: list[str], bodies: list[str]) -> None:
        """Commit a slice the outbox refused for what some record holds: the others go on, and
        each record no store can hold (text with a lone surrogate) becomes a dead letter."""
        good_ids: list[str] = []
        good_bodies: list[str] = []
        letters: list[tuple[str, str, str]] = []
        for record_id, body in zip(ids, bodies, strict=True):
            try:
                record_id.encode("utf-8")
                body.encode("utf-8")
            except UnicodeEncodeError as exc:
                bad = exc.object[exc.start : exc.end]
                reason = f"holds text UTF-8 cannot encode ({exc.reason}): {bad!r}"
                letters.append((_storable(record_id), _storable(body), reason))
            else:
                good_ids.append(record_id)
                good_bodies.append(body)
        if good_ids:
            self._boxes.add(good_ids, good_bodies)
        if letters:
            (self._boxes.disk or self._boxes.memory).dead_letter(letters)
            self._status.rejected += len(letters)
            self._sender.reject(letters, "could not store")

    def _deliver(self) -> bool:
        """Send every waiting record; return whether all settled (none left in flight)."""
        if not self._send_waiting():
            return False
        with self._inflight_cond:  # batches other threads still have in flight
            while self._inflight and not self._should_stop():
                self._inflight_cond.wait(self._commit_interval)
            return not self._inflight

    def _send_waiting(self) -> bool:
        """Claim and send batches until none is left; return False if stopped early."""
        for source in self._boxes.sources():
            upto = source.last_seq()
            while True:
                with self._inflight_cond:
                    self._inflight += 1
                try:
                    chunks = source.claim(self._batch, self._sender.max_bytes, upto)
                    if not chunks:
                        break
                    if not self._sender.send(source, chunks):
                        return False
                finally:
                    with self._inflight_cond:
                        self._inflight -= 1
                        self._inflight_cond.notify_all()
                self._commit()
        return True

    def _help(self) -> None:
        """A sending thread: delivers what is committed whenever the committing thread says."""
        while not self._stopping:
            self._send_wake.wait(self._commit_interval)
            if self._send_wake.is_set() and not self._stopping:
                self._send_wake.clear()
                wanted = self._committed
                try:
                    if self._deliver():
                        self._flushed(wanted)
                except Exception as exc:  # never let the thread die: say so and carry on
                    self._status.last_error = f"exporter error: {type(exc).__name__}: {exc}"
                    logger.exception("flexcredits exporter step failed")

    def _should_stop(self) -> bool:
        if self._pid != os.getpid():
            return True
        return self._deadline is not None and self._clock() >= self._deadline

    def _sleep(self, seconds: float) -> None:
        """Wait before a retry; a shutdown cuts the wait short at its deadline."""
        if self._user_sleep is not None:
            self._user_sleep(seconds)
            return
        end = self._clock() + seconds
        while True:
            now = self._clock()
            left = end - now
            if self._deadline is not None:
                left = min(left, self._deadline - now)
            if left <= 0:
                return
            self._halt.wait(left)
            self._halt.clear()


def _after_fork_in_child() -> None:
    for exporter in list(_EXPORTERS):
        exporter._after_fork()


def _shutdown_all() -> None:
    for exporter in list(_EXPORTERS):
        try:
            exporter.shutdown(exporter.settings.exit_timeout)
        except Exception:  # pragma: no cover - never fail interpreter exit
            logger.exception("flexcredits exporter shutdown at exit failed")


if hasattr(os, "register_at_fork"):  # pragma: no branch
    os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_shutdown_all)


def _storable(text: str) -> str:
    """`text` with what UTF-8 cannot encode written as escapes."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
