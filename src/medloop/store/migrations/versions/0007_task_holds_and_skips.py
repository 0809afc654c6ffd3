"""task holds and skips in the database: every server process sees them

`task_holds` keeps the task each person was handed last until they answer or skip it (or
it expires), so several server processes do not hand a task to more people than it
needs; `task_skips` keeps what each person skipped across restarts.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "task_holds",
        sa.Column("worker_id", sa.Integer(), nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["worker_id"],
            ["users.id"],
            name=op.f("fk_task_holds_worker_id_users"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["task_id"], ["tasks.id"], name=op.f("fk_task_holds_task_id_tasks"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("worker_id", name=op.f("pk_task_holds")),
    )
    op.create_index(op.f("ix_task_holds_task_id"), "task_holds", ["task_id"], unique=False)
    op.create_table(
        "task_skips",
        sa.Column("worker_id", sa.Integer(), nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(length=10), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["worker_id"],
            ["users.id"],
            name=op.f("fk_task_skips_worker_id_users"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["task_id"], ["tasks.id"], name=op.f("fk_task_skips_task_id_tasks"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("worker_id", "task_id", name=op.f("pk_task_skips")),
    )


def downgrade() -> None:
    op.drop_table("task_skips")
    op.drop_index(op.f("ix_task_holds_task_id"), table_name="task_holds")
    op.drop_table("task_holds")
