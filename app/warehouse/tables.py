"""The warehouse tables (SQLAlchemy 2, typed).

Money is stored as integer nano-dollars (`*_nanousd`, 1 USD = 10**9): exact on every backend,
summable in SQL without floats, and fine enough that a single token of the cheapest catalog
price is representable. Conversion to `Decimal` happens in `app.money`.

Timestamps are UTC (see `UtcDateTime`).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Index, Integer, MetaData, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from app.warehouse.types import UtcDateTime

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

NO_ENDPOINT = "(none)"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Request(Base):
    """One inbound request to the user's application: one row per trace.

    The row exists as soon as any span of the trace has been seen. Its attribution (endpoint,
    user, team) comes from the best candidate span seen so far; each `*_key` is a sortable
    string describing that candidate, so a better candidate arriving later (in another file,
    batch or push) replaces a worse one and the result never depends on arrival order.
    """

    __tablename__ = "requests"

    trace_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    started_at: Mapped[datetime] = mapped_column(UtcDateTime())
    root_span_id: Mapped[str | None] = mapped_column(String(16))
    root_key: Mapped[str] = mapped_column(String(48))
    endpoint: Mapped[str] = mapped_column(String(512), default=NO_ENDPOINT)
    service: Mapped[str | None] = mapped_column(String(256))
    duration_ms: Mapped[int | None] = mapped_column(Integer)
    user_id: Mapped[str | None] = mapped_column(String(256))
    user_key: Mapped[str | None] = mapped_column(String(48))
    team: Mapped[str | None] = mapped_column(String(256))
    team_key: Mapped[str | None] = mapped_column(String(48))
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())

    # Every index costs the ingest (random trace ids: each insert touches each index). By user
    # or team, the dashboard and reports read the rollups (`tables_rollup`); rules and the
    # rollup refresh scan a time window (started_at). Migration 0010 dropped (user_id,
    # started_at) and (team, started_at).
    __table_args__ = (
        Index(None, "started_at"),
        Index(None, "endpoint", "started_at"),
    )


class LlmCall(Base):
    """One span that carried token usage, priced at the call's time.

    `cost_nanousd` is NULL when the model has no price: the call is kept and counted as
    unpriced, never priced as zero silently. `input_tokens` includes cached reads and cache
    writes (the OpenTelemetry GenAI convention); the cache columns say how many of them.
    """

    __tablename__ = "llm_calls"

    trace_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    span_id: Mapped[str] = mapped_column(String(16), primary_key=True)
    started_at: Mapped[datetime] = mapped_column(UtcDateTime())
    duration_ms: Mapped[int] = mapped_column(Integer, default=0)
    provider: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(256))
    response_model: Mapped[str | None] = mapped_column(String(256))
    priced_model: Mapped[str | None] = mapped_column(String(256))
    operation: Mapped[str | None] = mapped_column(String(64))
    family: Mapped[str] = mapped_column(String(32))
    input_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    cache_read_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    cache_write_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    output_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    reasoning_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    cost_nanousd: Mapped[int | None] = mapped_column(BigInteger)
    price_source: Mapped[str] = mapped_column(String(32))
    ingested_at: Mapped[datetime] = mapped_column(UtcDateTime())

    # (model, started_at): the GPU allocation's calls of a pool's models in an hour. By
    # provider, reports read the rollups or a time window; migration 0010 dropped that index.
    __table_args__ = (
        Index(None, "started_at"),
        Index(None, "model", "started_at"),
    )


class CollectorRun(Base):
    """Every run of a collector (or of `ingest`): window, outcome, rows and error text."""

    __tablename__ = "collector_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    collector: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(512), default="")
    status: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime] = mapped_column(UtcDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    window_start: Mapped[datetime | None] = mapped_column(UtcDateTime())
    window_end: Mapped[datetime | None] = mapped_column(UtcDateTime())
    rows_loaded: Mapped[int] = mapped_column(Integer, default=0)
    rows_rejected: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    # Paid API requests the run made (Cost Explorer bills each), where the collector counts them.
    api_calls: Mapped[int | None] = mapped_column(Integer)

    __table_args__ = (Index(None, "collector", "started_at"),)


class Checkpoint(Base):
    """Where a collector's source stopped reading; written in the same transaction as the data."""

    __tablename__ = "checkpoints"

    collector: Mapped[str] = mapped_column(String(64), primary_key=True)
    source: Mapped[str] = mapped_column(String(512), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class QuarantinedRecord(Base):
    """A record that could not be loaded (undecodable line, span without ids, absurd token
    counts), kept with the reason so nothing is lost silently. No payload is stored: it could
    hold prompt text, which spendguard never stores."""

    __tablename__ = "quarantine"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime())
    collector: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(512))
    location: Mapped[str] = mapped_column(String(256))
    reason: Mapped[str] = mapped_column(Text)
    trace_id: Mapped[str | None] = mapped_column(String(32))
    span_id: Mapped[str | None] = mapped_column(String(16))

    __table_args__ = (
        # Re-reading the same source quarantines the same record once.
        UniqueConstraint("collector", "source", "location"),
        Index(None, "received_at"),
    )


