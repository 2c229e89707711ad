"""models.cloud_approved: cloud models are available only when an operator says so.

Revision ID: 0007_cloud_models
Revises: 0006_client_request_id
Create Date: 2026-12-02

Ollama forwards requests for a model whose tag ends in `cloud` to ollama.com under the
server's account (docs/REFERENCE.md §11). Discovery records such models but never makes
them available; `register-model --cloud` approves one. Cloud models discovered before
this revision become unavailable. Plain types only, so the migration runs on SQLite as
well.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from neuronetz_gateway.catalog.models import is_cloud_model

revision: str = "0007_cloud_models"
down_revision: str | None = "0006_client_request_id"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "models",
        sa.Column("cloud_approved", sa.Boolean(), server_default=sa.false(), nullable=False),
    )
    models = sa.table("models", sa.column("name", sa.String), sa.column("available", sa.Boolean))
    names = op.get_bind().scalars(sa.select(models.c.name)).all()
    cloud = [name for name in names if is_cloud_model(name)]
    if cloud:
        op.execute(sa.update(models).where(models.c.name.in_(cloud)).values(available=False))


def downgrade() -> None:
    with op.batch_alter_table("models") as batch:
        batch.drop_column("cloud_approved")
