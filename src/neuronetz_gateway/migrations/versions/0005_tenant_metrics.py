"""tenant_limits.metrics: tenants whose usage is exported as metrics.

Revision ID: 0005_tenant_metrics
Revises: 0004_model_upstreams
Create Date: 2026-12-02

`set-limits --tenant T --metrics on` marks a tenant; the gateway then counts its
requests and tokens under its name (docs/OBSERVABILITY.md, "Per-tenant usage"). A
constant default: instant on Postgres; SQLite adds the column in place.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_tenant_metrics"
down_revision: str | None = "0004_model_upstreams"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "tenant_limits",
        sa.Column("metrics", sa.Boolean(), nullable=False, server_default=sa.false()),
    )


def downgrade() -> None:
    with op.batch_alter_table("tenant_limits") as batch:
        batch.drop_column("metrics")
