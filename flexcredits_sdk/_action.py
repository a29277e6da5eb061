"""What a metered function is (`Spec`) and the handle of one running action (`Action`)."""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from decimal import Decimal
from types import TracebackType
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from ._context import CONVERSATION, TAGS
from ._exceptions import ConfigurationError
from ._records import ID_STATE as _IDS
from ._records import UsageRecord
from ._validate import (
    MAX_MODELS,
    MAX_TOKENS,
    check_id,
    check_name,
    check_tags,
    check_tokens,
    check_units,
)

if TYPE_CHECKING:
    from ._meter import Meter

__all__ = ["Action", "ActionScope", "Spec"]

P = ParamSpec("P")
R = TypeVar("R")
_Entered = tuple["Action | None", "_Entered"] | None
_tags_get = TAGS.get
_NO_TAGS: dict[str, str] = {}  # read only
_conversation_get = CONVERSATION.get


class Spec:
    """What one decorated function (or `action()` scope) is: name, type, units, tags, price.

    `credits`, `meter_tags` and `version` follow the meter: `settle` sets them again after a
    `Meter.configure`, before the next call.
    """

    __slots__ = (
        "__weakref__",
        "action_type",
        "credits",
        "meter_tags",
        "name",
        "tags",
        "units",
        "version",
    )

    def __init__(self, name: str, action_type: str, units: int, tags: dict[str, str]) -> None:
        self.name = name
        self.action_type = action_type
        self.units = units
        self.tags = tags
        self.version = -1
        self.credits: int | Decimal = 0
        self.meter_tags: dict[str, str] = {}

    def settle(self, price: int | Decimal, meter_tags: dict[str, str], version: int) -> None:
        """Adopt the price per unit and the meter's tags and configuration version."""
        self.credits = price
        self.meter_tags = meter_tags
        self.version = version


