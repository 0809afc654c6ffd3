"""the risk and treatment-effect model versions a cohort uses

`risk_model_versions.in_use_as` names what a version is used for: "risk" (the one
survival model or outcome classifier that gives a cohort's patients their risk) or
"effects" (its treatment-effect model); NULL on the others, unique per project. Before,
the newest was always used, so a bad model could not be withdrawn. Each project's
newest risk model and newest effects model are put in use, as they were.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("risk_model_versions", sa.Column("in_use_as", sa.String(20), nullable=True))
    for role, kinds in (("risk", "'survival', 'classification'"), ("effects", "'effects'")):
        op.execute(
            f"UPDATE risk_model_versions SET in_use_as = '{role}' WHERE id IN ("
            f"SELECT max(id) FROM risk_model_versions WHERE kind IN ({kinds}) "
            "GROUP BY project_id)"
        )
    op.create_index(
        "uq_risk_model_versions_in_use",
        "risk_model_versions",
        ["project_id", "in_use_as"],
        unique=True,
    )


def downgrade() -> None:
    op.drop_index("uq_risk_model_versions_in_use", table_name="risk_model_versions")
    with op.batch_alter_table("risk_model_versions") as batch:
        batch.drop_column("in_use_as")
