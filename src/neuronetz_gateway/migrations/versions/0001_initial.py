"""Initial schema: docs/REFERENCE.md §3 tables, enums, indexes and the §3.3 notification triggers.

Revision ID: 0001_initial
Revises:
Create Date: 2026-11-26

Self-contained on purpose: migrations must not import the live table definitions,
which change after this revision. Postgres gets named enums, JSONB, INET and the
triggers; SQLite (standalone mode) gets CHECK constraints, JSON and text instead.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001_initial"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TENANT_STATUS = ("active", "suspended")
KEY_STATUS = ("active", "revoked")
OUTCOMES = (
    "ok",
    "client_error",
    "auth_failed",
    "forbidden",
    "not_found",
    "rate_limited",
    "budget_exceeded",
    "upstream_error",
    "cancelled",
    "unavailable",
)

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
INET = sa.String(45).with_variant(postgresql.INET(), "postgresql")
BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)

NOTIFY_KEY_REVOKED = """
CREATE FUNCTION notify_key_revoked() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('nz_key_revoked', OLD.prefix);
    ELSIF NEW.status = 'revoked' AND OLD.status IS DISTINCT FROM NEW.status THEN
        PERFORM pg_notify('nz_key_revoked', NEW.prefix);
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
"""

# Updates that change only bookkeeping columns (last_used_at, updated_at) are not
# configuration: notifying on them would flush every replica's key cache on each use.
NOTIFY_CONFIG_CHANGED = """
CREATE FUNCTION notify_config_changed() RETURNS trigger AS $$
DECLARE
    row_data jsonb;
BEGIN
    IF TG_OP = 'DELETE' THEN
        row_data := to_jsonb(OLD);
    ELSE
        row_data := to_jsonb(NEW);
        IF TG_OP = 'UPDATE'
           AND (row_data - 'last_used_at' - 'updated_at')
               = (to_jsonb(OLD) - 'last_used_at' - 'updated_at') THEN
            RETURN NULL;
        END IF;
    END IF;
    PERFORM pg_notify('nz_config_changed', json_build_object(
        'table', TG_TABLE_NAME,
        'tenant_id', CASE WHEN TG_TABLE_NAME = 'tenants'
                          THEN row_data ->> 'id' ELSE row_data ->> 'tenant_id' END,
        'key_id', CASE WHEN TG_TABLE_NAME = 'api_keys'
                       THEN row_data ->> 'id' ELSE row_data ->> 'key_id' END
    )::text);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
