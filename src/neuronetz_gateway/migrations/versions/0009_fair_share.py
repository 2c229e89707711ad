"""Fair share of Ollama (docs/REFERENCE.md §10): `tenant_limits.weight`, `audit_log.queue_ms`.

Revision ID: 0009_fair_share
Revises: 0008_internal_error_outcome
Create Date: 2026-12-03

`weight` (1 to 100, default 1) is a tenant's share of the slots while tenants compete for
them (docs/SCHEDULING.md); existing tenants get 1, so nothing changes for them until an
operator sets a weight. `queue_ms` is how long a request waited for a slot (NULL for
requests that take none). Plain types only, so the migration runs on SQLite as well; the
range of `weight` is checked by `set-limits` and clamped when it is read.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_fair_share"
down_revision: str | None = "0008_internal_error_outcome"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "tenant_limits",
        sa.Column("weight", sa.Integer, nullable=False, server_default="1"),
    )
    op.add_column("audit_log", sa.Column("queue_ms", sa.Float, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("audit_log") as batch:
        batch.drop_column("queue_ms")
    with op.batch_alter_table("tenant_limits") as batch:
        batch.drop_column("weight")
