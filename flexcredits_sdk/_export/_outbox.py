"""Where records wait until the wallet service acknowledges them: what every outbox is.

Records are stored in *chunks* (at most one batch's worth each), claimed, sent and removed
together. `MemoryOutbox` keeps them in this process; `SqliteOutbox` (in `_sqlite`) on disk.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from json.encoder import encode_basestring as _s
from pathlib import Path
from typing import Any, Protocol

from .._records import model_usage_json

__all__ = [
    "Chunk",
    "DeadLetter",
    "MemoryOutbox",
    "Outbox",
    "OutboxUnavailable",
    "batch_fit",
    "body_size",
    "letter",
    "chunked",
    "default_outbox_dir",
    "encode",
]

logger = logging.getLogger("flexcredits_sdk")


#: How many fields a `UsageRecord` has (the last, ``model_usage``, is often empty).
_FIELDS = 15

#: The JSON of the fields one decorated function repeats in every record, by those fields.
_HEADS: dict[tuple[Any, ...], str] = {}
_MAX_HEADS = 4096


def _head(key: tuple[Any, ...]) -> str:
    action, action_type, units, credits, _, environment, outcome = key
    head = (
        f'"action":{_s(action)},"action_type":{_s(action_type)},"units":{int(units)},'
        f'"credits":{credits if type(credits) is int else _s(str(credits))},'
        f'"environment":{_s(environment)},"outcome":{_s(outcome)},'
    )
    if len(_HEADS) < _MAX_HEADS:
        _HEADS[key] = head
    return head


def encode(record: tuple[Any, ...]) -> str:
    """Return a record (a `UsageRecord` or a plain tuple of its fields) as the JSON object the
    wire protocol carries (``UsageRecordModel``).

    A tuple of the record's fields followed by a hold's id (an action authorized from a lease)
    is sent with that ``hold_id``. The text never contains a raw newline (JSON escapes them
    inside strings), so records are stored newline-separated.
    """
    size = len(record)
    if size > _FIELDS:
        return encode(record[:_FIELDS])[:-1] + f',"hold_id":{_s(record[_FIELDS])}}}'
    if size == _FIELDS:
        usage = model_usage_json(record[-1])
        if usage is not None:
            return encode(record[:-1])[:-1] + f',"model_usage":{usage}}}'
        record = record[:-1]
    (
        record_id,
        action,
        action_type,
        units,
        credits,
        environment,
        tags,
        conversation_id,
        start_time_ns,
        duration_ns,
        outcome,
        error_type,
        trace_id,
        span_id,
    ) = record
    key = (action, action_type, units, credits, type(credits), environment, outcome)
    head = _HEADS.get(key) or _head(key)
    text = ",".join([f"{_s(k)}:{_s(v)}" for k, v in tags.items()]) if tags else ""
    out = (
        f'{{"id":{_s(record_id)},{head}"tags":{{{text}}},'
        f'"start_time_ns":{int(start_time_ns)},"duration_ns":{int(duration_ns)}'
    )
    if conversation_id is not None:
        out += f',"conversation_id":{_s(conversation_id)}'
    if error_type is not None:
        out += f',"error_type":{_s(error_type)}'
    if trace_id is not None:
        out += f',"trace_id":{_s(trace_id)}'
    if span_id is not None:
        out += f',"span_id":{_s(span_id)}'
    return out + "}"


def default_outbox_dir() -> Path:
    """Return the per-user cache directory for outboxes on this platform."""
    if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
        return base / "flexcredits" / "Cache" / "outbox"
    if sys.platform == "darwin":  # pragma: no cover - exercised on macOS only
        return Path.home() / "Library" / "Caches" / "flexcredits" / "outbox"
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "flexcredits" / "outbox"


class Chunk:
    """Records committed together and claimed together (at most one batch's worth).

    Attributes:
        seq: The chunk's sequence number in its outbox (increasing).
        ids: The records' ids.
        bodies: The records' JSON texts, in the same order.
    """

    __slots__ = ("bodies", "ids", "seq")

    def __init__(self, seq: int, ids: list[str], bodies: list[str]) -> None:
        self.seq = seq
        self.ids = ids
        self.bodies = bodies

    def __repr__(self) -> str:
        return f"Chunk(seq={self.seq}, records={len(self.ids)})"


@dataclass(frozen=True)
class DeadLetter:
    """A record the wallet service rejected as invalid, kept with the service's reason.

    Attributes:
        id: The record's id.
        reason: Why the service rejected it.
        record: The record as it was sent (wire form).
    """

    id: str
    reason: str
    record: dict[str, Any]


class OutboxUnavailable(OSError):
    """The outbox directory or file cannot be used (read-only, full, not a directory)."""


def chunked(
    ids: list[str], bodies: list[str], max_records: int, max_bytes: int
) -> Iterator[tuple[list[str], list[str]]]:
    """Split records (their ids, and their JSON texts in the same order) into chunks within
    both limits."""
    for start in range(0, len(ids), max_records):
        part_ids = ids[start : start + max_records]
        part_bodies = bodies[start : start + max_records]
        if body_size(part_bodies) <= max_bytes:
            yield part_ids, part_bodies
        else:
            yield from _by_bytes(part_ids, part_bodies, max_bytes)


def _by_bytes(
    ids: list[str], bodies: list[str], max_bytes: int
) -> Iterator[tuple[list[str], list[str]]]:
    chunk_ids: list[str] = []
    chunk_bodies: list[str] = []
    size = 0
    for record_id, body in zip(ids, bodies, strict=True):
        if chunk_ids and size + len(body) + 1 > max_bytes:
            yield chunk_ids, chunk_bodies
            chunk_ids, chunk_bodies, size = [], [], 0
        chunk_ids.append(record_id)
        chunk_bodies.append(body)
        size += len(body) + 1
    if chunk_ids:
        yield chunk_ids, chunk_bodies


def batch_fit(chunks: list[tuple[int, int, int]], max_records: int, max_bytes: int) -> list[int]:
    """Return the seqs of the leading ``(seq, records, bytes)`` chunks one batch can carry."""
    seqs: list[int] = []
    records = size = 0
    for seq, count, length in chunks:
        if seqs and (records + count > max_records or size + length > max_bytes):
            break
        seqs.append(seq)
        records += count
        size += length
    return seqs


class Outbox(Protocol):
    """What the exporter needs from an outbox."""

    durable: bool

    def add(self, ids: list[str], bodies: list[str]) -> None:
        """Append records (their ids, and their JSON texts in the same order) in one commit."""

    def claim(self, max_records: int, max_bytes: int, upto: int) -> list[Chunk]:
        """Lease unleased chunks with ``seq <= upto``, oldest first, that fit one batch."""

    def renew(self, chunks: list[Chunk]) -> None:
        """Extend the lease of claimed chunks (before each attempt)."""

    def ack(self, chunks: list[Chunk]) -> None:
        """Remove chunks whose every record is settled."""

    def shrink(self, chunk: Chunk, keep: list[int]) -> None:
        """Keep only the records at positions `keep` of a claimed chunk."""

    def release(self, chunks: list[Chunk]) -> None:
        """Give claimed chunks back, to be sent again."""

    def dead_letter(self, letters: list[tuple[str, str, str]]) -> None:
        """Keep ``(id, json, reason)`` of rejected records."""

    def dead_letters(self) -> list[DeadLetter]:
        """Return the dead letters, oldest first."""

    def last_seq(self) -> int:
        """Return the highest chunk sequence number added so far."""

    def count(self) -> int:
        """Return how many records wait (claimed or not)."""

    def left_upto(self, upto: int) -> int:
        """Return how many records wait in chunks with ``seq <= upto`` (claimed or not)."""

    def key_refused(self, refused: bool) -> None:
        """Say whether the service refuses the API key records are sent with."""

    def close(self) -> None:
        """Release the file, if any."""


def letter(record_id: str, body: str, reason: str) -> DeadLetter:
    """Return the dead letter of a rejected record."""
    return DeadLetter(record_id, reason, json.loads(body))


def body_size(bodies: list[str]) -> int:
    return sum(map(len, bodies)) + len(bodies)


class MemoryOutbox:
    """An outbox in this process's memory: lost when the process ends."""

    durable = False

    def __init__(self, max_records: int = 500, max_bytes: int = 512 * 1024) -> None:
        self._lock = threading.Lock()
        self._chunks: dict[int, Chunk] = {}
        self._claimed: set[int] = set()
        self._letters: list[DeadLetter] = []
        self._seq = 0
        self._count = 0
        self._limits = max_records, max_bytes

    def add(self, ids: list[str], bodies: list[str]) -> None:
        with self._lock:
            for chunk_ids, chunk_bodies in chunked(ids, bodies, *self._limits):
                self._seq += 1
                self._chunks[self._seq] = Chunk(self._seq, chunk_ids, chunk_bodies)
            self._count += len(ids)

    def claim(self, max_records: int, max_bytes: int, upto: int) -> list[Chunk]:
        with self._lock:
            free = [
                (chunk.seq, len(chunk.ids), body_size(chunk.bodies))
                for chunk in self._chunks.values()
                if chunk.seq <= upto and chunk.seq not in self._claimed
            ][:64]
            seqs = batch_fit(free, max_records, max_bytes)
            self._claimed.update(seqs)
            return [self._chunks[seq] for seq in seqs]

    def renew(self, chunks: list[Chunk]) -> None:
        return None

    def ack(self, chunks: list[Chunk]) -> None:
        with self._lock:
            for chunk in chunks:
                if self._chunks.pop(chunk.seq, None) is not None:
                    self._count -= len(chunk.ids)
                self._claimed.discard(chunk.seq)

    def shrink(self, chunk: Chunk, keep: list[int]) -> None:
        with self._lock:
            self._count -= len(chunk.ids) - len(keep)
            chunk.ids = [chunk.ids[i] for i in keep]
            chunk.bodies = [chunk.bodies[i] for i in keep]

    def release(self, chunks: list[Chunk]) -> None:
        with self._lock:
            self._claimed.difference_update(chunk.seq for chunk in chunks)

    def dead_letter(self, letters: list[tuple[str, str, str]]) -> None:
        with self._lock:
            self._letters.extend(letter(*item) for item in letters)

    def dead_letters(self) -> list[DeadLetter]:
        with self._lock:
            return list(self._letters)

    def last_seq(self) -> int:
        return self._seq

    def count(self) -> int:
        return self._count

    def left_upto(self, upto: int) -> int:
        with self._lock:
            return sum(len(chunk.ids) for seq, chunk in self._chunks.items() if seq <= upto)

    def key_refused(self, refused: bool) -> None:
        return None

    def close(self) -> None:
        return None
