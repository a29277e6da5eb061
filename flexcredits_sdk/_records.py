"""Usage records and their ids.

A `UsageRecord` is made once per action, on the caller's thread, so it is a plain named tuple:
immutable, cheap to build, and free of validation. Validation happens at the edges (wallet
service, exporter) with the pydantic model in `flexcredits_sdk._models`.
"""

from __future__ import annotations

import datetime as _dt
import itertools
import json
import os
import random
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from decimal import Decimal
from typing import Any, Literal, NamedTuple

from pydantic import ValidationError

from ._exceptions import ConfigurationError
from ._models import UsageRecordModel, validation_error
from ._pricing import ModelUsage
from ._time import datetime_to_ns, ns_to_datetime

__all__ = [
    "ModelUsage",
    "Outcome",
    "add_tick",
    "UsageRecord",
    "datetime_to_ns",
    "derive_id",
    "make_id",
    "model_usage_from_json",
    "model_usage_json",
    "new_id",
    "ns_to_datetime",
    "remove_tick",
]

Outcome = Literal["ok", "error"]

# --- UUIDv7 ------------------------------------------------------------------------------------
#
# RFC 9562 UUIDv7: 48 bits of Unix milliseconds, version 7, 12 bits rand_a, variant 0b10 and
# 62 bits rand_b. Ids must be cheap to make on the caller's thread, so they are handed out in
# *blocks* of 4,096 ("method 2" of RFC 9562, section 6.2, with the counter in rand_b): rand_a and
# the top 14 bits of rand_b are drawn afresh for each millisecond, the next 36 bits number the
# block and the last 12 bits count within it. A block belongs to one millisecond: its text is
# formatted once, and its ids are that text plus each of 4,096 ready-made suffixes, joined at C
# speed as they are taken. Block numbers come from a per-process counter that starts at a random
# point: ids are unique and ordered within a process, and two processes make the same id only
# if, in the same millisecond, their 26 fresh random bits match and their counters meet. The
# random bits come from the process's own generator (seeded from the OS, never from `random`,
# which an application may seed), drawn again in a forked child.

_MASK_48 = (1 << 48) - 1
_MASK_35 = (1 << 35) - 1
#: The last three hex digits of the ids of one block, in order.
_SUFFIXES = tuple(f"{i:03x}" for i in range(4096))


class _IdState:
    __slots__ = ("blocks", "ids", "middle", "ms", "random", "ticks")

    def __init__(self) -> None:
        self.ticks: tuple[Callable[[], None], ...] = ()
        self.reseed()

    def reseed(self) -> None:
        self.random = random.Random(random.SystemRandom().getrandbits(128))
        self.blocks = itertools.count(self.random.getrandbits(34))
        self.ms = -1
        self.middle = ""
        #: The ids left in the current block.
        self.ids: Iterator[str] = iter(())

    def new_block(self, ms: int) -> None:
        """Start a block for millisecond `ms`, with fresh random bits if it is a new one."""
        if ms != self.ms or not self.middle:
            draw = self.random.getrandbits(26)
            self.middle = f"7{draw >> 14:03x}-{(0b10 << 14) | (draw & 0x3FFF):04x}-"
            for tick in self.ticks:
                tick()
        number = (1 << 35) | (next(self.blocks) & _MASK_35)  # always 9 hex digits
        h = f"{ms & _MASK_48:012x}"
        self.ids = map(f"{h[:8]}-{h[8:]}-{self.middle}{number:09x}".__add__, _SUFFIXES)
        self.ms = ms

    def refill(self, ms: int) -> str:
        """Return the first id of a new block for `ms`: the current one ran out."""
        self.new_block(ms)
        return next(self.ids)


ID_STATE = _IdState()
if hasattr(os, "register_at_fork"):  # pragma: no branch
    os.register_at_fork(after_in_child=ID_STATE.reseed)

_time_ns = time.time_ns


def add_tick(tick: Callable[[], None]) -> None:
    """Call `tick()` when the first id of each new millisecond is made: at most once a
    millisecond, on the thread of the action that starts then. `tick` must never raise.

    This is how a part outside the meter notices a change of configuration (the OpenTelemetry
    bridge watches for a global provider set later) at no cost to the other calls.
    """
    if tick not in ID_STATE.ticks:
        ID_STATE.ticks = (*ID_STATE.ticks, tick)


def remove_tick(tick: Callable[[], None]) -> None:
    """Stop calling a `tick` added with `add_tick` (no error if absent)."""
    ID_STATE.ticks = tuple(t for t in ID_STATE.ticks if t is not tick)


def make_id(now_ns: int) -> str:
    """Return the UUIDv7 string for an action starting at `now_ns`.

    `Action.__init__` makes each action's id with these same lines, written out there: it is
    the hottest call there is (tests check that both make one sequence of ids).
    """
    state = ID_STATE
    ms = now_ns // 1_000_000
    if ms != state.ms:
        state.new_block(ms)
    return next(state.ids, None) or state.refill(ms)


def new_id(now_ns: int | None = None) -> str:
    """Return a new UUIDv7 string, time-ordered, for use as a record's idempotency key.

    Args:
        now_ns: The Unix time in nanoseconds to embed; the current time when omitted.
    """
    return make_id(_time_ns() if now_ns is None else now_ns)


_DERIVE_NAMESPACE = uuid.UUID("6f1c2a4e-9b57-4d0a-8f6e-3c1f0e9d7a21")