class Action:
    """The handle of one running action: read its id, add tags, change its units.

    Returned by ``with meter.action(...) as act`` and by `current_action()` inside a metered
    function. After the action ends, `record` holds its `UsageRecord`.

    Attributes:
        id: The record's id: a UUIDv7 made when the action started, or the one `set_id` set.
        start_time_ns: When the action started, in Unix nanoseconds.
        trace_id: The OpenTelemetry trace id of the action's span, when there is one.
        span_id: The OpenTelemetry span id of the action's span, when there is one.
        record: The action's record once it ended; ``None`` while it runs.
    """

    __slots__ = (
        "_conversation",
        "_ctx_tags",
        "_hold",
        "_models",
        "_spec",
        "_tags",
        "_token",
        "_units",
        "id",
        "record",
        "span_id",
        "start_time_ns",
        "trace_id",
    )

    def __init__(self, spec: Spec, now_ns: int) -> None:
        self._spec = spec
        self.start_time_ns = now_ns
        # --- hot: `make_id(now_ns)` written out, one call less on every action --------------
        ids = _IDS
        ms = now_ns // 1_000_000
        if ms != ids.ms:
            ids.new_block(ms)
        self.id = next(ids.ids, None) or ids.refill(ms)
        # ------------------------------------------------------------------------------------
        self._units = spec.units
        self._ctx_tags = _tags_get()
        self._conversation = _conversation_get()
        self._tags: dict[str, str] | None = None  # set by `tag()`
        self._hold: Any = None  # what the sink's `authorize` returned
        self._models: dict[str, list[int]] | None = None  # set by `add_model_usage`
        self._token: Any = None  # resets `current_action()` when the action ends
        self.trace_id: str | None = None
        self.span_id: str | None = None
        self.record: UsageRecord | None = None

    def __repr__(self) -> str:
        return f"<Action {self._spec.name!r} id={self.id} units={self.units}>"

    @property
    def name(self) -> str:
        """The action's name."""
        return self._spec.name

    @property
    def action_type(self) -> str:
        """The action's type on the rate card."""
        return self._spec.action_type

    @property
    def conversation_id(self) -> str | None:
        """The conversation the action runs in."""
        return self._conversation

    @property
    def credits(self) -> int | Decimal:
        """What the action costs if it succeeds: the price per unit times `units`."""
        return self._spec.credits * self._units

    @property
    def tags(self) -> dict[str, str]:
        """The tags the record will carry (a new dict each time).

        Sources, weakest first: the meter's tags, the enclosing `tags()` scopes, the
        decorator's tags, and the tags set with `tag`.
        """
        spec = self._spec
        # The engine's `_finish` merges them the same way, without the call.
        return {**spec.meter_tags, **self._ctx_tags, **spec.tags, **(self._tags or _NO_TAGS)}

    def tag(self, **values: str) -> None:
        """Add tags to this action's record; they win over every other source of tags.

        Raises:
            ConfigurationError: A key or value is not a short string, or there would be more
                than 32 tags.
        """
        checked = check_tags(values, base=self.tags)
        if self._tags is None:
            self._tags = checked
        else:
            self._tags.update(checked)

    @property
    def units(self) -> int:
        """How many billable actions this action is; settable (e.g. ``get_time_slots`` x2).

        Raises:
            ConfigurationError: On setting anything but a positive int.
        """
        return self._units

    @units.setter
    def units(self, units: int) -> None:
        self._units = check_units(units)

    def set_units(self, units: int) -> None:
        """Bill this action as `units` actions; the same as setting `units`."""
        self.units = units

    def add_model_usage(self, model: str, *, input_tokens: int = 0, output_tokens: int = 0) -> None:
        """Add the tokens of a model call made during this action to its record.

        Calls of the same model are summed; the record carries one `ModelUsage` per model,
        with its cost when the rate card prices the model (`RateCard.models`). Framework
        adapters call this for the model calls their framework reports.

        Raises:
            ConfigurationError: `model` is not a short printable string, or a token count is
                not an int from 0 to 2**53.
        """
        check_name(model, "model")
        counts = (
            check_tokens(input_tokens, "input_tokens"),
            check_tokens(output_tokens, "output_tokens"),
        )
        models = self._models
        if models is None:
            models = self._models = {}
        total = models.get(model)
        if total is None:
            if len(models) >= MAX_MODELS:
                raise ConfigurationError(
                    "model",
                    model,
                    f"would be the {MAX_MODELS + 1}th model of one action; at most {MAX_MODELS}",
                )
            models[model] = list(counts)
        else:
            total[0] = min(total[0] + counts[0], MAX_TOKENS)
            total[1] = min(total[1] + counts[1], MAX_TOKENS)

    @property
    def model_usage(self) -> dict[str, tuple[int, int]]:
        """The model tokens added so far: model -> (input tokens, output tokens)."""
        return {model: (i, o) for model, (i, o) in (self._models or {}).items()}

    def set_id(self, record_id: str) -> None:
        """Use `record_id` (e.g. from `derive_id`) as the idempotency key of this action.

        Raises:
            ConfigurationError: `record_id` is not a non-empty printable string of at most 64
                characters.
        """
        self.id = check_id(record_id, "record_id")


class ActionScope:
    """``with meter.action(name) as act:`` (or ``async with``) meters the block as one action.

    The scope may be entered many times, nested, from several threads and asyncio tasks at
    once, and also decorates a function as `Meter.metered_action` does.
    """

    __slots__ = ("_entered", "_meter", "_spec")

    def __init__(self, meter: Meter, spec: Spec) -> None:
        self._meter = meter
        self._spec = spec
        #: The actions this scope runs in the current context, innermost first, as a linked
        #: stack (action, outer): each thread and task exits the action it entered.
        self._entered: ContextVar[_Entered] = ContextVar("flexcredits_scope", default=None)

    def __enter__(self) -> Action:
        act = self._meter._start(self._spec)
        self._entered.set((act, self._entered.get()))
        # When metering failed to start, the block runs unmetered with a handle that records
        # nothing, so that code using it still works.
        return act if act is not None else Action(self._spec, 0)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        entered = self._entered.get()
        if entered is None:
            return  # exited more often than entered: nothing to end
        act, outer = entered
        self._entered.set(outer)
        if act is not None:
            self._meter._finish(act, exc)

    async def __aenter__(self) -> Action:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    def __call__(self, func: Callable[P, R]) -> Callable[P, R]:
        if not callable(func):
            raise ConfigurationError("func", func, "must be callable")
        return self._meter._decorate(func, self._spec)
