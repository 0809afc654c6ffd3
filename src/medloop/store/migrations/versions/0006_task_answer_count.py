"""task queue: each task counts its answers, and an index hands out the next one

`tasks.answer_count` is kept by `repository.add_answers` (the only writer of answers) in
the same transaction as the answers; `ix_tasks_queue` matches the order in which open
tasks are handed to annotators (most answers first, then publication order), so the
next task is an index range scan instead of counting the answers of every open task.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

QUEUE_COLUMNS: list[str | sa.TextClause] = [
    "project_id",
    "status",
    "kind",
    "is_gold",
    sa.text("answer_count DESC"),
    "id",
]


def upgrade() -> None:
    # Plain ALTER and CREATE INDEX: no batch table rebuild of a table others reference.
    op.add_column(
        "tasks", sa.Column("answer_count", sa.Integer(), nullable=False, server_default="0")
    )
    op.execute(
        "UPDATE tasks SET answer_count = "
        "(SELECT count(*) FROM answers WHERE answers.task_id = tasks.id)"
    )
    op.create_index("ix_tasks_queue", "tasks", QUEUE_COLUMNS)


def downgrade() -> None:
    op.drop_index("ix_tasks_queue", table_name="tasks")
    op.execute("ALTER TABLE tasks DROP COLUMN answer_count")  # SQLite >= 3.35, PostgreSQL
