"""The meter: `metered_action`, `action`, and the per-call engine behind both.

Pricing is looked up once per decorated function (and again only after `Meter.configure`); a
call does O(1) work on the caller's thread: read the context, take an id and two clock readings,
build one named tuple, hand it to the sink.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from types import TracebackType
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, overload

from ._context import CONVERSATION, CURRENT, TAGS
from ._environment import ENVIRONMENT_VARIABLE
from ._exceptions import ActionRefused, ConfigurationError
from ._pricing import RateCard
from ._records import UsageRecord, make_id
from ._records import _state as _ids
from ._validate import MAX_TAGS, check_name, check_tags, check_units
from ._wrap import async_generator_wrapper, generator_wrapper, kind_of
from .wallets._protocol import Sink

if TYPE_CHECKING:
    from .otel._settings import SpanMode

__all__ = ["ENVIRONMENT_VARIABLE", "Action", "ActionScope", "Meter", "MeterStats"]

logger = logging.getLogger("flexcredits_sdk")

P = ParamSpec("P")
R = TypeVar("R")


_time_ns = time.time_ns
_new_record = tuple.__new__  # UsageRecord's fields in order, without its keyword parsing
_new_action = object.__new__
_TAGS_get = TAGS.get
_CONVERSATION_get = CONVERSATION.get

#: Called, without arguments, by the first action to start in each new millisecond: lets an
#: integration notice configuration made after a meter was set up (the OpenTelemetry bridge
#: watches for a provider set later) at no cost to the other calls. Each must never raise.
_PERIODIC: list[Callable[[], None]] = []


def _new_millisecond(ms: int) -> None:
    """Start the ids of millisecond `ms` and run the `_PERIODIC` hooks."""
    _ids.new_block(ms)
    for periodic in _PERIODIC:
        periodic()


@dataclass(frozen=True)
class MeterStats:
    """What a meter has done since it was made.

    Attributes:
        recorded: Records handed to the sink.
        refused: Actions refused before they ran (insufficient credits, hard budgets).
        metering_errors: Failures inside metering (logged, never raised into the caller).
        queued: Records waiting in memory for delivery (exporting sinks).
        in_outbox: Records waiting on disk for delivery (exporting sinks).
        sent: Records the wallet service accepted.
        duplicates: Records the wallet service had booked already.
        rejected: Records the wallet service rejected as invalid (kept as dead letters).
        dropped: Records dropped by the overflow policy the user chose.
        last_error: The last delivery or metering error, as text.
    """

    recorded: int = 0
    refused: int = 0
    metering_errors: int = 0
    queued: int = 0
    in_outbox: int = 0
    sent: int = 0
    duplicates: int = 0
    rejected: int = 0
    dropped: int = 0
    last_error: str | None = None


class _Spec:
    """What one decorated function (or `action()` scope) is: name, type, units, tags, price."""

    __slots__ = (
        "__weakref__",
        "action_type",
        "credits",
        "meter",
        "name",
        "static_tags",
        "tags",
        "units",
        "version",
    )

    def __init__(
        self, meter: Meter, name: str, action_type: str, units: int, tags: dict[str, str]
    ) -> None:
        self.meter = meter
        self.name = name
        self.action_type = action_type
        self.units = units
        self.tags = tags
        self.version = -1
        self.credits: int | Decimal = 0
        self.static_tags = True  # whether the meter or the decorator adds tags

    def settle(self, price: int | Decimal) -> None:
        """Adopt `price` and the meter's current tags and version (under the meter's lock)."""
        meter = self.meter
        self.credits = price
        self.static_tags = bool(meter._tags or self.tags)
        self.version = meter._version


class Action:
    """The handle of one running action: read its id, add tags, change its units.

    Returned by ``with meter.action(...) as act`` and by `current_action()` inside a metered
    function. After the action ends, `record` holds its `UsageRecord`.
    """

    __slots__ = (
        "_conversation",
        "_ctx_tags",
        "_fields",
        "_hold",
        "_own_id",
        "_record",
        "_spec",
        "_tags",
        "_token",
        "_units",
        "id",
        "span_id",
        "start_time_ns",
        "trace_id",
    )

    def __init__(self, spec: _Spec, now_ns: int) -> None:
        self._spec = spec
        self.start_time_ns = now_ns
        self.id = make_id(now_ns)
        self._own_id = True
        self._units = spec.units
        self._ctx_tags = TAGS.get()
        self._conversation = CONVERSATION.get()
        self._tags: dict[str, str] | None = None
        self._hold: Any = None
        self._token: Any = None
        self.trace_id: str | None = None
        self.span_id: str | None = None
        self._fields: tuple[Any, ...] | None = None
        self._record: UsageRecord | None = None

    def __repr__(self) -> str:
        return f"<Action {self._spec.name!r} id={self.id} units={self.units}>"

    @property
    def record(self) -> UsageRecord | None:
        """The action's `UsageRecord` once it ended; ``None`` while it runs."""
        record = self._record
        if record is None and self._fields is not None:
            self._record = record = _new_record(UsageRecord, self._fields)
        return record

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
    def tags(self) -> dict[str, str]:
        """The tags the record will carry (a copy)."""
        return self._merged_tags()

    def tag(self, **values: str) -> None:
        """Add tags to this action's record; they win over every other source of tags.

        Raises:
            ConfigurationError: A key or value is not a short string, or there would be more
                than 32 tags.
        """
        checked = check_tags(values, base=self._merged_tags())
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

    def set_id(self, record_id: str) -> None:
        """Use `record_id` (e.g. from `derive_id`) as the idempotency key of this action.

        Raises:
            ConfigurationError: `record_id` is not a non-empty string of at most 64 characters.
        """
        if not isinstance(record_id, str) or not record_id or len(record_id) > 64:
            raise ConfigurationError(
                "record_id", record_id, "must be a string of 1 to 64 characters"
            )
        self.id = record_id
        self._own_id = False

    def _merged_tags(self) -> dict[str, str]:
        meter_tags = self._spec.meter._tags
        spec_tags = self._spec.tags
        if not (meter_tags or spec_tags or self._tags):
            return dict(self._ctx_tags)
        return {**meter_tags, **self._ctx_tags, **spec_tags, **(self._tags or {})}