class ApiToken(Base):
    """An API token: only its SHA-256 is stored; the token itself is shown once at creation."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128))
    scope: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


# ── alerting (alerts/): rules, their state per group, the alert history, the outbox, audit ────


class AlertRule(Base):
    """The configuration each rule id was last evaluated with (its hash tells a rule change),
    and that last evaluation: when (the moment judged), how many groups had data or were
    firing, and how many of them were firing after it. Never evaluated: NULLs."""

    __tablename__ = "alert_rules"

    rule_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    config_hash: Mapped[str] = mapped_column(String(64))
    config_json: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())
    last_evaluated_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    last_groups: Mapped[int | None] = mapped_column(Integer)
    last_firing: Mapped[int | None] = mapped_column(Integer)


class AlertState(Base):
    """Where one (rule, group) stands: firing or resolved (a group that never fired has no row).

    `version` grows with every change: a writer updates only the version it read, so two
    evaluators cannot both fire the same group. `silenced_at` is set while the current firing
    is not notified (it came within the rule's cooldown)."""

    __tablename__ = "alert_states"

    rule_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    group_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    group_json: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    version: Mapped[int] = mapped_column(Integer, default=1)
    since: Mapped[datetime] = mapped_column(UtcDateTime())
    notified_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    silenced_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class AlertTransition(Base):
    """The alert history: every firing, re-notification and resolution, with the values (exact
    decimal text) and the window that caused it."""

    __tablename__ = "alert_transitions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime())
    rule_id: Mapped[str] = mapped_column(String(64))
    group_json: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(16))
    delivery: Mapped[str] = mapped_column(String(16))
    severity: Mapped[str] = mapped_column(String(16))
    metric: Mapped[str] = mapped_column(String(32))
    value: Mapped[str | None] = mapped_column(String(64))
    compared: Mapped[str | None] = mapped_column(String(64))
    threshold: Mapped[str | None] = mapped_column(String(64))
    requests: Mapped[int] = mapped_column(BigInteger, default=0)
    method: Mapped[str] = mapped_column(Text)
    window_start: Mapped[datetime] = mapped_column(UtcDateTime())
    window_end: Mapped[datetime] = mapped_column(UtcDateTime())
    actions: Mapped[str] = mapped_column(Text)
    config_hash: Mapped[str] = mapped_column(String(64))

    __table_args__ = (Index(None, "at"), Index(None, "rule_id", "at"))


class OutboxItem(Base):
    """One notification to deliver, durable: written with the transition, retried until it is
    delivered, refused or past the horizon. `message_id` is the `webhook-id`, the same on every
    attempt; a delivery holds `claimed_until` as a lease, so a crashed one is retried."""

    __tablename__ = "alert_outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(String(64), unique=True)
    notifier: Mapped[str] = mapped_column(String(128))
    alert_key: Mapped[str] = mapped_column(String(160))
    transition_id: Mapped[int | None] = mapped_column(Integer)
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime())
    claimed_until: Mapped[datetime | None] = mapped_column(UtcDateTime())
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_http_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime())

    __table_args__ = (Index(None, "status", "next_attempt_at"), Index(None, "created_at"))


class DisabledEndpoint(Base):
    """A notifier target that answered 410 Gone: nothing more is sent to it until the
    configured URL changes (`target_hash` is the SHA-256 of the URL, never the URL)."""

    __tablename__ = "notifier_endpoints_disabled"

    notifier: Mapped[str] = mapped_column(String(128), primary_key=True)
    target_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    disabled_at: Mapped[datetime] = mapped_column(UtcDateTime())
    reason: Mapped[str] = mapped_column(Text)


class AuditEntry(Base):
    """Append-only audit log (spendguard only ever inserts here): rule configuration changes,
    firings, resolutions, notification attempts and their outcomes."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime())
    kind: Mapped[str] = mapped_column(String(32))
    rule_id: Mapped[str | None] = mapped_column(String(64))
    group_json: Mapped[str | None] = mapped_column(Text)
    notifier: Mapped[str | None] = mapped_column(String(128))
    message_id: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[str] = mapped_column(Text)

    __table_args__ = (Index(None, "at"),)


# Tables of other domains live in their own modules; importing them here registers them on
# Base.metadata, which migrations and the models-vs-migrations test compare.
from app.warehouse import (  # noqa: E402, F401
    tables_billing,
    tables_gpu,
    tables_killswitch,
    tables_rollup,
    tables_trueup,
)
