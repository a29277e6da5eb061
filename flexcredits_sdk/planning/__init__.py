"""Budget planning: what past actions cost under each pricing model, and when credits run out.

`simulate` replays a history of actions (JSONL, CSV or the SDK's usage records) through several
pricing models in one streaming pass; `forecast` projects daily usage with weekly seasonality.
Pricing models are data (`CreditPlan`, `PerConversation`, `PerResolution`, `PerTicket`), read
from JSON or TOML files or built from `PRESETS`.
"""

from .._exceptions import HistoryError, UnpricedAction
from ._daily import daily_from_history, daily_from_wallet, read_daily
from ._forecast import Backtest, Forecast, ForecastDay, backtest, forecast
from ._history import COLUMNS, HistoryRow, detect_format, read_history, rows_from_records
from ._plans import (
    Allotment,
    CreditPlan,
    PerConversation,
    PerResolution,
    PerTicket,
    PricingModel,
    Tier,
    dump_model,
    load_model,
    loads_model,
)
from ._presets import PRESETS, preset, resolve_model
from ._report import render
from ._results import BreakEven, CostStats, ModelResult, MonthCost, SimulationResult, TagCost
from ._simulate import Simulator, simulate
from ._svg import chart_svg

__all__ = [
    "COLUMNS",
    "PRESETS",
    "Allotment",
    "Backtest",
    "BreakEven",
    "CostStats",
    "CreditPlan",
    "Forecast",
    "ForecastDay",
    "HistoryError",
    "HistoryRow",
    "ModelResult",
    "MonthCost",
    "PerConversation",
    "PerResolution",
    "PerTicket",
    "PricingModel",
    "SimulationResult",
    "Simulator",
    "TagCost",
    "Tier",
    "UnpricedAction",
    "backtest",
    "chart_svg",
    "daily_from_history",
    "daily_from_wallet",
    "detect_format",
    "dump_model",
    "forecast",
    "load_model",
    "loads_model",
    "preset",
    "read_daily",
    "read_history",
    "render",
    "resolve_model",
    "rows_from_records",
    "simulate",
]
