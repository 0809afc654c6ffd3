"""a project's current model version, and the labels each version learned from

`model_versions.in_use` marks the version a project uses (True, at most one per
project; NULL on the others): before, the newest was always used, so a bad model could
not be withdrawn. Each project's newest version becomes its current one, as it was.
`model_training_labels` names the label rows each version trained on (and was chosen
on); versions trained before this migration have none (their `labels_digest` remains).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-16
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("model_versions", sa.Column("in_use", sa.Boolean(), nullable=True))
    op.execute(
        "UPDATE model_versions SET in_use = TRUE WHERE id IN ("
        "SELECT max(id) FROM model_versions GROUP BY project_id)"
    )
    op.create_index(
        "uq_model_versions_in_use", "model_versions", ["project_id", "in_use"], unique=True
    )
    op.create_table(
        "model_training_labels",
        sa.Column("model_version_id", sa.Integer(), nullable=False),
        sa.Column("item_label_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["item_label_id"],
            ["item_labels.id"],
            name=op.f("fk_model_training_labels_item_label_id_item_labels"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["model_version_id"],
            ["model_versions.id"],
            name=op.f("fk_model_training_labels_model_version_id_model_versions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "model_version_id", "item_label_id", name=op.f("pk_model_training_labels")
        ),
    )


def downgrade() -> None:
    op.drop_table("model_training_labels")
    op.drop_index("uq_model_versions_in_use", table_name="model_versions")
    with op.batch_alter_table("model_versions") as batch:
        batch.drop_column("in_use")
