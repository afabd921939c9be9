"""The registry as the first releases created it (``metadata.create_all``).

Databases created before migrations existed hold exactly this schema; they are
stamped with this revision when first opened (see ``bnncore_service.migrations``).

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "model_names",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("next_version", sa.Integer, nullable=False),
    )
    op.create_table(
        "model_versions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("params", sa.BigInteger, nullable=False),
        sa.Column("memory_bytes", sa.BigInteger, nullable=False),
        sa.Column("io_json", sa.Text, nullable=False),
        sa.UniqueConstraint("name", "version", name="uq_name_version"),
        sa.UniqueConstraint("name", "content_hash", name="uq_name_hash"),
    )
    op.create_index("ix_model_versions_name", "model_versions", ["name"])
    op.create_index(
        "ix_model_versions_content_hash", "model_versions", ["content_hash"]
    )
    op.create_table(
        "model_weights",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("uploaded_at", sa.String(40), nullable=False),
    )
    op.create_index("ix_model_weights_sha256", "model_weights", ["sha256"])


def downgrade() -> None:
    op.drop_table("model_weights")
    op.drop_table("model_versions")
    op.drop_table("model_names")
