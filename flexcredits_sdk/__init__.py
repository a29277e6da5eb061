"""flexcredits-sdk: meter AI-agent actions in credits, in the agent's own process.

Decorate each agent action with `metered_action` (or wrap it in `action`); every call is
priced by a `RateCard` and booked in a wallet: an in-memory `OfflineWallet` by default, or a
wallet service through `HttpWallet`. Public submodules: `otel`, `testing`, `wallets`,
`planning`, `server`.
"""

from . import otel as otel  # attaches the OpenTelemetry bridge to every meter (see otel._bridge)
from ._action import Action, ActionScope
from ._context import conversation, current_action, current_conversation, current_tags, tags
from ._default import action, configure, flush, get_meter, metered_action, shutdown
from ._environment import (
    ALLOW_HTTP_VARIABLE,
    API_KEY_VARIABLE,
    ENVIRONMENT_VARIABLE,
    OUTBOX_DIR_VARIABLE,
    URL_VARIABLE,
)
from ._exceptions import (
    ActionRefused,
    BudgetExceeded,
    ConfigurationError,
    FlexCreditsError,
    InsufficientCredits,
    RateCardError,
    UnknownActionType,
    UnknownEnvironment,
    WalletError,
)
from ._export import DeadLetter
from ._meter import Meter, MeterStats
from ._models import Alert, Balance, BudgetInfo, GrantInfo, UsageRow
from ._observer import Observer
from ._paging import AsyncRecordStream, RecordStream
from ._pricing import ModelPrice, ModelUsage, RateCard
from ._records import UsageRecord, derive_id, new_id
from ._usage import UsageReport
from .wallets import AsyncHttpWallet, HttpWallet, OfflineWallet, Sink, Wallet

__version__ = "0.1.0"

__all__ = [
    "ALLOW_HTTP_VARIABLE",
    "API_KEY_VARIABLE",
    "ENVIRONMENT_VARIABLE",
    "OUTBOX_DIR_VARIABLE",
    "URL_VARIABLE",
    "Action",
    "ActionRefused",
    "ActionScope",
    "Alert",
    "AsyncHttpWallet",
    "AsyncRecordStream",
    "Balance",
    "BudgetExceeded",
    "BudgetInfo",
    "ConfigurationError",
    "DeadLetter",
    "FlexCreditsError",
    "GrantInfo",
    "HttpWallet",
    "InsufficientCredits",
    "Meter",
    "MeterStats",
    "ModelPrice",
    "ModelUsage",
    "Observer",
    "OfflineWallet",
    "RateCard",
    "RateCardError",
    "RecordStream",
    "Sink",
    "UnknownActionType",
    "UnknownEnvironment",
    "UsageRecord",
    "UsageReport",
    "UsageRow",
    "Wallet",
    "WalletError",
    "action",
    "configure",
    "conversation",
    "current_action",
    "current_conversation",
    "current_tags",
    "derive_id",
    "flush",
    "get_meter",
    "metered_action",
    "new_id",
    "shutdown",
    "tags",
]
