"""The meter: `metered_action`, `action`, and the one engine behind both.

Every metered call takes the same path, whatever the callable's kind::

    _start(spec) -> the body -> _finish(action, exc) -> sink.submit(record, hold)

`_start` makes the `Action` (id, start time, context), asks the sink to authorize it when the
sink says it must, and tells the observers; `_finish` builds the `UsageRecord`, hands it to the
sink and tells the observers. Pricing is looked up once per decorated function (again only after
`Meter.configure`), so a call does O(1) work on the caller's thread: no I/O, no locks.
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar, overload

from ._action import Action, ActionScope, Spec
from ._context import CURRENT
from ._environment import ENVIRONMENT_VARIABLE, URL_VARIABLE
from ._exceptions import ActionRefused, ConfigurationError, UnknownEnvironment
from ._observer import Observer
from ._pricing import RateCard, warn_if_unlisted
from ._process import METERS, LockedAcrossFork, at_exit, at_fork
from ._records import UsageRecord
from ._telemetry import SpanMode, check_metric_tags, check_spans
from ._validate import MAX_TAGS, check_name, check_tags, check_units
from ._wrap import async_generator_wrapper, generator_wrapper, kind_of
from .integrations._tools import meter_tool
from .wallets._protocol import Sink, check_sink

__all__ = ["Meter", "MeterStats", "add_meter_hook", "default_meter"]

logger = logging.getLogger("flexcredits_sdk")

P = ParamSpec("P")
R = TypeVar("R")

# The record is built from its fields in `UsageRecord` order without the named tuple's keyword
# parsing: the one place a record is made by position, once per call.
_new_record = tuple.__new__
_NO_TAGS: dict[str, str] = {}  # read only

#: Every meter, so that a hook added later reaches the meters made before it.
_METERS: weakref.WeakSet[Meter] = weakref.WeakSet()
#: Called with every meter when it is made and after each `configure`.
_METER_HOOKS: list[Callable[[Meter], None]] = []
_HOOKS_LOCK = threading.Lock()


def add_meter_hook(hook: Callable[[Meter], None]) -> None:
    """Call `hook(meter)` for every meter now, and for each meter made or configured later.

    This is how an extension attaches its observer to every meter without the meter importing
    it: the OpenTelemetry bridge registers itself here when `flexcredits_sdk.otel` is imported.
    """
    with _HOOKS_LOCK:
        if hook in _METER_HOOKS:
            return
        _METER_HOOKS.append(hook)
        meters = list(_METERS)
    for meter in meters:
        hook(meter)


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


class _Engine(LockedAcrossFork):
    """The path every metered call takes, and the state that path reads.

    `Meter` adds configuration and the public API on top; nothing else starts or ends an
    action. The attributes below are set by `Meter._apply` under `_lock` and only read here.
    """

    rate_card: RateCard
    environment: str
    _wallet: Sink
    _tags: dict[str, str]
    _clock: Callable[[], int]

    def __init__(self) -> None:
        self._lock = threading.Lock()
        at_fork(self, METERS)
        self._version = 0  # bumped by every configure; a spec of an older version is repriced
        self._recorded = 0
        self._refused = 0
        self._errors = 0
        self._last_error: str | None = None
        self._observers: tuple[Observer, ...] = ()

    # --- observers ----------------------------------------------------------------------------

    def add_observer(self, observer: Observer) -> None:
        """Call `observer` around every action of this meter (see `Observer`).

        Raises:
            ConfigurationError: `observer` lacks one of the `Observer` methods.
        """
        if not isinstance(observer, Observer):
            raise ConfigurationError(
                "observer", observer, "must have on_start, on_end and on_record methods"
            )
        with self._lock:
            if observer not in self._observers:
                self._observers = (*self._observers, observer)

    def remove_observer(self, observer: Observer) -> None:
        """Stop calling an observer added with `add_observer` (no error if absent)."""
        with self._lock:
            self._observers = tuple(o for o in self._observers if o is not observer)

    @property
    def observers(self) -> tuple[Observer, ...]:
        """The observers registered with this meter, in the order they are called."""
        return tuple(o for o in self._observers if not isinstance(o, _MemoryNotice))

    # --- the engine ---------------------------------------------------------------------------

    def _decorate(self, func: Callable[P, R], spec: Spec) -> Callable[P, R]:
        """Wrap `func`: the wrapper is chosen once, here, by the kind of callable."""
        start = self._start
        finish = self._finish
        kind = kind_of(func)
        wrapper: Any
        if kind in ("generator", "async_generator"):

            def begin() -> tuple[Action | None, Callable[[BaseException | None], None]]:
                act = start(spec, bind=False)  # the driver sets it around each resume
                if act is None:
                    return None, _no_end
                return act, functools.partial(finish, act)

            drive = generator_wrapper if kind == "generator" else async_generator_wrapper
            return drive(func, CURRENT, begin)  # type: ignore[arg-type, return-value]

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

        else:

            def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                act = start(spec)
                if act is None:
                    return func(*args, **kwargs)
                try:
                    result = func(*args, **kwargs)
                except BaseException as exc:
                    finish(act, exc)
                    raise
                finish(act, None)
                return result

        return functools.wraps(func)(wrapper)

    def _start(self, spec: Spec, bind: bool = True) -> Action | None:
        """Begin an action; `None` when metering failed (the body then runs unmetered).

        Raises:
            ActionRefused: The sink refused the action; its body must not run.
        """
        try:
            if spec.version != self._version:
                self._reprice(spec)
            act = Action(spec, self._clock())
            wallet = self._wallet
            if wallet.authorizes:
                act._hold = wallet.authorize(spec.name, act.credits, act.tags)
            if bind:
                act._token = CURRENT.set(act)
            if self._observers:  # an empty loop costs as much as the test, on every call
                for observer in self._observers:
                    try:
                        observer.on_start(act)
                    except Exception as exc:
                        self._failed("on_start", spec.name, exc)
            return act
        except ActionRefused:
            self._refused += 1
            raise
        except Exception as exc:
            self._failed("start", spec.name, exc)
            return None

    def _finish(self, act: Action, exc: BaseException | None) -> None:
        """End an action and hand its record to the sink; never raises."""
        spec = act._spec
        try:
            if act._token is not None:
                CURRENT.reset(act._token)
                act._token = None
            duration = self._clock() - act.start_time_ns
            units = act._units
            if exc is None or isinstance(exc, GeneratorExit):
                outcome, error_type, credits = "ok", None, spec.credits * units
            else:
                outcome = "error"
                error_type = type(exc).__qualname__
                credits = spec.credits * units if self.rate_card.bill_failed else 0
            observers = self._observers
            if observers:
                for observer in observers:
                    try:
                        observer.on_end(act, exc, credits)
                    except Exception as error:
                        self._failed("on_end", spec.name, error)
            act.record = record = _new_record(
                UsageRecord,
                (
                    act.id,
                    spec.name,
                    spec.action_type,
                    units,
                    credits,
                    self.environment,
                    # `act.tags`, merged here without the call
                    {**spec.meter_tags, **act._ctx_tags, **spec.tags, **(act._tags or _NO_TAGS)},
                    act._conversation,
                    act.start_time_ns,
                    duration,
                    outcome,
                    error_type,
                    act.trace_id,
                    act.span_id,
                    () if act._models is None else self.rate_card.model_usage(act._models),
                ),
            )
            self._wallet.submit(record, act._hold)
            self._recorded += 1
            if observers:
                for observer in observers:
                    try:
                        observer.on_record(record)
                    except Exception as error:
                        self._failed("on_record", spec.name, error)
        except Exception as error:
            self._failed("finish", spec.name, error)

    def _reprice(self, spec: Spec) -> None:
        with self._lock:
            price = self.rate_card.price(spec.action_type, self.environment, action=spec.name)
            spec.settle(price, self._tags, self._version)

    def _failed(self, where: str, name: str, exc: Exception) -> None:
        self._errors += 1
        self._last_error = f"{type(exc).__name__}: {exc}"
        logger.exception(
            "flexcredits: metering failed at %s of action %r; the action is unaffected", where, name
        )


class Meter(_Engine):
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
        super().__init__()
        self._specs: weakref.WeakSet[Spec] = weakref.WeakSet()
        #: An error of the environment variables, raised at first use (see `default_meter`).
        self._deferred: ConfigurationError | None = None
        self._memory_wallet: Sink | None = None  # the in-memory wallet made for want of one
        rate_card = rate_card or RateCard.agentforce()
        if environment is None:
            environment = _environment_variable(rate_card)
        self._apply(
            rate_card=rate_card,
            environment=environment,
            wallet=wallet,
            tags=tags or {},
            clock=clock or time.time_ns,
            spans=spans,
            metric_tags=metric_tags,
        )
        with _HOOKS_LOCK:
            _METERS.add(self)

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

    @property
    def tags(self) -> dict[str, str]:
        """The tags every record of this meter carries (a copy)."""
        return dict(self._tags)

    @property
    def clock(self) -> Callable[[], int]:
        """The meter's clock: Unix time in nanoseconds."""
        return self._clock

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
        spans = check_spans(spans)
        metric_tags = check_metric_tags(metric_tags)
        if not isinstance(rate_card, RateCard):
            raise ConfigurationError("rate_card", rate_card, "must be a RateCard")
        rate_card.check_environment(environment)
        if wallet is None:
            wallet = self._default_wallet(rate_card)
        check_sink(wallet)
        checked_tags = check_tags(tags)
        if not callable(clock):
            raise ConfigurationError("clock", clock, "must be callable")
        with self._lock:
            specs = list(self._specs)
        prices = [
            (spec, rate_card.price(spec.action_type, environment, action=spec.name))
            for spec in specs
        ]
        for spec in specs:
            warn_if_unlisted(rate_card, spec.name, spec.action_type)
        with self._lock:
            self.rate_card = rate_card
            self.environment = environment
            self._wallet = wallet
            self._tags = checked_tags
            self._clock = clock
            self.spans: SpanMode = spans
            self.metric_tags: tuple[str, ...] = metric_tags
            self._version += 1
            for spec, price in prices:
                spec.settle(price, checked_tags, self._version)
        for hook in list(_METER_HOOKS):
            hook(self)

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
        deferred = self._deferred
        if (
            deferred is not None
            and environment is None
            and isinstance(rate_card, RateCard)
            and deferred.value in rate_card.environments
        ):
            environment = deferred.value  # the variable's environment, priced by this card
        self._apply(
            rate_card=rate_card or self.rate_card,
            environment=environment or self.environment,
            wallet=self._wallet if wallet is None else wallet,
            tags=self._tags if tags is None else tags,
            clock=clock or self._clock,
            spans=spans or self.spans,
            metric_tags=self.metric_tags if metric_tags is None else metric_tags,
        )
        if environment is not None:
            self._deferred = None
        return self

    def _default_wallet(self, rate_card: RateCard) -> Sink:
        """Return the wallet of a meter made without one: the wallet service of
        ``FLEXCREDITS_URL`` if set, else an in-memory `OfflineWallet` that says so at the first
        action and, at exit, how many records it kept only in memory."""
        from .wallets._env import env_wallet

        wallet: Sink | None = env_wallet()
        if wallet is not None:
            return wallet
        from .wallets._offline import OfflineWallet

        self._memory_wallet = memory = OfflineWallet(rate_card=rate_card)
        self._memory_notice = notice = _MemoryNotice(self)
        self.add_observer(notice)
        at_exit(notice)
        return memory

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
        return bool(self.wallet.flush(timeout))

    def shutdown(self, timeout: float | None = None) -> bool:
        """Flush and close the wallet; return whether everything was delivered in time."""
        return bool(self.wallet.shutdown(timeout))

    # --- declaring actions --------------------------------------------------------------------

    def _spec(self, name: Any, action_type: Any, units: Any, tags: Any) -> Spec:
        deferred = self._deferred
        if deferred is not None:
            raise type(deferred)(deferred.field, deferred.value, deferred.reason)
        check_name(name, "name")
        if not isinstance(action_type, str) or not action_type:
            raise ConfigurationError("action_type", action_type, "must be a non-empty string")
        spec = Spec(name, action_type, check_units(units), check_tags(tags or {}))
        if len(self._tags.keys() | spec.tags.keys()) > MAX_TAGS:
            check_tags(spec.tags, base=self._tags)
        with self._lock:
            rate_card = self.rate_card
            price = rate_card.price(action_type, self.environment, action=name)
            spec.settle(price, self._tags, self._version)
            self._specs.add(spec)
        warn_if_unlisted(rate_card, name, action_type)
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

        Also works on the tool objects of the agent frameworks that `flexcredits_sdk.integrations`
        adapts (langchain-core, openai-agents, pydantic-ai, llama-index-core, MCP): it meters the
        tool's function(s) and returns a tool of the same type, name, description and argument
        schema, named after the tool unless `name` is given. So ``@metered_action`` may sit
        above or below the framework's ``@tool`` decorator.

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

        specs: dict[str, Spec] = {}

        def tool_wrap(function: Callable[..., Any], tool: str) -> Callable[..., Any]:
            """Meter a tool object's function: every function of one tool is one action."""
            spec = specs.get(tool)
            if spec is None:
                action_name = name if name is not None else tool
                spec = specs[tool] = self._spec(action_name, action_type, units, tags)
            return self._decorate(function, spec)

        def decorate(f: Callable[P, R]) -> Callable[P, R]:
            target: Any = f
            rewrap: Any = None
            if isinstance(f, classmethod | staticmethod):
                rewrap, target = type(f), f.__func__
            if not _is_function(target):
                metered = meter_tool(target, tool_wrap)
                if metered is not None:
                    return metered  # type: ignore[no-any-return]
            check_decoratable(target, f)
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


