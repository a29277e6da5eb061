"""Delivery of usage records to a wallet service: exporter thread, durable outbox, transport."""

from ._exporter import Exporter
from ._outbox import DeadLetter, MemoryOutbox, default_outbox_dir, encode
from ._settings import Durability, ExportSettings, Overflow
from ._sqlite import SqliteOutbox
from ._transport import Transport, check_url

__all__ = [
    "DeadLetter",
    "Durability",
    "ExportSettings",
    "Exporter",
    "MemoryOutbox",
    "Overflow",
    "SqliteOutbox",
    "Transport",
    "check_url",
    "default_outbox_dir",
    "encode",
]
