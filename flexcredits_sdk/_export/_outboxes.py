"""The outboxes one exporter uses: its file on disk (if any), its memory, and failed files."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from ._outbox import DeadLetter, MemoryOutbox, Outbox, OutboxUnavailable
from ._sender import Status
from ._settings import ExportSettings
from ._sqlite import SqliteOutbox, open_outbox

__all__ = ["Outboxes"]

logger = logging.getLogger("flexcredits_sdk")


class Outboxes:
    """Where an exporter's records wait: on disk when it can, in memory when it must.

    A corrupt file is quarantined and replaced; a directory that cannot be written (read-only,
    full, not a directory) leaves new records in memory, up to ``max_queue``, and a file that
    fails later is still read until what it holds is delivered.

    Args:
        path: The outbox file, or ``None`` for memory only.
        owner: This process's claim token.
        key: The fingerprint of the API key records are sent with.
        earlier: Files of earlier versions to deliver from too (if they exist).
        settings: Chunk sizes, lease, durability, caps.
        status: Where errors are reported.
    """

    def __init__(
        self,
        path: Path | None,
        *,
        owner: str,
        key: str = "",
        earlier: tuple[Path, ...] = (),
        settings: ExportSettings,
        status: Status,
    ) -> None:
        self._settings = settings
        self._status = status
        self.memory = MemoryOutbox(settings.max_batch_records, settings.max_batch_bytes)
        self.disk: SqliteOutbox | None = None
        self.quarantined: Path | None = None
        self._retired: list[SqliteOutbox] = []
        self._key = key
        if path is None:
            return
        for old in earlier:
            if old.exists():
                try:
                    self._retired.append(self._open(old, owner))
                except OutboxUnavailable as exc:
                    logger.error("flexcredits outbox of an earlier version unavailable: %s", exc)
        try:
            self.disk = self._open(path, owner)
        except OutboxUnavailable as exc:
            self.failed(exc)

    def _open(self, path: Path, owner: str) -> SqliteOutbox:
        settings = self._settings
        disk, quarantined = open_outbox(
            path,
            owner=owner,
            key=self._key,
            lease=settings.claim_ttl,
            sync=settings.durability == "sync",
            max_records=settings.max_batch_records,
            max_bytes=settings.max_batch_bytes,
        )
        if quarantined is not None:
            self.quarantined = quarantined
            self._status.last_error = (
                f"outbox {str(path)!r} was corrupt; moved to {str(quarantined)!r} and replaced"
            )
        waiting, others = disk.count(), disk.others()
        if waiting:
            logger.info("flexcredits outbox %s: replaying %d records", path, waiting)
        if others:
            logger.info(
                "flexcredits outbox %s: %d records of another API key wait for a process "
                "with that key",
                path,
                others,
            )
        return disk

    def failed(self, exc: Exception) -> None:
        """Stop writing to the disk (it keeps being read), and say so."""
        if self.disk is not None:
            self._retired.append(self.disk)
        self.disk = None
        self._status.last_error = (
            f"{exc}; new records are kept in memory only (at most {self._settings.max_queue})"
        )
        logger.error("flexcredits outbox unavailable: %s", self._status.last_error)

    def add(self, ids: list[str], bodies: list[str]) -> None:
        """Commit records (ids, and JSON texts in the same order) to the disk, or to memory
        when there is no usable disk."""
        disk = self.disk
        if disk is not None:
            try:
                disk.add(ids, bodies)
                return
            except OutboxUnavailable as exc:
                self.failed(exc)
        self.memory.add(ids, bodies)

    def room(self) -> int:
        """How many more records may be committed before the cap."""
        if self.disk is not None:
            return self._settings.max_outbox - self.disk.count()
        return self._settings.max_queue - self.memory.count()

    def disks(self) -> list[SqliteOutbox]:
        """The files read from: the current one and any that failed."""
        return [*self._retired, *([self.disk] if self.disk is not None else [])]

    def sources(self) -> list[Outbox]:
        """Every outbox to send from, memory first."""
        return [self.memory, *self.disks()]

    def on_disk(self) -> int:
        """Records waiting on disk."""
        return sum(disk.count() for disk in self.disks())

    def pending(self) -> int:
        """Records waiting anywhere."""
        return self.memory.count() + self.on_disk()

    def refresh(self) -> None:
        """Recount the files' records (other processes share them)."""
        for disk in self.disks():
            disk.refresh()

    def dead_letters(self) -> list[DeadLetter]:
        """Every dead letter, oldest files first."""
        letters: list[DeadLetter] = []
        for disk in self.disks():
            letters += disk.dead_letters()
        return letters + self.memory.dead_letters()

    def hold(self) -> list[threading.Lock]:
        """Wait until no thread is inside a file (a minute at most each) and keep them out;
        return the locks taken, for the caller to release."""
        held: list[threading.Lock] = []
        for disk in self.disks():
            if disk.lock.acquire(timeout=60.0):
                held.append(disk.lock)
        return held

    def abandon(self) -> None:
        """In a forked child: leave the parent's connections alone."""
        for disk in self.disks():
            disk.abandon()

    def close(self) -> None:
        """Close the files."""
        for disk in self.disks():
            disk.close()
