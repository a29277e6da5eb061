"""The wallet service's tables, and the versioned migrations that create and change them.

Migrations are a short ordered list of functions, applied once each, in one transaction, and
recorded in ``schema_migrations``. Server processes that start together on one PostgreSQL
database take an advisory lock first, so exactly one of them migrates. The list is the history:
a released migration is never edited, a change is a new entry.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .._exceptions import ConfigurationError

__all__ = ["MIGRATIONS", "NANO", "from_nano", "metadata", "migrate", "schema_version", "to_nano"]

#: Credits are stored as integers in units of 10**-9 credits: exact sums in SQL everywhere.
NANO = 10**9
_SCALE = Decimal(NANO)


def to_nano(credits: int | Decimal) -> int:
    """Return `credits` in nano-credits.

    Raises:
        ConfigurationError: `credits` has more than nine decimal places.
    """
    if isinstance(credits, int):
        return credits * NANO
    scaled = credits * _SCALE
    if scaled != scaled.to_integral_value():
        raise ConfigurationError("credits", credits, "must have at most 9 decimal places")
    return int(scaled)


def from_nano(nano: int | Decimal) -> int | Decimal:
    """Return nano-credits as exact credits (an int when whole)."""
    whole, rest = divmod(int(nano), NANO)
    return whole if not rest else (Decimal(int(nano)) / _SCALE).normalize()


metadata = sa.MetaData()

tenants = sa.Table(
    "tenants",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(64), nullable=False, unique=True),
    sa.Column("created_ns", sa.BigInteger, nullable=False),
    # The ledger document (`Ledger.to_state`) and its version, bumped by every change.
    sa.Column("ledger", sa.Text, nullable=False),
    sa.Column("version", sa.BigInteger, nullable=False),
    sa.Column("webhook_url", sa.String(2000)),
    sa.Column("webhook_secret", sa.String(128)),
    # The IANA time zone of the tenant's budget periods (version 4); its ledger keeps it too.
    sa.Column("time_zone", sa.String(64), nullable=False, server_default="UTC"),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("tenant_id", sa.Integer, sa.ForeignKey("tenants.id"), nullable=False),
    sa.Column("digest", sa.String(64), nullable=False, unique=True),
    sa.Column("prefix", sa.String(16), nullable=False),
    sa.Column("created_ns", sa.BigInteger, nullable=False),
    sa.Column("revoked", sa.Boolean, nullable=False, default=False),
)

records = sa.Table(
    "records",
    metadata,
    sa.Column("tenant_id", sa.Integer, primary_key=True),
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("action", sa.String(200), nullable=False),
    sa.Column("action_type", sa.String(64), nullable=False),
    sa.Column("units", sa.Integer, nullable=False),
    sa.Column("nano_credits", sa.BigInteger, nullable=False),
    sa.Column("environment", sa.String(64), nullable=False),
    sa.Column("tags", sa.JSON, nullable=False),
    sa.Column("conversation_id", sa.String(256)),
    sa.Column("start_ns", sa.BigInteger, nullable=False),
    sa.Column("duration_ns", sa.BigInteger, nullable=False),
    sa.Column("outcome", sa.String(8), nullable=False),
    sa.Column("error_type", sa.String(256)),
    sa.Column("trace_id", sa.String(32)),
    sa.Column("span_id", sa.String(16)),
    # The tokens of the model calls made during the action, priced by the service (version 6).
    sa.Column("model_usage", sa.Text),
    sa.Index("records_by_time", "tenant_id", "start_ns"),
)

alerts = sa.Table(
    "alerts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("tenant_id", sa.Integer, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("message", sa.String(500), nullable=False),
    sa.Column("threshold", sa.String(64), nullable=False),
    sa.Column("value", sa.String(64), nullable=False),
    sa.Column("budget_id", sa.String(64)),  # budget alerts
    sa.Column("watch_id", sa.String(64)),  # low-balance alerts (version 2)
    sa.Column("at_ns", sa.BigInteger, nullable=False),
    sa.Index("alerts_by_tenant", "tenant_id", "id"),
)

deliveries = sa.Table(
    "webhook_deliveries",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("tenant_id", sa.Integer, nullable=False),
    sa.Column("alert_id", sa.Integer, nullable=False),
    sa.Column("url", sa.String(2000), nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # pending, delivered, failed
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("due_ns", sa.BigInteger, nullable=False),
    sa.Column("last_error", sa.String(500)),
    sa.Index("deliveries_due", "status", "due_ns"),
)

rate_cards = sa.Table(
    "rate_cards",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("tenant_id", sa.Integer, sa.ForeignKey("tenants.id"), nullable=False),
    # The card is in force from this time until the next version's (version 3).
    sa.Column("effective_ns", sa.BigInteger, nullable=False),
    sa.Column("card", sa.Text, nullable=False),  # `RateCard.dumps("json")`
    sa.Column("etag", sa.String(64), nullable=False),
    sa.Column("created_ns", sa.BigInteger, nullable=False),
    sa.UniqueConstraint("tenant_id", "effective_ns", name="rate_cards_version"),
)

holds = sa.Table(
    "holds",
    metadata,
    sa.Column("tenant_id", sa.Integer, primary_key=True),
    # The client's idempotency key, or one the service made (version 5).
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("nano_credits", sa.BigInteger, nullable=False),
    sa.Column("nano_remaining", sa.BigInteger, nullable=False),
    sa.Column("tags", sa.Text, nullable=False),  # JSON object
    sa.Column("budgets", sa.Text, nullable=False),  # JSON list of the hard budgets' ids
    sa.Column("status", sa.String(8), nullable=False),  # active, released, expired
    sa.Column("created_ns", sa.BigInteger, nullable=False),
    sa.Column("expires_ns", sa.BigInteger, nullable=False),
    sa.Index("holds_due", "status", "expires_ns"),
    sa.Index("holds_active", "tenant_id", "status"),
)

refusals = sa.Table(
    "refusals",
    metadata,
    sa.Column("tenant_id", sa.Integer, primary_key=True),
    # ``balance`` (insufficient credits) or the id of the hard budget that refused (version 5).
    sa.Column("scope", sa.String(64), primary_key=True),
    sa.Column("count", sa.BigInteger, nullable=False),
    sa.Column("nano_credits", sa.BigInteger, nullable=False),
    sa.Column("last_ns", sa.BigInteger, nullable=False),
)

_versions = sa.Table(
    "schema_migrations",
    sa.MetaData(),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(100), nullable=False),
)


def _initial(conn: Connection) -> None:
    # Creates the current tables, so a later migration that adds a column first checks whether
    # a new database already has it.
    metadata.create_all(conn)


def _alert_watch_ids(conn: Connection) -> None:
    """Low-balance alerts name their watch in ``watch_id``, no longer in ``budget_id``."""
    if "watch_id" not in {column["name"] for column in sa.inspect(conn).get_columns("alerts")}:
        conn.execute(sa.text("ALTER TABLE alerts ADD COLUMN watch_id VARCHAR(64)"))
    conn.execute(
        sa.update(alerts)
        .where(alerts.c.kind == "low_balance", alerts.c.budget_id.is_not(None))
        .values(watch_id=alerts.c.budget_id, budget_id=None)
    )


def _rate_cards(conn: Connection) -> None:
    """Each tenant's rate cards, by the time each comes into force."""
    rate_cards.create(conn, checkfirst=True)


