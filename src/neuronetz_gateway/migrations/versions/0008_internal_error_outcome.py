"""request_outcome gains `internal_error`: the gateway itself failed.

Revision ID: 0008_internal_error_outcome
Revises: 0007_cloud_models
Create Date: 2026-12-02

A request that fails inside the gateway (a fault after admission, a bug) is audited as
`internal_error` with status 500 (or the status already sent), never as `ok`
(docs/AUDIT.md). Postgres adds the enum value in place; SQLite, where the enum is a
CHECK constraint, rebuilds `audit_log` with the wider constraint. A downgrade cannot
keep the value: such rows become `upstream_error`, the nearest outcome that existed.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_internal_error_outcome"
down_revision: str | None = "0007_cloud_models"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BEFORE = (
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
AFTER = (*BEFORE, "internal_error")


def _outcome(values: Sequence[str]) -> sa.Enum:
    return sa.Enum(*values, name="request_outcome", create_constraint=True)


def _is_postgres() -> bool:
    return bool(op.get_bind().dialect.name == "postgresql")


def upgrade() -> None:
    if _is_postgres():
        op.execute("ALTER TYPE request_outcome ADD VALUE IF NOT EXISTS 'internal_error'")
        return
    with op.batch_alter_table("audit_log") as batch:
        batch.alter_column(
            "outcome", existing_type=_outcome(BEFORE), type_=_outcome(AFTER), nullable=False
        )


def downgrade() -> None:
    op.execute("UPDATE audit_log SET outcome = 'upstream_error' WHERE outcome = 'internal_error'")
    if not _is_postgres():
        with op.batch_alter_table("audit_log") as batch:
            batch.alter_column(
                "outcome", existing_type=_outcome(AFTER), type_=_outcome(BEFORE), nullable=False
            )
        return
    # Postgres cannot drop an enum value: the type is made again without it.
    op.execute("ALTER TYPE request_outcome RENAME TO request_outcome_old")
    _outcome(BEFORE).create(op.get_bind())
    op.execute(
        "ALTER TABLE audit_log ALTER COLUMN outcome TYPE request_outcome"
        " USING outcome::text::request_outcome"
    )
    op.execute("DROP TYPE request_outcome_old")
