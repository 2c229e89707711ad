"""The docs/REFERENCE.md §3 data model as SQLAlchemy 2.0 declarative tables.

Types are chosen so the same metadata works on Postgres (the production path) and
SQLite (standalone mode): enums are named Postgres enums and CHECK constraints
elsewhere, JSONB and INET are Postgres variants of JSON and text.
"""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from neuronetz_gateway.outcome import Outcome

TENANT_NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{1,62}$"


class TenantStatus(enum.StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"


class KeyStatus(enum.StrEnum):
    ACTIVE = "active"
    REVOKED = "revoked"


def _enum(enum_class: type[enum.StrEnum], name: str) -> sa.Enum:
    return sa.Enum(
        enum_class,
        name=name,
        values_callable=lambda members: [member.value for member in members],
        create_constraint=True,
        validate_strings=True,
    )


JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
InetType = sa.String(45).with_variant(postgresql.INET(), "postgresql")
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


class UtcDateTime(sa.TypeDecorator[datetime]):
    """`timestamptz` on Postgres; on SQLite, which keeps no zone, UTC in and out.

    Values are stored converted to UTC and come back aware (UTC), so comparisons with
    `datetime.now(UTC)` work on both databases.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None or value.tzinfo is None:
            return value
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


Timestamp = UtcDateTime()


class Base(DeclarativeBase):
    metadata = sa.MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(sa.String(63), unique=True)
    status: Mapped[TenantStatus] = mapped_column(
        _enum(TenantStatus, "tenant_status"), default=TenantStatus.ACTIVE
    )
    created_at: Mapped[datetime] = mapped_column(Timestamp, server_default=sa.func.now())
    updated_at: Mapped[datetime] = mapped_column(
        Timestamp, server_default=sa.func.now(), onupdate=sa.func.now()
    )


class ApiKey(Base):
    __tablename__ = "api_keys"
    __table_args__ = (
        sa.Index(
            "uq_api_keys_tenant_id_name_active",
            "tenant_id",
            "name",
            unique=True,
            postgresql_where=sa.text("status = 'active'"),
            sqlite_where=sa.text("status = 'active'"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[uuid.UUID] = mapped_column(
        sa.ForeignKey("tenants.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(sa.String(128))
    prefix: Mapped[str] = mapped_column(sa.String(16), unique=True)
    key_hash: Mapped[str] = mapped_column(sa.Text)
    status: Mapped[KeyStatus] = mapped_column(
        _enum(KeyStatus, "key_status"), default=KeyStatus.ACTIVE
    )
    created_at: Mapped[datetime] = mapped_column(Timestamp, server_default=sa.func.now())
    expires_at: Mapped[datetime | None] = mapped_column(Timestamp)
    revoked_at: Mapped[datetime | None] = mapped_column(Timestamp)
    last_used_at: Mapped[datetime | None] = mapped_column(Timestamp)
    prompt_logging: Mapped[bool] = mapped_column(
        sa.Boolean, default=False, server_default=sa.false()
    )
    prompt_log_ttl_hours: Mapped[int | None] = mapped_column(sa.Integer)


class _LimitColumns:
    rpm: Mapped[int | None] = mapped_column(sa.Integer)
    tpm: Mapped[int | None] = mapped_column(sa.BigInteger)
    max_concurrent: Mapped[int | None] = mapped_column(sa.Integer)
    daily_tokens: Mapped[int | None] = mapped_column(sa.BigInteger)
    monthly_tokens: Mapped[int | None] = mapped_column(sa.BigInteger)
    total_tokens: Mapped[int | None] = mapped_column(sa.BigInteger)


LIMIT_FIELDS = ("rpm", "tpm", "max_concurrent", "daily_tokens", "monthly_tokens", "total_tokens")


class TenantLimits(_LimitColumns, Base):
    __tablename__ = "tenant_limits"

    tenant_id: Mapped[uuid.UUID] = mapped_column(
        sa.ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    allow_all_models: Mapped[bool] = mapped_column(
        sa.Boolean, default=False, server_default=sa.false()
    )
    # Usage of this tenant exported as metrics by name (docs/OBSERVABILITY.md).
    metrics: Mapped[bool] = mapped_column(sa.Boolean, default=False, server_default=sa.false())
    # The tenant's share of Ollama's slots while tenants wait for them (docs/SCHEDULING.md).
    weight: Mapped[int] = mapped_column(sa.Integer, default=1, server_default="1")


class KeyLimits(_LimitColumns, Base):
    __tablename__ = "key_limits"

    key_id: Mapped[uuid.UUID] = mapped_column(
        sa.ForeignKey("api_keys.id", ondelete="CASCADE"), primary_key=True
    )
    allow_all_models: Mapped[bool | None] = mapped_column(sa.Boolean)


class Model(Base):
    __tablename__ = "models"

    name: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    digest: Mapped[str | None] = mapped_column(sa.String(128))
    size_bytes: Mapped[int | None] = mapped_column(sa.BigInteger)
    details: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    available: Mapped[bool] = mapped_column(sa.Boolean, default=True, server_default=sa.true())
    first_seen_at: Mapped[datetime] = mapped_column(Timestamp, server_default=sa.func.now())
    last_seen_at: Mapped[datetime] = mapped_column(Timestamp, server_default=sa.func.now())
    upstream: Mapped[str | None] = mapped_column(sa.Text)
    # As Ollama reported it (nanoseconds, offset): passed through on /api/tags.
    modified_at: Mapped[str | None] = mapped_column(sa.String(64))
    # A cloud model (catalog.models.is_cloud_model) an operator allowed with
    # `register-model --cloud`; without it the model is never available.
    cloud_approved: Mapped[bool] = mapped_column(
        sa.Boolean, default=False, server_default=sa.false()
    )


class ModelUpstream(Base):
    """Which Ollama server has which model, as its last successful poll reported it.

    The servers a model is routed to (docs/UPSTREAMS.md); `models.upstream` stays the
    one server `list-models` shows, or the one an admin pinned the model to.
    """

    __tablename__ = "model_upstreams"

    model_name: Mapped[str] = mapped_column(
        sa.ForeignKey("models.name", ondelete="CASCADE"), primary_key=True
    )
    upstream: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    last_seen_at: Mapped[datetime] = mapped_column(Timestamp)


class ModelGrant(Base):
    __tablename__ = "model_grants"
    # Two partial indexes make (tenant, key, model) unique although key_id is nullable:
    # a plain UNIQUE would treat two tenant-wide grants (key_id NULL) as distinct.
    __table_args__ = (
        sa.Index(
            "uq_model_grants_tenant_model",
            "tenant_id",
            "model_name",
            unique=True,
            postgresql_where=sa.text("key_id IS NULL"),
            sqlite_where=sa.text("key_id IS NULL"),
        ),
        sa.Index(
            "uq_model_grants_tenant_key_model",
            "tenant_id",
            "key_id",
            "model_name",
            unique=True,
            postgresql_where=sa.text("key_id IS NOT NULL"),
            sqlite_where=sa.text("key_id IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("tenants.id", ondelete="CASCADE"))
    key_id: Mapped[uuid.UUID | None] = mapped_column(
        sa.ForeignKey("api_keys.id", ondelete="CASCADE")
    )
    model_name: Mapped[str] = mapped_column(sa.String(255))
    created_at: Mapped[datetime] = mapped_column(Timestamp, server_default=sa.func.now())


class UsageDaily(Base):
    __tablename__ = "usage_daily"

    day: Mapped[date] = mapped_column(sa.Date, primary_key=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True)
    key_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True)
    # '' for requests that name no model (listings): primary-key columns cannot be NULL.
    model: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    requests: Mapped[int] = mapped_column(sa.BigInteger, default=0, server_default="0")
    prompt_tokens: Mapped[int] = mapped_column(sa.BigInteger, default=0, server_default="0")
    completion_tokens: Mapped[int] = mapped_column(sa.BigInteger, default=0, server_default="0")


class AuditLog(Base):
    __tablename__ = "audit_log"
    # No foreign keys: audit rows outlive the keys and tenants they name (docs/REFERENCE.md §3.2).
    __table_args__ = (
        sa.Index("ix_audit_log_tenant_id_ts", "tenant_id", "ts"),
        sa.Index("ix_audit_log_key_id_ts", "key_id", "ts"),
        sa.Index("ix_audit_log_ts", "ts"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(sa.String(128))
    ts: Mapped[datetime] = mapped_column(Timestamp)
    tenant_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)
    key_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)
    method: Mapped[str] = mapped_column(sa.String(16))
    route: Mapped[str] = mapped_column(sa.String(64))
    model: Mapped[str | None] = mapped_column(sa.String(255))
    status_code: Mapped[int] = mapped_column(sa.SmallInteger)
    outcome: Mapped[Outcome] = mapped_column(_enum(Outcome, "request_outcome"))
    prompt_tokens: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")
    completion_tokens: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")
    latency_ms: Mapped[float] = mapped_column(sa.Float)
    upstream_ms: Mapped[float | None] = mapped_column(sa.Float)
    client_ip: Mapped[str | None] = mapped_column(InetType)
    user_agent: Mapped[str | None] = mapped_column(sa.String(512))
    # The client's own X-Request-ID (well-formed ones only); request_id is always ours.
    client_request_id: Mapped[str | None] = mapped_column(sa.String(128))
    # Milliseconds waited for a slot of an Ollama server; NULL: the request took none.
    queue_ms: Mapped[float | None] = mapped_column(sa.Float)


class PromptLog(Base):
    __tablename__ = "prompt_logs"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(sa.String(128))
    tenant_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid)
    key_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid)
    ts: Mapped[datetime] = mapped_column(Timestamp)
    expires_at: Mapped[datetime] = mapped_column(Timestamp, index=True)
    request: Mapped[Any] = mapped_column(JSONType)
    response: Mapped[str | None] = mapped_column(sa.Text)


class AuditBatch(Base):
    """Marker of a committed audit batch: makes retried batches exactly-once (docs/AUDIT.md)."""

    __tablename__ = "audit_batches"

    batch_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True)
    written_at: Mapped[datetime] = mapped_column(Timestamp, index=True)
