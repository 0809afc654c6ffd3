"""web: lesion boxes drawn with an answer

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "answer_boxes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("answer_id", sa.Integer(), nullable=False),
        sa.Column("x", sa.Float(), nullable=False),
        sa.Column("y", sa.Float(), nullable=False),
        sa.Column("width", sa.Float(), nullable=False),
        sa.Column("height", sa.Float(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["answer_id"],
            ["answers.id"],
            name=op.f("fk_answer_boxes_answer_id_answers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_answer_boxes")),
    )
    with op.batch_alter_table("answer_boxes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_answer_boxes_answer_id"), ["answer_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("answer_boxes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_answer_boxes_answer_id"))
    op.drop_table("answer_boxes")