def _tenant_time_zones(conn: Connection) -> None:
    """Each tenant's time zone, in which its day and month budget periods start (UTC first)."""
    if "time_zone" not in {column["name"] for column in sa.inspect(conn).get_columns("tenants")}:
        conn.execute(
            sa.text("ALTER TABLE tenants ADD COLUMN time_zone VARCHAR(64) NOT NULL DEFAULT 'UTC'")
        )


def _holds(conn: Connection) -> None:
    """Holds of credits for actions about to run, and the count of holds refused."""
    holds.create(conn, checkfirst=True)
    refusals.create(conn, checkfirst=True)


def _model_usage(conn: Connection) -> None:
    """Records carry the tokens of the model calls made during the action."""
    if "model_usage" not in {c["name"] for c in sa.inspect(conn).get_columns("records")}:
        conn.execute(sa.text("ALTER TABLE records ADD COLUMN model_usage TEXT"))


#: Every migration, in order: (version, name, function).
MIGRATIONS: list[tuple[int, str, Callable[[Connection], None]]] = [
    (1, "tenants, keys, records, alerts and webhook deliveries", _initial),
    (2, "low-balance alerts carry watch_id", _alert_watch_ids),
    (3, "rate cards of tenants, versioned by effective time", _rate_cards),
    (4, "tenants have a time zone for budget periods", _tenant_time_zones),
    (5, "holds and the holds refused", _holds),
    (6, "records carry model usage", _model_usage),
]

#: Any 64-bit number, the same in every server process: the advisory lock of migrations.
_LOCK_KEY = 0x666C6578  # "flex"


def schema_version(conn: Connection) -> int:
    """Return the latest migration applied to the database (0 for an empty database)."""
    if not sa.inspect(conn).has_table("schema_migrations"):
        return 0
    return int(conn.execute(sa.select(sa.func.max(_versions.c.version))).scalar() or 0)


def migrate(engine: sa.Engine) -> int:
    """Apply the migrations the database lacks; return the resulting version.

    Raises:
        RuntimeError: The database is newer than this code (a newer release migrated it).
    """
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
        _versions.create(conn, checkfirst=True)
        current = schema_version(conn)
        latest = MIGRATIONS[-1][0]
        if current > latest:
            raise RuntimeError(f"the database schema is version {current}; this code has {latest}")
        for version, name, apply in MIGRATIONS:
            if version > current:
                apply(conn)
                conn.execute(sa.insert(_versions).values(version=version, name=name))
        return latest
