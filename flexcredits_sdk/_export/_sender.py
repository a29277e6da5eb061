"""Sending one batch: retries with tenacity, and settling what the service answered."""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Callable
from typing import Any

import tenacity

from ._outbox import Chunk, DeadLetter, Outbox, body_size, chunked
from ._settings import ExportSettings
from ._transport import BatchTooLarge, DeliveryRetry, IngestOutcome, Transport

__all__ = ["MAX_RETRY_AFTER", "Sender", "Status"]

logger = logging.getLogger("flexcredits_sdk")

#: Retry-After is honoured up to this many seconds.
MAX_RETRY_AFTER = 300.0


class Status:
    """Delivery figures, shared by the exporter and its sending threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sent = self.duplicates = self.rejected = self.dropped = 0
        self.last_error: str | None = None
        self.failing = False
        #: Why delivery cannot go on now, or ``None``: the service refused the API key (401,
        #: 403) or no connection could be made. A flush stops waiting, and a shutdown stops
        #: retrying, while it is set; the next answer of the service clears it.
        self.blocked: str | None = None
        self.stop_said = False  # whether a stop without waiting was logged


class Sender:
    """Sends claimed chunks until the service settles every record in them.

    Connection errors, timeouts, 408, 429, 5xx and malformed answers are retried with
    exponential backoff and full jitter (Retry-After honoured); 401 and 403 wait
    `pause_interval` between attempts. Retries reuse the records' ids and the batch's key.
    A batch refused as too large (413) is split in halves until each part is accepted, and
    later batches are kept to the size that went through; a record refused even alone
    becomes a dead letter.

    Args:
        transport: Sends batches.
        status: Where the figures go.
        settings: Backoff, pause and lease durations.
        on_rejected: Called with each `DeadLetter`.
        on_key: Called with whether the service accepts the API key (after each answer, and
            after each 401).
        sleep: Waits between attempts.
        clock: Monotonic seconds.
        should_stop: Whether to give up retrying (a shutdown deadline passed).
    """

    def __init__(
        self,
        transport: Transport,
        status: Status,
        settings: ExportSettings,
        *,
        on_rejected: Callable[[DeadLetter], Any] | None,
        on_key: Callable[[bool], None] = lambda accepted: None,
        sleep: Callable[[float], None],
        clock: Callable[[], float],
        should_stop: Callable[[], bool],
    ) -> None:
        self._transport = transport
        self._status = status
        self._jitter = tenacity.wait_random_exponential(
            multiplier=settings.initial_backoff, max=settings.max_backoff
        )
        self._pause_interval = settings.pause_interval
        self._lease = settings.claim_ttl
        self._on_rejected = on_rejected
        self._on_key = on_key
        self._sleep = sleep
        self._clock = clock
        self._should_stop = should_stop
        self._renewed: dict[str, float] = {}
        #: The most JSON bytes to claim for one batch: lowered when a batch is refused as
        #: too large, so the following ones go through the first time.
        self.max_bytes = settings.max_batch_bytes

    def send(self, source: Outbox, chunks: list[Chunk]) -> bool:
        """Send `chunks` (claimed from `source`) until settled; False if told to stop first."""
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(DeliveryRetry),
            wait=self._wait,
            stop=lambda state: self._should_stop(),
            sleep=self._sleep,
            before_sleep=self._note_failure,
            reraise=True,
        )
        status = self._status
        while chunks:
            batch_id = uuid.uuid4().hex
            try:
                outcome: IngestOutcome = retrying(self._attempt, source, chunks, batch_id)
            except DeliveryRetry as exc:
                if exc.unauthorized:
                    self._on_key(False)
                status.last_error = exc.reason
                source.release(chunks)
                if status.blocked is not None and not status.stop_said:
                    status.stop_said = True
                    logger.warning(
                        "flexcredits delivery stopped without waiting (%s): undelivered records "
                        "stay in the outbox for the next process",
                        exc.reason,
                    )
                return False
            finally:
                self._renewed.pop(batch_id, None)
            self._on_key(True)
            if status.failing:
                status.failing = False
                logger.info("flexcredits delivery resumed")
            with status.lock:
                status.sent += outcome.accepted
                status.duplicates += outcome.duplicates
                status.rejected += len(outcome.rejected)
            chunks = self._settle(source, chunks, outcome)
        return True

    def _attempt(self, source: Outbox, chunks: list[Chunk], batch_id: str) -> IngestOutcome:
        now = self._clock()
        if now - self._renewed.get(batch_id, now) > self._lease / 3:
            source.renew(chunks)  # a long retry: keep the claim
            self._renewed[batch_id] = now
        self._renewed.setdefault(batch_id, now)
        ids = [record_id for chunk in chunks for record_id in chunk.ids]
        bodies = [body for chunk in chunks for body in chunk.bodies]
        try:
            outcome = self._post(ids, bodies, batch_id)
        except DeliveryRetry as exc:
            self._status.blocked = exc.reason if exc.paused or exc.unreachable else None
            raise
        self._status.blocked = None
        if not outcome.done and not outcome.rejected:
            raise DeliveryRetry("the wallet service acknowledged no record of the batch")
        return outcome

    def _post(self, ids: list[str], bodies: list[str], batch_id: str) -> IngestOutcome:
        """Send records in parts of at most `max_bytes`, each with a key of its own; a part
        refused as too large is sent again in halves."""
        parts = list(chunked(ids, bodies, len(ids), self.max_bytes))
        if len(parts) > 1:
            return _merged([self._post(*part, f"{batch_id}.{n}") for n, part in enumerate(parts)])
        try:
            return self._transport.send(ids, bodies, batch_id)
        except BatchTooLarge as exc:
            if len(ids) == 1:
                reason = f"too large to send even alone ({body_size(bodies)} bytes): {exc.reason}"
                return IngestOutcome(rejected={ids[0]: reason})
            half = len(ids) // 2
            self.max_bytes = max(1, min(self.max_bytes, body_size(bodies[:half])))
            return _merged(
                [
                    self._post(ids[:half], bodies[:half], f"{batch_id}.0"),
                    self._post(ids[half:], bodies[half:], f"{batch_id}.1"),
                ]
            )

    def _settle(self, source: Outbox, chunks: list[Chunk], outcome: IngestOutcome) -> list[Chunk]:
        """Remove settled records; return the chunks that still hold records to send again."""
        if not outcome.rejected and not outcome.resend:
            source.ack(chunks)
            return []
        letters: list[tuple[str, str, str]] = []
        finished: list[Chunk] = []
        again: list[Chunk] = []
        rejected, resend = outcome.rejected, outcome.resend
        for chunk in chunks:
            if rejected:
                letters.extend(
                    (record_id, body, rejected[record_id])
                    for record_id, body in zip(chunk.ids, chunk.bodies, strict=True)
                    if record_id in rejected
                )
            keep = [i for i, record_id in enumerate(chunk.ids) if record_id in resend]
            if not keep:
                finished.append(chunk)
            else:
                if len(keep) < len(chunk.ids):
                    source.shrink(chunk, keep)
                again.append(chunk)
        if letters:
            source.dead_letter(letters)
        source.ack(finished)
        if letters:
            self.reject(letters)
        return again

    def reject(
        self, letters: list[tuple[str, str, str]], why: str = "wallet service rejected"
    ) -> None:
        """Say that records became dead letters, and hand each to the `on_rejected` callback."""
        self._status.last_error = f"{why} {len(letters)} records: {letters[0][2]}"
        logger.error("flexcredits delivery: %s (kept as dead letters)", self._status.last_error)
        if self._on_rejected is None:
            return
        for record_id, body, reason in letters:
            try:
                self._on_rejected(DeadLetter(record_id, reason, json.loads(body)))
            except Exception:
                logger.exception("flexcredits on_rejected callback failed")

    # --- retry policy -------------------------------------------------------------------------

    def _wait(self, state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        if isinstance(exc, DeliveryRetry):
            if exc.paused:
                return self._pause_interval
            if exc.retry_after is not None:
                return min(exc.retry_after, MAX_RETRY_AFTER)
        return float(self._jitter(state))

    def _note_failure(self, state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        if isinstance(exc, DeliveryRetry) and exc.unauthorized:
            self._on_key(False)
        reason = getattr(exc, "reason", repr(exc))
        self._status.last_error = reason
        level = logging.DEBUG if self._status.failing else logging.WARNING
        self._status.failing = True
        if isinstance(exc, DeliveryRetry) and exc.paused:
            logger.log(
                level,
                "flexcredits delivery paused: %s; every record is kept, and sending is tried "
                "again every %ss and before each question to the wallet",
                reason,
                self._pause_interval,
            )
        else:
            logger.log(level, "flexcredits delivery failed (%s); retrying", reason)


def _merged(outcomes: list[IngestOutcome]) -> IngestOutcome:
    """Return one outcome for a batch sent in parts."""
    merged = IngestOutcome()
    for outcome in outcomes:
        merged.done |= outcome.done
        merged.accepted += outcome.accepted
        merged.duplicates += outcome.duplicates
        merged.rejected |= outcome.rejected
        merged.resend |= outcome.resend
    return merged
