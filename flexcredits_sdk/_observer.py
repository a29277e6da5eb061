"""What a meter tells the parts that watch it: the `Observer` protocol.

Observers (the OpenTelemetry bridge, the pytest plugin's tracker and report, your own) register
with a meter through `Meter.add_observer`; the meter calls them around every action and never
imports them. A meter with no observers makes none of these calls.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from ._action import Action
    from ._records import UsageRecord

__all__ = ["Observer"]


@runtime_checkable
class Observer(Protocol):
    """Watches the actions of a meter; registered with `Meter.add_observer`.

    Each method runs on the caller's thread, so it must be cheap. An exception raised in one is
    logged and counted in `MeterStats.metering_errors`, never raised into the metered code.
    """

    def on_start(self, action: Action) -> None:
        """Called when `action` starts, before its body runs (it may add tags or set its id)."""

    def on_end(self, action: Action, exc: BaseException | None, credits: int | Decimal) -> None:
        """Called when `action`'s body returned (`exc` is ``None``) or raised `exc`."""

    def on_record(self, record: UsageRecord) -> None:
        """Called with the action's record once the meter handed it to its sink."""
