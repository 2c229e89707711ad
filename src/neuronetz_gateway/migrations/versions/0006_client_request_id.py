"""audit_log.client_request_id: the X-Request-ID a client sent, kept apart from ours.

Revision ID: 0006_client_request_id
Revises: 0005_tenant_metrics
Create Date: 2026-12-02

`audit_log.request_id` is always the gateway's own id from now on, so a client cannot
make rows collide by sending the same `X-Request-ID` twice; what the client sent (when
it is well-formed) is stored here. No index: lookups by a client's id are rare and
every index costs the audit writer on the hot path's behalf. Plain types only, so the
migration runs on SQLite as well.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_client_request_id"
down_revision: str | None = "0005_tenant_metrics"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("audit_log", sa.Column("client_request_id", sa.String(128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("audit_log") as batch:
        batch.drop_column("client_request_id")
