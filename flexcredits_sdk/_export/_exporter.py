"""The exporter: moves records from the caller's thread to the outbox and on to the wallet
service, in batches, with retries.

Shaped like OpenTelemetry's batch processor, in three parts that share no lock:

* a `RecordQueue` on the caller's side (bounded, with the overflow policy);
* a `Committer` on its own thread, which moves queued records to the outbox in group commits
  and never waits on the network;
* `Senders`, threads that claim committed records and send them (``senders`` batches in
  flight).

Fork and exit are handled in `flexcredits_sdk._process`: a forked child starts afresh with its
own queue, threads, HTTP client and claim token (the parent's queued records stay the
parent's).
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

from .. import _process
from .._records import UsageRecord
from ._committer import Committer
from ._outbox import DeadLetter, OutboxUnavailable, encode
from ._outboxes import Outboxes
from ._queue import RecordQueue
from ._sender import Status
from ._senders import Senders
from ._settings import ExportSettings
from ._sqlite import SqliteOutbox
from ._transport import Transport

__all__ = ["Exporter"]

logger = logging.getLogger("flexcredits_sdk")

RejectedCallback = Callable[[DeadLetter], Any]


class Exporter:
    """Batches records to a wallet service, through a bounded queue and an outbox.

    Args:
        transport: Sends batches.
        settings: How to batch, store and retry.
        outbox_path: The SQLite outbox file, or ``None`` to keep records in memory only.
        earlier_outboxes: Outbox files of earlier versions, delivered from too if they exist.
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
        earlier_outboxes: tuple[Path, ...] = (),
        on_rejected: RejectedCallback | None = None,
        sleep: Callable[[float], Any] | None = None,
        clock: Callable[[], float] | None = None,
        start: bool = True,
    ) -> None:
        self.settings = settings = settings or ExportSettings()
        self._transport = transport
        self._outbox_path = outbox_path if settings.durability != "memory" else None
        self._earlier = earlier_outboxes
        self._sync = settings.durability == "sync"
        self._on_rejected = on_rejected
        self._user_sleep = sleep
        self._clock = clock or time.monotonic
        self._started = start
        self._setup()
        _process.at_fork(self, _process.EXPORTERS)
        _process.at_exit(self)

    def _setup(self) -> None:
        """Make the parts (again, in a forked child) and start their threads if asked."""
        settings = self.settings
        self._pid = os.getpid()
        self._status = Status()
        self._stopping = self._closed = False
        self._boxes = Outboxes(
            self._outbox_path,
            owner=f"{self._pid}-{uuid.uuid4().hex[:12]}",
            key=self._transport.key_id,
            earlier=self._earlier,
            settings=settings,
            status=self._status,
        )
        self._senders = Senders(
            self._boxes,
            self._transport,
            settings,
            self._status,
            on_rejected=self._on_rejected,
            sleep=self._user_sleep,
            clock=self._clock,
            after_batch=self._refill,
        )
        self._queue = RecordQueue(
            settings, self._status, wake=self._wake_committer, clock=self._clock
        )
        self._committer = Committer(
            self._queue,
            self._boxes,
            self._senders.sender,
            self._status,
            slice_records=settings.max_batch_records * 8,
            max_queue=settings.max_queue,
        )
        self._threads: list[threading.Thread] = []
        self._ending = threading.Lock()  # between a late shutdown and its last thread's end
        self._close_when_done = False
        self._held: list[threading.Lock] = []
        if self._started:
            self.start()

    def _wake_committer(self) -> None:
        self._committer.wake()

    def _refill(self) -> None:
        """After a batch left a capped outbox: commit what waits, if no one else is."""
        self._committer.commit()

    def start(self) -> None:
        """Start the committing thread and the sending threads (once)."""
        if self._threads:
            return
        self._started = True
        work = [(self._run, "flexcredits-exporter")] + [
            (self._senders.run, f"flexcredits-sender-{number}")
            for number in range(self.settings.senders)
        ]
        self._threads = [
            threading.Thread(target=self._thread, args=(target,), name=name)
            for target, name in work
        ]
        for thread in self._threads:
            thread.daemon = True
            thread.start()

    @property
    def exit_timeout(self) -> float:
        """Seconds a shutdown at exit may take."""
        return self.settings.exit_timeout

    # --- fork (called by `flexcredits_sdk._process`) ----------------------------------------------

    def before_fork(self) -> None:
        """Wait until no thread is inside an outbox file, and keep it so until the fork is
        done: the child must not inherit an open transaction."""
        if not self._closed:
            self._held = self._boxes.hold()

    def after_fork_in_parent(self) -> None:
        """Let the threads use the outbox files again."""
        held, self._held = self._held, []
        for lock in held:
            lock.release()

    def after_fork_in_child(self) -> None:
        """Start afresh: new queue, threads, outbox connection, claim token and HTTP client.
        The parent's records stay the parent's."""
        self.after_fork_in_parent()
        if self._closed:
            return
        self._boxes.abandon()
        self._transport.after_fork()
        self._setup()

    def _check_pid(self) -> None:
        """For a fork that ran no fork hooks (a process copied by other means)."""
        if self._pid != os.getpid():
            self.after_fork_in_child()

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
        else:
            self._queue.put(record)

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
                if disk.count() >= self.settings.max_batch_records:
                    self._senders.wake()
                return
        self._queue.put(record)

    def flush(self, timeout: float | None = None, *, until_blocked: bool = False) -> bool:
        """Deliver every record submitted so far; return whether all were acknowledged in time.

        With `until_blocked` (a question to the wallet service, which must not wait the whole
        timeout for a service that refuses the key or cannot be reached), return ``False`` as
        soon as delivery is blocked.
        """
        self._check_pid()
        if not self._alive():
            return self._idle()
        end = None if timeout is None else self._clock() + timeout
        if not self._committer.wait_committed(self._queue.submitted(), timeout, self._alive):
            return False
        ticket = self._senders.ask()
        left = None if end is None else max(0.0, end - self._clock())
        return self._senders.wait(ticket, left, until_blocked=until_blocked)

    def shutdown(self, timeout: float | None = None) -> bool:
        """Deliver what is left within `timeout` seconds, then stop; return whether all went.

        Records not delivered in time stay in the outbox on disk for the next process (those
        held in memory only are lost, and logged). Without a timeout, the settings'
        ``exit_timeout`` applies: a shutdown never hangs on a wallet service that is down.
        """
        self._check_pid()
        if self._closed:
            return self._idle()
        if timeout is None:
            timeout = self.settings.exit_timeout
        end = self._clock() + timeout
        if not self._stopping:
            self._stopping = True
            self._queue.may_block = False
            # retries end a little before the deadline, so the threads are gone by then
            self._senders.stop(end - min(0.5, timeout / 10))
            self._committer.wake()
            if not self._threads:
                self._final()
        for thread in self._threads:
            thread.join(max(0.0, end - self._clock()))
        with self._ending:
            if any(thread.is_alive() for thread in self._threads):
                logger.warning("flexcredits exporter did not finish within %ss", timeout)
                self._close_when_done = True  # the last thread to end closes the files
                return False
        done = self._idle()
        self._close()
        return done

    def _thread(self, target: Callable[[], None]) -> None:
        """Run one of the exporter's threads; the last to end after a late shutdown closes."""
        try:
            target()
        finally:
            with self._ending:
                others = [t for t in self._threads if t is not threading.current_thread()]
                last = not any(thread.is_alive() for thread in others)
                if last and self._close_when_done:
                    self._close()

    def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        left = self._queue.waiting() + self._boxes.memory.count()
        if left:
            logger.warning("flexcredits delivery: %d records held in memory were not sent", left)
        self._boxes.close()
        self._transport.close()

    def _alive(self) -> bool:
        return bool(self._threads) and self._threads[0].is_alive()

    def _idle(self) -> bool:
        return not self._queue.waiting() and not self._boxes.pending()

    def stats(self) -> dict[str, Any]:
        """Return the delivery figures `Meter.stats` merges into `MeterStats`."""
        self._check_pid()
        status = self._status
        return {
            "queued": self._queue.waiting() + self._boxes.memory.count(),
            "in_outbox": self._boxes.on_disk(),
            "sent": status.sent,
            "duplicates": status.duplicates,
            "rejected": status.rejected,
            "dropped": status.dropped,
            "last_error": status.last_error,
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

    # --- the committing thread ----------------------------------------------------------------

    def _run(self) -> None:
        """A group commit every `commit_interval` (sooner when woken); then, if a batch's
        worth waits, a word to the senders."""
        committer, senders = self._committer, self._senders
        while not self._stopping:
            committer.wait(self.settings.commit_interval)
            try:
                committer.commit()
                if self._boxes.pending() >= self.settings.max_batch_records:
                    senders.wake()
            except Exception as exc:  # never let the thread die: say so and carry on
                self._status.last_error = f"exporter error: {type(exc).__name__}: {exc}"
                logger.exception("flexcredits exporter step failed")
        self._final()

    def _final(self) -> None:
        """Commit everything and deliver what the deadline allows, on this thread."""
        try:
            self._committer.commit(everything=True)
            self._boxes.refresh()
            self._senders.round()
        except Exception as exc:
            self._status.last_error = f"exporter error: {type(exc).__name__}: {exc}"
            logger.exception("flexcredits exporter shutdown step failed")
