"""deleted model versions: `deleted_at` on image and risk model versions

`medloop model delete` and `medloop risk delete` remove a version's file (an image
model's checkpoint and Grad-CAM pointers, a risk, effects or expression model's pickled
blob, which keeps per-patient rows) and keep its row, marked by the time it was
deleted: answers, labels, recommendations and the audit log name the row, and `model
list` / `risk list` still explain when it was in use. NULL: the version is kept.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("model_versions", "risk_model_versions"):
        op.add_column(table, sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    for table in ("risk_model_versions", "model_versions"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("deleted_at")