def _no_end(_: BaseException | None) -> None:
    return None


#: Attributes by which the tool objects of agent frameworks (langchain, crewai, llama-index,
#: smolagents, ...) are known: each wraps a function and calls it from one of them.
_TOOL_ATTRIBUTES = ("func", "coroutine", "invoke", "ainvoke", "run", "arun", "fn", "forward")


def _is_function(target: Any) -> bool:
    return (
        inspect.isroutine(target)
        or isinstance(target, (functools.partial, type))
        or not callable(target)
    )


def check_decoratable(target: Any, given: Any) -> None:
    """Refuse what `metered_action` cannot wrap without changing it: anything but a function
    or a method (a class, a tool object of an agent framework, another callable object).

    Raises:
        ConfigurationError: `target` is not a function or method; the message says what to do.
    """
    if inspect.isroutine(target) or isinstance(target, functools.partial):
        return
    if isinstance(target, type):
        raise ConfigurationError(
            "func",
            given,
            "is a class, and metered_action decorates functions and methods only (it would "
            "turn the class into a function): decorate the methods whose calls are actions",
        )
    if not callable(target):
        raise ConfigurationError("func", given, "must be a function or a method")
    if any(hasattr(target, name) for name in _TOOL_ATTRIBUTES):
        raise ConfigurationError(
            "func",
            given,
            f"is a {type(target).__qualname__} object, not a function (a tool of an agent "
            "framework that flexcredits_sdk.integrations does not adapt?): decorate the "
            "function under the framework's tool decorator, with @metered_action placed below "
            "@tool",
        )
    raise ConfigurationError(
        "func",
        given,
        f"is a callable {type(target).__qualname__} object, not a function: decorate its "
        "class's __call__ method, or a function that calls it",
    )