class ActionScope:
    """``with meter.action(name) as act:`` (or ``async with``) meters the block as one action.

    The scope may be entered many times, and also decorates a function like `metered_action`.
    """

    __slots__ = ("_meter", "_spec", "_stack")

    def __init__(self, meter: Meter, spec: _Spec) -> None:
        self._meter = meter
        self._spec = spec
        self._stack: list[Action | None] = []

    def __enter__(self) -> Action:
        act = self._meter._start(self._spec)
        self._stack.append(act)
        return act if act is not None else _detached(self._meter, self._spec)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        act = self._stack.pop()
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
        return self._meter._decorate(func, self._spec)


def _detached(meter: Meter, spec: _Spec) -> Action:
    """A handle that records nothing, for when metering itself failed to start."""
    return Action(spec, _time_ns())


class Meter:
    """Prices actions with a rate card and hands their records to a wallet.

    Args:
        rate_card: What actions cost; Agentforce Flex Credits by default.
        environment: ``"production"``, ``"sandbox"`` or another environment of the rate
            card; from ``FLEXCREDITS_ENVIRONMENT``, else ``"production"``.
        wallet: Where records go: an `OfflineWallet` (in memory by default), an `HttpWallet`
            or any `Sink`.
        tags: Tags every record of this meter carries (the weakest source of tags).
        clock: Returns Unix time in nanoseconds, for records' start times (for tests).
        spans: How actions meet OpenTelemetry spans: ``"auto"`` (annotate the current span,
            or open one when a tracer provider is configured), ``"always"`` or ``"never"``
            (see `flexcredits_sdk.otel`).
        metric_tags: The tag keys that become OpenTelemetry metric attributes (spans carry
            every tag; metrics only these, to bound their cardinality).

    Raises:
        ConfigurationError: A value is of the wrong type or the rate card does not price the
            environment.
    """

    def __init__(
        self,
        *,
        rate_card: RateCard | None = None,
        environment: str | None = None,
        wallet: Sink | None = None,
        tags: Mapping[str, str] | None = None,
        clock: Callable[[], int] | None = None,
        spans: SpanMode = "auto",
        metric_tags: Iterable[str] = (),
    ) -> None:
        self._lock = threading.Lock()
        self._specs: weakref.WeakSet[_Spec] = weakref.WeakSet()
        self._version = 0
        self._recorded = 0
        self._refused = 0
        self._errors = 0
        self._last_error: str | None = None
        self._observers: list[Any] = []
        self._apply(
            rate_card=rate_card or RateCard.agentforce(),
            environment=environment or os.environ.get(ENVIRONMENT_VARIABLE) or "production",
            wallet=wallet,
            tags=tags or {},
            clock=clock or _time_ns,
            spans=spans,
            metric_tags=metric_tags,
        )

    def __repr__(self) -> str:
        return (
            f"Meter(rate_card={self.rate_card.name!r}, environment={self.environment!r}, "
            f"wallet={self.wallet!r})"
        )

    @property
    def wallet(self) -> Sink:
        """Where records go; setting it is the same as ``configure(wallet=...)``."""
        return self._wallet

    @wallet.setter
    def wallet(self, wallet: Sink) -> None:
        self.configure(wallet=wallet)

    # --- configuration ------------------------------------------------------------------------

    def _apply(
        self,
        *,
        rate_card: RateCard,
        environment: str,
        wallet: Sink | None,
        tags: Mapping[str, str],
        clock: Callable[[], int],
        spans: SpanMode,
        metric_tags: Iterable[str],
    ) -> None:
        from .otel._settings import check_metric_tags, check_spans

        spans = check_spans(spans)
        metric_tags = check_metric_tags(metric_tags)
        if not isinstance(rate_card, RateCard):
            raise ConfigurationError("rate_card", rate_card, "must be a RateCard")
        rate_card.check_environment(environment)
        if wallet is None:
            from .wallets._offline import OfflineWallet

            wallet = OfflineWallet(rate_card=rate_card)
        elif not callable(getattr(wallet, "submit", None)):
            raise ConfigurationError("wallet", wallet, "must have a submit(record) method")
        checked_tags = check_tags(tags)
        if not callable(clock):
            raise ConfigurationError("clock", clock, "must be callable")
        with self._lock:
            specs = list(self._specs)
        prices = [
            (spec, rate_card.price(spec.action_type, environment, action=spec.name))
            for spec in specs
        ]
        with self._lock:
            self.rate_card = rate_card
            self.environment = environment
            self._wallet: Sink = wallet
            self._submit_new = _submit_new_of(wallet)
            self._tags = checked_tags
            self._clock = clock
            self.spans: SpanMode = spans
            self.metric_tags: tuple[str, ...] = metric_tags
            self._version += 1
            for spec, price in prices:
                spec.settle(price)
        from .otel._bridge import sync

        sync(self)

    def configure(
        self,
        *,
        rate_card: RateCard | None = None,
        environment: str | None = None,
        wallet: Sink | None = None,
        tags: Mapping[str, str] | None = None,
        clock: Callable[[], int] | None = None,
        spans: SpanMode | None = None,
        metric_tags: Iterable[str] | None = None,
    ) -> Meter:
        """Change the meter in place; functions already decorated follow the change.

        Arguments left out keep their current value. Every decorated function is priced again
        under the new rate card and environment before anything changes.

        Returns:
            The meter itself.

        Raises:
            UnknownActionType: The new rate card does not price a decorated function's type.
            UnknownEnvironment: The new rate card does not price the environment.
        """
        self._apply(
            rate_card=rate_card or self.rate_card,
            environment=environment or self.environment,
            wallet=wallet or self.wallet,
            tags=self._tags if tags is None else tags,
            clock=clock or self._clock,
            spans=spans or self.spans,
            metric_tags=self.metric_tags if metric_tags is None else metric_tags,
        )
        return self

    def stats(self) -> MeterStats:
        """Return what this meter and its wallet have done."""
        delivery: dict[str, Any] = {}
        sink_stats = getattr(self.wallet, "stats", None)
        if callable(sink_stats):
            fields = MeterStats.__dataclass_fields__
            delivery = {k: v for k, v in dict(sink_stats()).items() if k in fields}
        delivery.setdefault("last_error", None)
        delivery["last_error"] = delivery["last_error"] or self._last_error
        return MeterStats(
            recorded=self._recorded, refused=self._refused, metering_errors=self._errors, **delivery
        )

    def flush(self, timeout: float | None = None) -> bool:
        """Ask the wallet to deliver pending records; return whether all were delivered."""
        return bool(self.wallet.flush(timeout)) if hasattr(self.wallet, "flush") else True

    def shutdown(self, timeout: float | None = None) -> bool:
        """Flush and close the wallet; return whether everything was delivered in time."""
        return bool(self.wallet.shutdown(timeout)) if hasattr(self.wallet, "shutdown") else True

    # --- declaring actions --------------------------------------------------------------------

    def _spec(self, name: Any, action_type: Any, units: Any, tags: Any) -> _Spec:
        check_name(name, "name")
        if not isinstance(action_type, str) or not action_type:
            raise ConfigurationError("action_type", action_type, "must be a non-empty string")
        spec = _Spec(self, name, action_type, check_units(units), check_tags(tags or {}))
        if len(self._tags.keys() | spec.tags.keys()) > MAX_TAGS:
            check_tags(spec.tags, base=self._tags)
        with self._lock:
            spec.settle(self.rate_card.price(action_type, self.environment, action=name))
            self._specs.add(spec)
        return spec

    @overload
    def metered_action(self, func: Callable[P, R], /) -> Callable[P, R]: ...

    @overload
    def metered_action(
        self,
        func: None = None,
        /,
        *,
        name: str | None = None,
        action_type: str = "standard",
        units: int = 1,
        tags: Mapping[str, str] | None = None,
    ) -> Callable[[Callable[P, R]], Callable[P, R]]: ...

    def metered_action(
        self,
        func: Callable[P, R] | None = None,
        /,
        *,
        name: str | None = None,
        action_type: str = "standard",
        units: int = 1,
        tags: Mapping[str, str] | None = None,
    ) -> Callable[P, R] | Callable[[Callable[P, R]], Callable[P, R]]:
        """Meter every call of a function as one action, with or without parentheses.

        Works on plain functions, coroutine functions, generator and async-generator functions,
        methods, classmethods and staticmethods. Generators are metered once, when exhausted,
        closed or failed. What the function returns or raises is never changed.

        Args:
            func: The function (when used without parentheses).
            name: The action's name; the function's ``__qualname__`` by default.
            action_type: The rate card's action type (``"standard"`` by default).
            units: How many billable actions one call is (the body may change it through
                `current_action()`).
            tags: Tags of every record of this function.

        Raises:
            ConfigurationError: A bad name, units or tags; `UnknownActionType` when the rate
                card does not price `action_type` (at decoration time, not call time).
        """

        def decorate(f: Callable[P, R]) -> Callable[P, R]:
            target: Any = f
            rewrap: Any = None
            if isinstance(f, classmethod | staticmethod):
                rewrap, target = type(f), f.__func__
            if not callable(target):
                raise ConfigurationError("func", f, "must be callable")
            action_name = name if name is not None else getattr(target, "__qualname__", None)
            spec = self._spec(action_name, action_type, units, tags)
            wrapped = self._decorate(target, spec)
            return rewrap(wrapped) if rewrap is not None else wrapped

        if func is not None:
            return decorate(func)
        return decorate

    def action(
        self,
        name: str,
        *,
        action_type: str = "standard",
        units: int = 1,
        tags: Mapping[str, str] | None = None,
    ) -> ActionScope:
        """Meter a block as one action: ``with meter.action("answer") as act:``.

        Also works with ``async with`` and as a decorator.

        Raises:
            ConfigurationError: As for `metered_action`, when the scope is made.
        """
        return ActionScope(self, self._spec(name, action_type, units, tags))

    # --- the engine ---------------------------------------------------------------------------

    def _decorate(self, func: Callable[P, R], spec: _Spec) -> Callable[P, R]:
        kind = kind_of(func)
        start = self._start
        finish = self._finish
        wrapper: Any
        if kind == "coroutine":
            afunc: Callable[P, Awaitable[Any]] = func  # type: ignore[assignment]

            async def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                act = start(spec)
                if act is None:
                    return await afunc(*args, **kwargs)
                try:
                    result = await afunc(*args, **kwargs)
                except BaseException as exc:
                    finish(act, exc)
                    raise
                finish(act, None)
                return result

        elif kind in ("generator", "async_generator"):

            def begin() -> tuple[Any, Callable[[BaseException | None], None]]:
                act = start(spec, bind=False)
                if act is None:
                    return None, _no_end
                return act, functools.partial(finish, act)

            drive = generator_wrapper if kind == "generator" else async_generator_wrapper
            return drive(func, CURRENT, begin)  # type: ignore[arg-type, return-value]

        else:
            meter = self

            def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                # The common case of `_start` and `_finish` (no observers, no authorization, the
                # price current), inlined: a sync call is the hottest path there is. Keep the two
                # in step; tests compare their records.
                try:
                    now = meter._clock()
                    ms = now // 1_000_000
                    if ms != _ids.ms:
                        _new_millisecond(ms)  # its hooks may add observers
                    common = not (
                        spec.version != meter._version
                        or meter._observers
                        or meter._wallet.needs_authorization
                    )
                    if common:
                        act = _new_action(Action)
                        act._spec = spec
                        act._units = spec.units
                        act.start_time_ns = now
                        act.id = next(_ids.ids, None) or _ids.refill(ms)
                        act._own_id = True
                        act._ctx_tags = ctx = _TAGS_get()
                        act._conversation = _CONVERSATION_get()
                        act._tags = act._hold = act.trace_id = act.span_id = None
                        act._fields = act._record = None
                        act._token = token = CURRENT.set(act)
                except Exception as error:
                    meter._failed("start", spec.name, error)
                    return func(*args, **kwargs)
                if not common:
                    general = start(spec, True, now)
                    if general is None:
                        return func(*args, **kwargs)
                    try:
                        result = func(*args, **kwargs)
                    except BaseException as exc:
                        finish(general, exc)
                        raise
                    finish(general, None)
                    return result
                try:
                    result = func(*args, **kwargs)
                except BaseException as exc:
                    finish(act, exc)
                    raise
                try:
                    act._token = None
                    CURRENT.reset(token)
                    duration = meter._clock() - now
                    units = act._units
                    if spec.static_tags or act._tags:
                        tags = act._merged_tags()
                    else:
                        tags = dict(ctx) if ctx else {}
                    act._fields = fields = (
                        act.id,
                        spec.name,
                        spec.action_type,
                        units,
                        spec.credits * units,
                        meter.environment,
                        tags,
                        act._conversation,
                        now,
                        duration,
                        "ok",
                        None,
                        None,
                        None,
                    )
                    if act._own_id:
                        meter._submit_new(fields, None)
                    else:
                        act._record = record = _new_record(UsageRecord, fields)
                        meter._wallet.submit(record, None)
                    meter._recorded += 1
                except Exception as error:
                    meter._failed("finish", spec.name, error)
                return result

        return functools.wraps(func)(wrapper)

    def _start(self, spec: _Spec, bind: bool = True, now: int | None = None) -> Action | None:
        """Begin an action; `None` when metering failed (the body then runs unmetered).

        `now` is the start time when the caller has read the clock already.
        """
        try:
            if spec.version != self._version:
                self._reprice(spec)
            # Action.__init__ inlined: this runs on every call.
            act = _new_action(Action)
            act._spec = spec
            act._units = spec.units
            act.start_time_ns = now = self._clock() if now is None else now
            ms = now // 1_000_000  # the id, as _records.make_id makes it
            if ms != _ids.ms:
                _new_millisecond(ms)
            act.id = next(_ids.ids, None) or _ids.refill(ms)
            act._own_id = True
            act._ctx_tags = _TAGS_get()
            act._conversation = _CONVERSATION_get()
            act._tags = act._hold = act._token = act.trace_id = act.span_id = None
            act._fields = act._record = None
            wallet = self._wallet
            if wallet.needs_authorization:
                act._hold = wallet.authorize(
                    spec.name, spec.credits * act._units, act._merged_tags()
                )
            if bind:
                act._token = CURRENT.set(act)
            if self._observers:
                self._notify("on_start", act)
            return act
        except ActionRefused:
            self._refused += 1
            raise
        except Exception as exc:
            self._failed("start", spec.name, exc)
            return None

    def _finish(self, act: Action, exc: BaseException | None) -> None:
        """End an action and hand its record to the wallet; never raises."""
        try:
            token = act._token
            if token is not None:
                act._token = None
                CURRENT.reset(token)
            duration = self._clock() - act.start_time_ns
            spec = act._spec
            units = act._units
            if exc is None or isinstance(exc, GeneratorExit):
                outcome, error_type, credits = "ok", None, spec.credits * units
            else:
                outcome = "error"
                error_type = type(exc).__qualname__
                credits = spec.credits * units if self.rate_card.bill_failed else 0
            if spec.static_tags or act._tags:
                tags = act._merged_tags()
            else:
                tags = dict(act._ctx_tags) if act._ctx_tags else {}
            if self._observers:
                self._notify("on_end", act, exc, credits)
            # The record's fields; `Action.record` makes the `UsageRecord` when it is asked for.
            act._fields = fields = (
                act.id,
                spec.name,
                spec.action_type,
                units,
                credits,
                self.environment,
                tags,
                act._conversation,
                act.start_time_ns,
                duration,
                outcome,
                error_type,
                act.trace_id,
                act.span_id,
            )
            if act._own_id:
                self._submit_new(fields, act._hold)
            else:
                act._record = record = _new_record(UsageRecord, fields)
                self._wallet.submit(record, act._hold)
            self._recorded += 1
            if self._observers:
                self._notify("on_record", act.record)
        except Exception as error:
            self._failed("finish", act._spec.name, error)

    def _reprice(self, spec: _Spec) -> None:
        with self._lock:
            spec.settle(self.rate_card.price(spec.action_type, self.environment, action=spec.name))

    def _failed(self, where: str, name: str, exc: Exception) -> None:
        self._errors += 1
        self._last_error = f"{type(exc).__name__}: {exc}"
        logger.exception(
            "flexcredits: metering failed at %s of action %r; the action is unaffected", where, name
        )

    # --- observers (OpenTelemetry and others) -------------------------------------------------

    def _notify(self, event: str, *args: Any) -> None:
        for observer in self._observers:
            try:
                getattr(observer, event)(*args)
            except Exception as exc:
                name = getattr(args[0], "name", None) or getattr(args[0], "action", "?")
                self._failed(event, str(name), exc)

    def add_observer(self, observer: Any) -> None:
        """Register an object with ``on_start(action)``, ``on_end(action, exc, credits)`` and
        ``on_record(record)`` methods, called around every action; its errors are contained."""
        with self._lock:
            self._observers = [*self._observers, observer]

    def remove_observer(self, observer: Any) -> None:
        """Unregister an observer added with `add_observer` (no error if absent)."""
        with self._lock:
            self._observers = [o for o in self._observers if o is not observer]


def _no_end(_: BaseException | None) -> None:
    return None


def _submit_new_of(sink: Sink) -> Callable[[tuple[Any, ...], Any], None]:
    """Return how the meter hands `sink` a record whose id it made: the sink's own
    ``submit_new`` when its class defines one at least as recently as ``submit`` (a subclass
    that overrides only ``submit`` gets every record there), else ``submit`` with the record."""
    for cls in type(sink).__mro__:
        if "submit_new" in vars(cls):
            return sink.submit_new  # type: ignore[attr-defined, no-any-return]
        if "submit" in vars(cls):
            break
    submit = sink.submit

    def submit_new(fields: tuple[Any, ...], hold: Any = None, /) -> None:
        submit(_new_record(UsageRecord, fields), hold)

    return submit_new
