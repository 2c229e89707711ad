"""models.modified_at: the model's modification time exactly as Ollama reported it.

Revision ID: 0003_models_modified_at
Revises: 0002_audit_batches
Create Date: 2026-11-27

`/api/tags` is answered from the catalog, and clients (the ollama libraries, Open WebUI)
read `modified_at`. It is kept as text because Ollama reports nanoseconds and a
timezone offset that a round trip through `timestamptz` would not preserve.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_models_modified_at"
down_revision: str | None = "0002_audit_batches"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("models", sa.Column("modified_at", sa.String(64), nullable=True))


def downgrade() -> None:
    op.drop_column("models", "modified_at")