def _environment_variable(rate_card: Any) -> str:
    """Return the environment named by ``FLEXCREDITS_ENVIRONMENT``, else ``"production"``.

    Raises:
        UnknownEnvironment: The rate card does not price it (the error names the variable).
    """
    value = os.environ.get(ENVIRONMENT_VARIABLE)
    if not value:
        return "production"
    if isinstance(rate_card, RateCard) and value not in rate_card.environments:
        raise UnknownEnvironment(
            ENVIRONMENT_VARIABLE,
            value,
            f"the environment variable names an environment that rate card "
            f"{rate_card.name!r} does not price; it prices {sorted(rate_card.environments)}: "
            f"set {ENVIRONMENT_VARIABLE} to one of them, or pass environment=",
        )
    return value


def default_meter() -> Meter:
    """Return a meter configured from the environment variables, without raising: an error in
    one (a ``FLEXCREDITS_ENVIRONMENT`` the rate card does not price) is raised at first use,
    when an action is declared, unless `Meter.configure` settles it first."""
    try:
        return Meter()
    except ConfigurationError as exc:
        meter = Meter(environment="production")
        meter._deferred = exc
        return meter


class _MemoryNotice:
    """Says once, at a meter's first action, that its records are kept in memory only; and at
    exit (through `_process.at_exit`), how many were kept only there and are lost."""

    exit_timeout = 0.0

    def __init__(self, meter: Meter) -> None:
        self._meter = weakref.ref(meter)
        self._said = False

    def on_start(self, action: Action) -> None:
        return None

    def on_end(self, action: Action, exc: BaseException | None, credits: Any) -> None:
        return None

    def on_record(self, record: UsageRecord) -> None:
        meter = self._meter()
        if meter is None or self._said:
            return
        self._said = True
        meter.remove_observer(self)
        if meter.wallet is meter._memory_wallet:
            logger.warning(
                "flexcredits: no wallet is configured, so records are kept in memory only, in "
                "an OfflineWallet, and lost at exit; pass wallet= to fc.configure() or "
                "fc.Meter(), or set %s to deliver them to a wallet service",
                URL_VARIABLE,
            )

    def shutdown(self, timeout: float | None = None) -> bool:
        """Say how many records the meter kept only in memory (they are lost now)."""
        meter = self._meter()
        wallet: Any = meter._memory_wallet if meter is not None else None
        if wallet is None:
            return True
        rows = wallet.usage()
        if rows and rows[0].records:
            logger.warning(
                "flexcredits: %d records (%s credits) were kept only in memory and are lost at "
                "exit; configure a wallet (a file: OfflineWallet(path=...), or a wallet service) "
                "to keep them",
                rows[0].records,
                rows[0].credits,
            )
        return True
