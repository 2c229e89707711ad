"""Audit batch markers: one row per committed audit batch, for exactly-once retries.

Revision ID: 0002_audit_batches
Revises: 0001_initial
Create Date: 2026-11-27

The audit writer inserts its batch id here in the same transaction as the batch's rows;
a retry after a lost COMMIT acknowledgement finds the marker and skips the batch
(docs/AUDIT.md). Markers are purged by the retention job. Portable (Postgres, SQLite).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_audit_batches"
down_revision: str | None = "0001_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "audit_batches",
        sa.Column("batch_id", sa.Uuid(), nullable=False),
        sa.Column("written_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("batch_id", name="pk_audit_batches"),
    )
    op.create_index("ix_audit_batches_written_at", "audit_batches", ["written_at"])


def downgrade() -> None:
    op.drop_index("ix_audit_batches_written_at", table_name="audit_batches")
    op.drop_table("audit_batches")
