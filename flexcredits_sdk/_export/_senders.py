"""The sending threads: claim committed records from the outboxes and send them in batches."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from ._outbox import Outbox
from ._outboxes import Outboxes
from ._sender import Sender, Status
from ._settings import ExportSettings
from ._transport import Transport

__all__ = ["Senders"]

logger = logging.getLogger("flexcredits_sdk")

#: Seconds between looks at whether delivery is blocked, while a flush waits.
_BLOCKED_POLL = 0.05
#: Seconds between recounts of the outbox files' records (other processes add to them).
_REFRESH_EVERY = 5.0


class Senders:
    """Deliver what is committed, with ``senders`` batches in flight at once.

    A thread starts a *round* when woken (a batch's worth is committed, or a flush asks) or
    when records waited ``linger`` seconds: it claims and sends batches until none is left,
    then waits for the batches other threads have in flight. A round that settles everything
    it found answers every flush that asked for delivery before it began.

    Args:
        boxes: Where committed records wait.
        transport: Says whether this process may send (see `Transport.refusal`).
        settings: Batch size, linger, tick, retry settings.
        status: Delivery figures.
        on_rejected: Called with each dead letter.
        sleep: Replaces the wait between retries (for tests).
        clock: Monotonic seconds.
        after_batch: Called after each batch (the committer refills a capped outbox).
    """

    def __init__(
        self,
        boxes: Outboxes,
        transport: Transport,
        settings: ExportSettings,
        status: Status,
        *,
        on_rejected: Callable[..., Any] | None,
        sleep: Callable[[float], Any] | None,
        clock: Callable[[], float],
        after_batch: Callable[[], None],
    ) -> None:
        self._boxes = boxes
        self._transport = transport
        self._settings = settings
        self._status = status
        self._clock = clock
        self._after_batch = after_batch
        self._user_sleep = sleep
        self._wake = threading.Event()
        self._halt = threading.Event()  # cuts retry waits short at a shutdown
        self._cond = threading.Condition()  # batches in flight; rounds asked for and done
        self._inflight = 0
        self._asked = self._answered = 0
        self._stopping = False
        self._pid = os.getpid()
        self.deadline: float | None = None
        self._last_round = self._last_refresh = clock()
        self.sender = Sender(
            transport,
            status,
            settings,
            on_rejected=on_rejected,
            on_key=self._on_key,
            sleep=self._sleep,
            clock=clock,
            should_stop=self.should_stop,
        )

    def _on_key(self, accepted: bool) -> None:
        for disk in self._boxes.disks():
            disk.key_refused(not accepted)

    # --- asked by other threads ---------------------------------------------------------------

    def wake(self) -> None:
        """Start a round now."""
        self._wake.set()

    def ask(self) -> int:
        """Ask for a round that begins after this call; return the ticket to `wait` for."""
        with self._cond:
            self._asked += 1
            ticket = self._asked
        self._status.blocked = None  # a retry waiting for its turn is tried at once
        self._halt.set()
        self._wake.set()
        return ticket

    def wait(self, ticket: int, timeout: float | None, *, until_blocked: bool = False) -> bool:
        """Wait until a round asked for with `ticket` (or later) delivered everything; with
        `until_blocked`, stop waiting (False) as soon as delivery is blocked (see
        `Status.blocked`)."""
        if not until_blocked:
            with self._cond:
                return self._cond.wait_for(lambda: self._answered >= ticket, timeout)
        end = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._answered < ticket:
                if self._status.blocked is not None:
                    return False
                left = _BLOCKED_POLL if end is None else min(_BLOCKED_POLL, end - time.monotonic())
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def stop(self, deadline: float) -> None:
        """Stop the threads; retries end at `deadline` (monotonic seconds)."""
        self.deadline = deadline
        self._stopping = True
        self._halt.set()
        self._wake.set()

    def should_stop(self) -> bool:
        """Whether retrying must end: the deadline passed, or this is a forked child of the
        process that made these threads."""
        if self._pid != os.getpid():
            return True
        return self.deadline is not None and (
            self._clock() >= self.deadline or self._status.blocked is not None
        )

    # --- the sending threads ------------------------------------------------------------------

    def run(self) -> None:
        """A sending thread: a round whenever woken or due, until stopped."""
        tick = self._settings.commit_interval
        while not self._stopping:
            woken = self._wake.wait(tick)
            if self._stopping:
                break
            if woken or self._due():
                self._wake.clear()
                try:
                    self.round()
                except Exception as exc:  # never let the thread die: say so and carry on
                    self._status.last_error = f"exporter error: {type(exc).__name__}: {exc}"
                    logger.exception("flexcredits exporter step failed")

    def round(self) -> bool:
        """Send every committed record; return whether all settled (none left in flight), and
        if so answer the flushes that asked before the round began."""
        with self._cond:
            ticket = self._asked
        self._last_round = self._clock()
        sent = self._send_all()
        if sent is None:
            return False
        with self._cond:  # batches other threads still have in flight
            while self._inflight and not self.should_stop():
                self._cond.wait(self._settings.commit_interval)
            if self._inflight:
                return False
        if any(source.left_upto(upto) for source, upto in sent):
            return False  # another process has them in flight, or its claim has yet to expire
        with self._cond:
            self._answered = max(self._answered, ticket)
            self._cond.notify_all()
        return True

    def _due(self) -> bool:
        now = self._clock()
        if now - self._last_refresh >= _REFRESH_EVERY:
            self._last_refresh = now
            self._boxes.refresh()
        pending = self._boxes.pending()
        return pending >= self._settings.max_batch_records or (
            pending > 0 and now - self._last_round >= self._settings.linger
        )

    def _send_all(self) -> list[tuple[Outbox, int]] | None:
        """Claim and send batches until none is left; return each outbox with the last chunk
        it was sent up to, or ``None`` if stopped early or if this process may not send."""
        refusal = self._transport.refusal
        if refusal is not None:
            self._status.last_error = refusal
            return None
        sent: list[tuple[Outbox, int]] = []
        for source in self._boxes.sources():
            upto = source.last_seq()
            sent.append((source, upto))
            while True:
                with self._cond:
                    self._inflight += 1
                try:
                    settings = self._settings
                    chunks = source.claim(settings.max_batch_records, self.sender.max_bytes, upto)
                    if not chunks:
                        break
                    if not self.sender.send(source, chunks):
                        return None
                finally:
                    with self._cond:
                        self._inflight -= 1
                        self._cond.notify_all()
                self._after_batch()
        return sent

    def _sleep(self, seconds: float) -> None:
        """Wait before a retry; a shutdown cuts the wait short at its deadline."""
        if self._user_sleep is not None:
            self._user_sleep(seconds)
            return
        end = self._clock() + seconds
        while True:
            if self.should_stop():
                return
            now = self._clock()
            left = end - now
            if self.deadline is not None:
                left = min(left, self.deadline - now)
            if left <= 0:
                return
            if self._halt.wait(left):
                self._halt.clear()
                if not self._stopping:
                    return  # a flush asked: try again now
