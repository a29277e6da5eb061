"""The committing thread: moves queued records to the outbox in group commits.

It never waits on the network, so a killed process loses at most one commit window of records
(``durability="batch"``), however long the wallet service takes to answer.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from ._outbox import encode
from ._outboxes import Outboxes
from ._queue import RecordQueue
from ._sender import Sender, Status

__all__ = ["Committer"]


class Committer:
    """Commits what waits in `queue` to `boxes`, one transaction per slice of records.

    With a disk, at most ``max_outbox`` records are committed (the rest wait in the queue for
    the senders to make room); without one, the memory outbox and the queue share
    ``max_queue``.

    Args:
        queue: Where records wait.
        boxes: Where they go.
        sender: Says when a record becomes a dead letter.
        status: Delivery figures.
        slice_records: Most records per transaction.
        max_queue: The in-memory cap.
    """

    def __init__(
        self,
        queue: RecordQueue,
        boxes: Outboxes,
        sender: Sender,
        status: Status,
        *,
        slice_records: int,
        max_queue: int,
    ) -> None:
        self._queue = queue
        self._boxes = boxes
        self._sender = sender
        self._status = status
        self._slice = slice_records
        self._max_queue = max_queue
        self._event = threading.Event()
        self._lock = threading.Lock()  # one group commit at a time
        self._progress = threading.Condition()  # notified after each commit

    def wake(self) -> None:
        """Ask for a commit now rather than at the end of the interval."""
        if not self._event.is_set():
            self._event.set()

    def wait(self, seconds: float) -> None:
        """Sleep until woken or for `seconds` (the committing thread, between commits)."""
        self._event.wait(seconds)
        self._event.clear()

    def commit(self, *, everything: bool = False, wait: bool = False) -> None:
        """Move queued records to the outbox; unless `everything` or `wait`, leave it to a
        thread that is committing right now. `everything` ignores the outbox's cap."""
        if not self._lock.acquire(blocking=everything or wait):
            return
        try:
            boxes, queue = self._boxes, self._queue
            left = queue.waiting()  # what waits now: records that come meanwhile wait for the
            while left > 0:  # next commit, so a flush never waits behind a stream of them
                take = (
                    min(self._slice, left) if everything else min(self._slice, left, boxes.room())
                )
                rows = queue.take(take) if take > 0 else []
                if not rows:
                    break
                left = queue.waiting() if everything else left - len(rows)
                ids = [row[0] for row in rows]
                bodies = list(map(encode, rows))
                try:
                    boxes.add(ids, bodies)
                except UnicodeEncodeError:
                    self._add_each(ids, bodies)
            if boxes.disk is None:
                queue.set_limit(max(0, self._max_queue - boxes.memory.count()))
        finally:
            self._lock.release()
            self._queue.made_room()
            with self._progress:
                self._progress.notify_all()

    def wait_committed(
        self, submitted: int, timeout: float | None, alive: Callable[[], bool]
    ) -> bool:
        """Wait until the first `submitted` records are committed (or dropped); return whether
        they were before `timeout` (or while the thread was `alive`).

        Records leave the queue when a commit takes them, and are in the outbox when that
        commit ends: both happen under the commit lock, so they are committed once they left
        and no commit is under way.
        """

        def committed() -> bool:
            return self._queue.left >= submitted and not self._lock.locked()

        self.wake()
        with self._progress:
            return self._progress.wait_for(lambda: committed() or not alive(), timeout) and (
                committed()
            )

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
            with self._status.lock:
                self._status.rejected += len(letters)
            self._sender.reject(letters, "could not store")


def _storable(text: str) -> str:
    """`text` with what UTF-8 cannot encode written as escapes."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
