"""model_upstreams: which Ollama server has which model.

Revision ID: 0004_model_upstreams
Revises: 0003_models_modified_at
Create Date: 2026-12-01

With several upstreams (`OLLAMA_BASE_URLS`) a model may live on more than one server;
requests for it go to any of them (docs/UPSTREAMS.md). `models.upstream` stays: it is
the server an admin pinned a model to, or the one `list-models` shows. Existing rows
are carried over from it. Plain types only, so the migration runs on SQLite as well.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_model_upstreams"
down_revision: str | None = "0003_models_modified_at"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    model_upstreams = op.create_table(
        "model_upstreams",
        sa.Column("model_name", sa.String(255), nullable=False),
        sa.Column("upstream", sa.Text(), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["model_name"],
            ["models.name"],
            name="fk_model_upstreams_model_name_models",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("model_name", "upstream", name="pk_model_upstreams"),
    )
    models = sa.table(
        "models",
        sa.column("name", sa.String),
        sa.column("upstream", sa.Text),
        sa.column("available", sa.Boolean),
        sa.column("last_seen_at", sa.DateTime(timezone=True)),
    )
    op.execute(
        sa.insert(model_upstreams).from_select(
            ["model_name", "upstream", "last_seen_at"],
            sa.select(models.c.name, models.c.upstream, models.c.last_seen_at).where(
                models.c.upstream.is_not(None), models.c.available.is_(True)
            ),
        )
    )


def downgrade() -> None:
    op.drop_table("model_upstreams")