"""

CONFIG_TABLES = ("tenants", "api_keys", "tenant_limits", "key_limits", "model_grants")


def _enum(name: str, values: Sequence[str]) -> sa.Enum:
    return sa.Enum(*values, name=name, create_constraint=True)


def _limit_columns() -> list[sa.Column[int]]:
    return [
        sa.Column("rpm", sa.Integer(), nullable=True),
        sa.Column("tpm", sa.BigInteger(), nullable=True),
        sa.Column("max_concurrent", sa.Integer(), nullable=True),
        sa.Column("daily_tokens", sa.BigInteger(), nullable=True),
        sa.Column("monthly_tokens", sa.BigInteger(), nullable=True),
        sa.Column("total_tokens", sa.BigInteger(), nullable=True),
    ]


def upgrade() -> None:
    op.create_table(
        "tenants",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("status", _enum("tenant_status", TENANT_STATUS), nullable=False),
        sa.Column("created_at", TS, server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", TS, server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_tenants"),
        sa.UniqueConstraint("name", name="uq_tenants_name"),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("key_hash", sa.Text(), nullable=False),
        sa.Column("status", _enum("key_status", KEY_STATUS), nullable=False),
        sa.Column("created_at", TS, server_default=sa.func.now(), nullable=False),
        sa.Column("expires_at", TS, nullable=True),
        sa.Column("revoked_at", TS, nullable=True),
        sa.Column("last_used_at", TS, nullable=True),
        sa.Column("prompt_logging", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("prompt_log_ttl_hours", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_api_keys"),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], ondelete="CASCADE", name="fk_api_keys_tenant_id_tenants"
        ),
        sa.UniqueConstraint("prefix", name="uq_api_keys_prefix"),
    )
    op.create_index("ix_api_keys_tenant_id", "api_keys", ["tenant_id"])
    op.create_index(
        "uq_api_keys_tenant_id_name_active",
        "api_keys",
        ["tenant_id", "name"],
        unique=True,
        postgresql_where=sa.text("status = 'active'"),
        sqlite_where=sa.text("status = 'active'"),
    )
    op.create_table(
        "tenant_limits",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        *_limit_columns(),
        sa.Column("allow_all_models", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", name="pk_tenant_limits"),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            ondelete="CASCADE",
            name="fk_tenant_limits_tenant_id_tenants",
        ),
    )
    op.create_table(
        "key_limits",
        sa.Column("key_id", sa.Uuid(), nullable=False),
        *_limit_columns(),
        sa.Column("allow_all_models", sa.Boolean(), nullable=True),
        sa.PrimaryKeyConstraint("key_id", name="pk_key_limits"),
        sa.ForeignKeyConstraint(
            ["key_id"], ["api_keys.id"], ondelete="CASCADE", name="fk_key_limits_key_id_api_keys"
        ),
    )
    op.create_table(
        "models",
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("digest", sa.String(128), nullable=True),
        sa.Column("size_bytes", sa.BigInteger(), nullable=True),
        sa.Column("details", JSON, nullable=True),
        sa.Column("available", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("first_seen_at", TS, server_default=sa.func.now(), nullable=False),
        sa.Column("last_seen_at", TS, server_default=sa.func.now(), nullable=False),
        sa.Column("upstream", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("name", name="pk_models"),
    )
    op.create_table(
        "model_grants",
        sa.Column("id", BIGID, autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("key_id", sa.Uuid(), nullable=True),
        sa.Column("model_name", sa.String(255), nullable=False),
        sa.Column("created_at", TS, server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_model_grants"),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            ondelete="CASCADE",
            name="fk_model_grants_tenant_id_tenants",
        ),
        sa.ForeignKeyConstraint(
            ["key_id"], ["api_keys.id"], ondelete="CASCADE", name="fk_model_grants_key_id_api_keys"
        ),
    )
    op.create_index(
        "uq_model_grants_tenant_model",
        "model_grants",
        ["tenant_id", "model_name"],
        unique=True,
        postgresql_where=sa.text("key_id IS NULL"),
        sqlite_where=sa.text("key_id IS NULL"),
    )
    op.create_index(
        "uq_model_grants_tenant_key_model",
        "model_grants",
        ["tenant_id", "key_id", "model_name"],
        unique=True,
        postgresql_where=sa.text("key_id IS NOT NULL"),
        sqlite_where=sa.text("key_id IS NOT NULL"),
    )
    op.create_table(
        "usage_daily",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("key_id", sa.Uuid(), nullable=False),
        sa.Column("model", sa.String(255), nullable=False),
        sa.Column("requests", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("prompt_tokens", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("completion_tokens", sa.BigInteger(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("day", "tenant_id", "key_id", "model", name="pk_usage_daily"),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", BIGID, autoincrement=True, nullable=False),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("ts", TS, nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=True),
        sa.Column("key_id", sa.Uuid(), nullable=True),
        sa.Column("method", sa.String(16), nullable=False),
        sa.Column("route", sa.String(64), nullable=False),
        sa.Column("model", sa.String(255), nullable=True),
        sa.Column("status_code", sa.SmallInteger(), nullable=False),
        sa.Column("outcome", _enum("request_outcome", OUTCOMES), nullable=False),
        sa.Column("prompt_tokens", sa.Integer(), server_default="0", nullable=False),
        sa.Column("completion_tokens", sa.Integer(), server_default="0", nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("upstream_ms", sa.Float(), nullable=True),
        sa.Column("client_ip", INET, nullable=True),
        sa.Column("user_agent", sa.String(512), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_audit_log"),
    )
    op.create_index("ix_audit_log_tenant_id_ts", "audit_log", ["tenant_id", "ts"])
    op.create_index("ix_audit_log_key_id_ts", "audit_log", ["key_id", "ts"])
    op.create_index("ix_audit_log_ts", "audit_log", ["ts"])
    op.create_table(
        "prompt_logs",
        sa.Column("id", BIGID, autoincrement=True, nullable=False),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("key_id", sa.Uuid(), nullable=False),
        sa.Column("ts", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("request", JSON, nullable=False),
        sa.Column("response", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_prompt_logs"),
    )
    op.create_index("ix_prompt_logs_expires_at", "prompt_logs", ["expires_at"])

    if op.get_bind().dialect.name == "postgresql":
        _create_triggers()


def _create_triggers() -> None:
    op.execute(NOTIFY_KEY_REVOKED)
    op.execute(NOTIFY_CONFIG_CHANGED)
    op.execute(
        "CREATE TRIGGER api_keys_notify_revoked AFTER UPDATE OF status OR DELETE ON api_keys "
        "FOR EACH ROW EXECUTE FUNCTION notify_key_revoked()"
    )
    for table in CONFIG_TABLES:
        op.execute(
            f"CREATE TRIGGER {table}_notify_config_changed "
            f"AFTER INSERT OR UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION notify_config_changed()"
        )


def downgrade() -> None:
    is_postgres = op.get_bind().dialect.name == "postgresql"
    if is_postgres:
        for table in CONFIG_TABLES:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_notify_config_changed ON {table}")
        op.execute("DROP TRIGGER IF EXISTS api_keys_notify_revoked ON api_keys")
        op.execute("DROP FUNCTION IF EXISTS notify_config_changed()")
        op.execute("DROP FUNCTION IF EXISTS notify_key_revoked()")
    for table in (
        "prompt_logs",
        "audit_log",
        "usage_daily",
        "model_grants",
        "models",
        "key_limits",
        "tenant_limits",
        "api_keys",
        "tenants",
    ):
        op.drop_table(table)
    if is_postgres:
        for enum_name in ("request_outcome", "key_status", "tenant_status"):
            sa.Enum(name=enum_name).drop(op.get_bind(), checkfirst=True)
