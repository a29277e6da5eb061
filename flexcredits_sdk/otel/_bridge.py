"""The meter observer that carries actions into OpenTelemetry, and how meters get one.

Every meter has a `Bridge`: importing this module registers `sync` with `add_meter_hook`, so
each meter gets one when it is made and follows it after each `configure`. A bridge joins the
meter's observers only while a real tracer or meter provider is available (one passed to
`instrument`, or the global one), so a process without an OpenTelemetry SDK pays nothing per
call. A bridge that relies on the global providers is re-resolved at most once a millisecond,
by a tick registered with `add_tick` while any bridge waits, until both are set.
"""

from __future__ import annotations

import functools
import importlib.metadata
import logging
import threading
import weakref
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from opentelemetry import metrics, trace
from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import Tracer, TracerProvider

from .._meter import add_meter_hook
from .._records import UsageRecord, add_tick, remove_tick
from ._metrics import Instruments, instruments_for, record_metrics
from ._spans import SpanTracker

if TYPE_CHECKING:
    from .._action import Action
    from .._meter import Meter

__all__ = ["Bridge", "bridge_of", "instrument", "is_real", "sync", "uninstrument"]

logger = logging.getLogger("flexcredits_sdk")

_LOCK = threading.RLock()
_BRIDGES: weakref.WeakKeyDictionary[Meter, Bridge] = weakref.WeakKeyDictionary()
_WAITING: weakref.WeakSet[Bridge] = weakref.WeakSet()
_SEEN: list[Any] = [None, None]  # the global providers at the last tick


@functools.cache
def _version() -> str | None:
    try:
        return importlib.metadata.version("flexcredits-sdk")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - not installed
        return None


def is_real(provider: object) -> bool:
    """Whether `provider` is an SDK's, not one of the API's proxy or no-op stand-ins."""
    module = type(provider).__module__
    return not module.startswith(("opentelemetry.trace", "opentelemetry.metrics"))


class Bridge:
    """Observes one meter: opens or annotates spans, sets records' span ids, counts metrics.

    Args:
        meter: The meter observed.
        tracer_provider: The tracer provider; the global one when ``None``.
        meter_provider: The meter provider; the global one when ``None``.
        genai_cost: Mirror the cost onto the draft GenAI attributes.
    """

    def __init__(
        self,
        meter: Meter,
        *,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        genai_cost: bool = False,
    ) -> None:
        self._meter = weakref.ref(meter)
        self.tracer_provider = tracer_provider
        self.meter_provider = meter_provider
        self.enabled = True
        self.installed = False
        self.spans = SpanTracker(meter, None, meter.spans, genai_cost)
        self.instruments: Instruments | None = None
        self.metric_tags: tuple[str, ...] = ()
        self._tracer_from: Any = None

    # --- observer ---------------------------------------------------------------------------

    def on_start(self, act: Action) -> None:
        """Open or pick the action's span and copy its ids into the action."""
        self.spans.start(act)

    def on_end(self, act: Action, exc: BaseException | None, credits: int | Decimal) -> None:
        """Set the action's attributes and end the span it opened."""
        self.spans.end(act, exc, credits)

    def on_record(self, record: UsageRecord) -> None:
        """Count the record in the metrics."""
        instruments = self.instruments
        if instruments is not None:
            record_metrics(instruments, record, self.metric_tags)

    # --- state ------------------------------------------------------------------------------

    def update(self) -> None:
        """Follow the meter's settings and the providers; join or leave its observers."""
        with _LOCK:
            meter = self._meter()
            if meter is None:
                _WAITING.discard(self)
                return
            if not self.enabled:
                self._set_installed(meter, False)
                self._set_instruments(meter, None)
                _WAITING.discard(self)
                return
            self.spans.mode = meter.spans
            self.metric_tags = meter.metric_tags
            tracer_provider = self.tracer_provider or trace.get_tracer_provider()
            meter_provider = self.meter_provider or metrics.get_meter_provider()
            if tracer_provider is not self._tracer_from:
                self._tracer_from = tracer_provider
                self.spans.tracer = _tracer(tracer_provider)
            self._set_instruments(
                meter,
                instruments_for(meter_provider, _version()) if is_real(meter_provider) else None,
            )
            active = self.spans.tracer is not None or self.instruments is not None
            self._set_installed(meter, active)
            waits = (self.tracer_provider is None and not is_real(tracer_provider)) or (
                self.meter_provider is None and not is_real(meter_provider)
            )
            if waits:
                _WAITING.add(self)
                _watch()
            else:
                _WAITING.discard(self)

    def _set_installed(self, meter: Meter, installed: bool) -> None:
        if installed and not self.installed:
            meter.add_observer(self)
        elif self.installed and not installed:
            meter.remove_observer(self)
        self.installed = installed

    def _set_instruments(self, meter: Meter, instruments: Instruments | None) -> None:
        if instruments is self.instruments:
            return
        if self.instruments is not None:
            self.instruments.meters.discard(meter)
        if instruments is not None:
            instruments.meters.add(meter)
        self.instruments = instruments


def _tracer(provider: TracerProvider) -> Tracer | None:
    if not is_real(provider):
        return None
    return provider.get_tracer("flexcredits_sdk", _version())


def bridge_of(meter: Meter) -> Bridge | None:
    """Return the bridge of `meter`, if it has one."""
    return _BRIDGES.get(meter)


def sync(meter: Meter) -> None:
    """Give `meter` a bridge that follows its (new) settings; run for every meter when it is
    made and after each `Meter.configure` (see `add_meter_hook`)."""
    with _LOCK:
        bridge = _BRIDGES.get(meter)
        if bridge is None:
            bridge = _BRIDGES[meter] = Bridge(meter)
        bridge.update()


def instrument(
    meter: Meter,
    *,
    tracer_provider: TracerProvider | None,
    meter_provider: MeterProvider | None,
    genai_cost: bool,
) -> Bridge:
    """Replace `meter`'s bridge with one using these providers; return it."""
    with _LOCK:
        old = _BRIDGES.get(meter)
        if old is not None:
            old.enabled = False
            old.update()
        bridge = _BRIDGES[meter] = Bridge(
            meter,
            tracer_provider=tracer_provider,
            meter_provider=meter_provider,
            genai_cost=genai_cost,
        )
        bridge.update()
        return bridge


def uninstrument(meter: Meter) -> None:
    """Stop `meter`'s bridge until `instrument` is called again."""
    with _LOCK:
        bridge = _BRIDGES.get(meter)
        if bridge is not None:
            bridge.enabled = False
            bridge.update()


# --- noticing a global provider set later -------------------------------------------------


def _watch() -> None:
    """Run `_tick` on the first action of each millisecond while bridges wait."""
    add_tick(_tick)


def _unwatch() -> None:
    remove_tick(_tick)


def _tick() -> None:
    """Re-resolve the waiting bridges when a global provider changed; never raises."""
    try:
        tracer_provider = trace.get_tracer_provider()
        meter_provider = metrics.get_meter_provider()
        if tracer_provider is _SEEN[0] and meter_provider is _SEEN[1]:
            return
        if not _LOCK.acquire(blocking=False):
            return  # another thread is updating; a later tick sees the change
        try:
            _SEEN[:] = [tracer_provider, meter_provider]
            for bridge in list(_WAITING):
                bridge.update()
            if not _WAITING:
                _unwatch()
        finally:
            _LOCK.release()
    except Exception:  # pragma: no cover - defensive: the hot path must not fail
        logger.exception("flexcredits: OpenTelemetry provider check failed")


add_meter_hook(sync)
