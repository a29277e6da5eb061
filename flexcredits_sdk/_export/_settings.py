"""How an exporter batches, stores and retries: one validated, immutable settings object."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Literal

from .._exceptions import ConfigurationError
from .._wire import MAX_BATCH_RECORDS

__all__ = ["Durability", "ExportSettings", "Overflow"]

Durability = Literal["batch", "sync", "memory"]
Overflow = Literal["block", "drop_newest"]

_CHOICES: dict[str, tuple[str, ...]] = {
    "durability": ("batch", "sync", "memory"),
    "overflow": ("block", "drop_newest"),
}


@dataclass(frozen=True)
class ExportSettings:
    """How records are batched, kept and retried (see `HttpWallet` for the user's view).

    Attributes:
        durability: ``"batch"`` (group commits), ``"sync"`` (``submit`` returns once the
            record is on disk) or ``"memory"`` (no outbox).
        max_batch_records: Most records per batch.
        max_batch_bytes: Most JSON bytes per batch, before gzip.
        linger: Seconds a record may wait for a fuller batch.
        commit_interval: Seconds between group commits to the outbox.
        max_queue: Most records held in memory.
        max_outbox: Most records held in the outbox on disk.
        overflow: When both are full: ``"block"`` (wait up to `block_timeout`, then drop)
            or ``"drop_newest"``.
        block_timeout: Seconds ``submit`` may wait for room under ``"block"``.
        timeout: Seconds for connecting, and for each read and write.
        initial_backoff: The first retry waits up to this many seconds (full jitter).
        max_backoff: Retries wait at most this many seconds (``Retry-After`` aside).
        pause_interval: Seconds between attempts while the service refuses the credentials.
        claim_ttl: Seconds a claim on outbox chunks lasts before another process may take
            them (a process that died holds its claims this long).
        senders: Batches in flight at once.
        exit_timeout: Seconds the atexit hook spends delivering what is left.

    Raises:
        ConfigurationError: A value is of the wrong type or out of range.
    """

    durability: Durability = "batch"
    max_batch_records: int = 500
    max_batch_bytes: int = 512 * 1024
    linger: float = 1.0
    commit_interval: float = 0.2
    max_queue: int = 50_000
    max_outbox: int = 10_000_000
    overflow: Overflow = "block"
    block_timeout: float = 1.0
    timeout: float = 10.0
    initial_backoff: float = 0.5
    max_backoff: float = 60.0
    pause_interval: float = 60.0
    claim_ttl: float = 30.0
    senders: int = 2
    exit_timeout: float = 5.0

    def __post_init__(self) -> None:
        for field in fields(self):
            value: Any = getattr(self, field.name)
            if field.name in _CHOICES:
                if value not in _CHOICES[field.name]:
                    raise ConfigurationError(
                        field.name, value, f"must be one of {_CHOICES[field.name]}"
                    )
            elif field.type == "int":
                if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                    raise ConfigurationError(field.name, value, "must be a positive int")
            elif isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ConfigurationError(field.name, value, "must be a positive number of seconds")
        if self.max_batch_records > MAX_BATCH_RECORDS:
            raise ConfigurationError(
                "max_batch_records", self.max_batch_records, f"must be <= {MAX_BATCH_RECORDS}"
            )

    @classmethod
    def names(cls) -> frozenset[str]:
        """Return the names of the settings."""
        return frozenset(field.name for field in fields(cls))
