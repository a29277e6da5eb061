"""The wallet service's settings: arguments first, then environment variables, then defaults."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation
from typing import Any

from .._exceptions import ConfigurationError

__all__ = [
    "ADMIN_KEY_VARIABLE",
    "DB_VARIABLE",
    "MAX_BODY_VARIABLE",
    "METRICS_TENANT_LABEL_VARIABLE",
    "MULTIPROC_VARIABLE",
    "WEBHOOK_ALLOW_PRIVATE_VARIABLE",
    "ServerSettings",
    "default_db",
]

#: The database: a SQLite file path or a ``postgresql://`` URL.
DB_VARIABLE = "FLEXCREDITS_WALLET_DB"
#: The key that admin operations (tenants, grants) need over HTTP; unset disables them.
ADMIN_KEY_VARIABLE = "FLEXCREDITS_ADMIN_KEY"
#: The largest request body accepted, in bytes (after gzip decompression).
MAX_BODY_VARIABLE = "FLEXCREDITS_WALLET_MAX_BODY"
#: Seconds between looks for due webhook deliveries.
WEBHOOK_INTERVAL_VARIABLE = "FLEXCREDITS_WEBHOOK_INTERVAL"
#: Seconds before the first webhook retry; each further retry doubles it.
WEBHOOK_BACKOFF_VARIABLE = "FLEXCREDITS_WEBHOOK_BACKOFF"
#: Seconds between looks for expired holds, whose credit is then given back.
HOLD_SWEEP_VARIABLE = "FLEXCREDITS_HOLD_SWEEP_INTERVAL"
#: ``1`` (or ``true``) lets webhooks go to loopback, private and other non-public addresses.
WEBHOOK_ALLOW_PRIVATE_VARIABLE = "FLEXCREDITS_WEBHOOK_ALLOW_PRIVATE"
#: ``1`` (or ``true``) labels the balance metrics at ``/metrics`` with each tenant's name.
METRICS_TENANT_LABEL_VARIABLE = "FLEXCREDITS_METRICS_TENANT_LABEL"
#: prometheus-client's own variable: the directory where worker processes share metrics.
MULTIPROC_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
#: The log level of the service's JSON logs (``INFO`` by default).
LOG_LEVEL_VARIABLE = "FLEXCREDITS_WALLET_LOG_LEVEL"


def default_db() -> str:
    """Return the default database: ``wallet.db`` in the platform's data directory.

    That is ``$XDG_DATA_HOME/flexcredits/wallet.db`` (``~/.local/share/flexcredits/wallet.db``)
    on Linux, ``~/Library/Application Support/flexcredits/wallet.db`` on macOS and
    ``%LOCALAPPDATA%\\flexcredits\\wallet.db`` on Windows, whatever the working directory.
    """
    import platformdirs

    return str(platformdirs.user_data_path("flexcredits", appauthor=False) / "wallet.db")


def _seconds(name: str, value: Any) -> Decimal:
    try:
        seconds = Decimal(str(value))
    except InvalidOperation:
        raise ConfigurationError(name, value, "must be a number of seconds") from None
    if not seconds.is_finite() or seconds <= 0:
        raise ConfigurationError(name, value, "must be a positive number of seconds")
    return seconds


def _flag(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ConfigurationError(name, value, "must be true or false (1 or 0)")


@dataclass(frozen=True)
class ServerSettings:
    """How a wallet service process runs.

    Attributes:
        db: A SQLite file path or a ``postgresql://`` URL (`default_db` when not given).
        admin_key: The key admin operations need over HTTP (``None``: none are allowed).
        max_body_bytes: The largest request body accepted (413 above it), after gzip.
        webhook_interval_s: Seconds between looks for due webhook deliveries.
        webhook_backoff_s: Seconds before the first webhook retry, doubled after each.
        hold_sweep_interval_s: Seconds between looks for expired holds, whose credit is then
            given back.
        allow_private_webhooks: Whether webhooks may go to loopback, private, link-local and
            other non-public addresses (refused by default, when set and when delivered).
        log_level: The level of the JSON logs.
        metrics_tenant_label: Whether ``/metrics`` gives each tenant's balance, labelled with
            its name, rather than totals over every tenant.
    """

    db: str = dataclasses.field(default_factory=default_db)
    admin_key: str | None = None
    max_body_bytes: int = 16 * 1024 * 1024
    webhook_interval_s: Decimal = Decimal(1)
    webhook_backoff_s: Decimal = Decimal(5)
    hold_sweep_interval_s: Decimal = Decimal(1)
    allow_private_webhooks: bool = False
    log_level: str = "INFO"
    metrics_tenant_label: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.db, str) or not self.db:
            raise ConfigurationError("db", self.db, "must be a SQLite path or postgresql:// URL")
        if self.admin_key is not None and len(self.admin_key) < 16:
            raise ConfigurationError("admin_key", "<hidden>", "must be at least 16 characters")
        body = self.max_body_bytes
        if isinstance(body, bool) or not isinstance(body, int) or body < 1024:
            raise ConfigurationError("max_body_bytes", body, "must be an int of at least 1024")
        object.__setattr__(
            self, "webhook_interval_s", _seconds("webhook_interval_s", self.webhook_interval_s)
        )
        object.__setattr__(
            self, "webhook_backoff_s", _seconds("webhook_backoff_s", self.webhook_backoff_s)
        )
        object.__setattr__(
            self,
            "hold_sweep_interval_s",
            _seconds("hold_sweep_interval_s", self.hold_sweep_interval_s),
        )
        object.__setattr__(
            self,
            "allow_private_webhooks",
            _flag("allow_private_webhooks", self.allow_private_webhooks),
        )
        object.__setattr__(
            self,
            "metrics_tenant_label",
            _flag("metrics_tenant_label", self.metrics_tenant_label),
        )
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ConfigurationError("log_level", self.log_level, "must be DEBUG, INFO, ...")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> ServerSettings:
        """Return settings from `overrides`, then the environment, then the defaults.

        Raises:
            ConfigurationError: A value is malformed; the error names its variable.
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        table = (
            ("db", DB_VARIABLE),
            ("admin_key", ADMIN_KEY_VARIABLE),
            ("max_body_bytes", MAX_BODY_VARIABLE),
            ("webhook_interval_s", WEBHOOK_INTERVAL_VARIABLE),
            ("webhook_backoff_s", WEBHOOK_BACKOFF_VARIABLE),
            ("hold_sweep_interval_s", HOLD_SWEEP_VARIABLE),
            ("allow_private_webhooks", WEBHOOK_ALLOW_PRIVATE_VARIABLE),
            ("log_level", LOG_LEVEL_VARIABLE),
            ("metrics_tenant_label", METRICS_TENANT_LABEL_VARIABLE),
        )
        for field, variable in table:
            if env.get(variable):
                values[field] = env[variable]
        if "max_body_bytes" in values:
            try:
                values["max_body_bytes"] = int(values["max_body_bytes"])
            except ValueError:
                raise ConfigurationError(
                    MAX_BODY_VARIABLE, values["max_body_bytes"], "must be an int"
                ) from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        return replace(cls(), **values)

    def to_env(self) -> dict[str, str]:
        """Return the environment variables that reproduce these settings in another process."""
        env = {
            DB_VARIABLE: self.db,
            MAX_BODY_VARIABLE: str(self.max_body_bytes),
            WEBHOOK_INTERVAL_VARIABLE: str(self.webhook_interval_s),
            WEBHOOK_BACKOFF_VARIABLE: str(self.webhook_backoff_s),
            HOLD_SWEEP_VARIABLE: str(self.hold_sweep_interval_s),
            LOG_LEVEL_VARIABLE: self.log_level,
        }
        if self.admin_key:
            env[ADMIN_KEY_VARIABLE] = self.admin_key
        if self.allow_private_webhooks:
            env[WEBHOOK_ALLOW_PRIVATE_VARIABLE] = "1"
        if self.metrics_tenant_label:
            env[METRICS_TENANT_LABEL_VARIABLE] = "1"
        return env