def derive_id(run_id: str, step: str | int) -> str:
    """Return a deterministic record id for step `step` of run `run_id`.

    Frameworks that re-run a step after a crash (durable workflows, retried tasks) pass the same
    `run_id` and `step` again and so get the same id: the wallet books that action once.

    Args:
        run_id: A stable id of the workflow run.
        step: The step's stable name or index within the run.

    Returns:
        A UUID string (version 5 over the run id and step).

    Raises:
        ConfigurationError: `run_id` is empty or not a string, or `step` is neither a string
            nor an int.
    """
    if not isinstance(run_id, str) or not run_id:
        raise ConfigurationError("run_id", run_id, "must be a non-empty string")
    if isinstance(step, bool) or not isinstance(step, str | int):
        raise ConfigurationError("step", step, "must be a string or an int")
    return str(uuid.uuid5(_DERIVE_NAMESPACE, f"{run_id}\x1f{step}"))


# --- the record --------------------------------------------------------------------------------


def model_usage_json(usage: tuple[ModelUsage, ...]) -> str | None:
    """Return a record's model usage as compact JSON, as files and databases store it
    (``None`` when empty)."""
    if not usage:
        return None
    return json.dumps([u.to_dict() for u in usage], separators=(",", ":"))


def model_usage_from_json(text: str | None) -> tuple[ModelUsage, ...]:
    """Return the model usage `model_usage_json` stored (empty for ``None``)."""
    if not text:
        return ()
    return tuple(
        ModelUsage(
            u["model"],
            u["input_tokens"],
            u["output_tokens"],
            None if u["cost"] is None else Decimal(u["cost"]),
        )
        for u in json.loads(text)
    )


class UsageRecord(NamedTuple):
    """One metered action: what ran, what it cost, and where.

    Records are immutable. ``id`` is made when the action starts and is the idempotency key
    every wallet books once.

    Attributes:
        id: UUIDv7 string (or a `derive_id` value), made when the action started.
        action: The action's name.
        action_type: The rate card's action type, e.g. ``"standard"``.
        units: How many billable actions this record stands for (``get_time_slots`` x2 is 2).
        credits: The credits charged: ``int`` or ``Decimal``, never ``float``.
        environment: ``"production"``, ``"sandbox"`` or another environment of the rate card.
        tags: Tag keys and values, both strings.
        conversation_id: The conversation the action ran in, if any.
        start_time_ns: Unix time in nanoseconds when the action started.
        duration_ns: How long the action ran, in nanoseconds.
        outcome: ``"ok"`` or ``"error"``.
        error_type: The exception's qualified type name when the outcome is ``"error"``.
        trace_id: The OpenTelemetry trace id (32 hex digits) of the action's span, if any.
        span_id: The OpenTelemetry span id (16 hex digits) of the action's span, if any.
        model_usage: The tokens of the model calls made during the action, one `ModelUsage`
            per model (empty when none was reported).
    """

    id: str
    action: str
    action_type: str
    units: int
    credits: int | Decimal
    environment: str
    tags: Mapping[str, str]
    conversation_id: str | None
    start_time_ns: int
    duration_ns: int
    outcome: Outcome = "ok"
    error_type: str | None = None
    trace_id: str | None = None
    span_id: str | None = None
    model_usage: tuple[ModelUsage, ...] = ()

    @property
    def started_at(self) -> _dt.datetime:
        """When the action started, as an aware UTC datetime."""
        return ns_to_datetime(self.start_time_ns)

    @property
    def duration_ms(self) -> float:
        """How long the action ran, in milliseconds."""
        return self.duration_ns / 1_000_000

    def to_dict(self) -> dict[str, Any]:
        """Return the record as JSON-ready data, as the wire protocol carries it.

        Credits are written as an int, or as a decimal string when fractional, so no precision
        is lost to floating point.
        """
        credits = self.credits
        return {
            "id": self.id,
            "action": self.action,
            "action_type": self.action_type,
            "units": self.units,
            "credits": credits if isinstance(credits, int) else str(credits),
            "environment": self.environment,
            "tags": dict(self.tags),
            "conversation_id": self.conversation_id,
            "started_at": self.started_at.isoformat(),
            "start_time_ns": self.start_time_ns,
            "duration_ns": self.duration_ns,
            "outcome": self.outcome,
            "error_type": self.error_type,
            "trace_id": self.trace_id,
            "span_id": self.span_id,
            "model_usage": [usage.to_dict() for usage in self.model_usage],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> UsageRecord:
        """Build a record from `to_dict` output (the wire form), validating every field.

        Raises:
            ConfigurationError: A field is missing or has the wrong type or value; the error
                names it.
        """
        try:
            model = UsageRecordModel.model_validate(data)
        except ValidationError as exc:
            raise validation_error(exc, "record") from None
        return cls.from_model(model)

    @classmethod
    def from_model(cls, model: UsageRecordModel) -> UsageRecord:
        """Return the record a validated `UsageRecordModel` describes.

        Raises:
            ConfigurationError: The model has neither ``started_at`` nor ``start_time_ns``.
        """
        if model.start_time_ns is not None:
            start_ns = model.start_time_ns
        elif model.started_at is not None:
            start_ns = datetime_to_ns(model.started_at)
        else:
            raise ConfigurationError(
                "started_at", None, "either started_at or start_time_ns is required"
            )
        return cls(
            model.id,
            model.action,
            model.action_type,
            model.units,
            model.credits,
            model.environment,
            dict(model.tags),
            model.conversation_id,
            start_ns,
            model.duration_ns,
            model.outcome,
            model.error_type,
            model.trace_id,
            model.span_id,
            tuple(
                ModelUsage(
                    u.model,
                    u.input_tokens,
                    u.output_tokens,
                    None if u.cost is None else Decimal(u.cost),
                )
                for u in model.model_usage
            ),
        )
