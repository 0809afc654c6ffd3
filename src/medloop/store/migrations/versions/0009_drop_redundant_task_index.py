"""drop ix_tasks_project_status: ix_tasks_queue begins with the same two columns

Every lookup by (project_id, status) can use the queue index's leading columns (SQLite
and PostgreSQL both do), so the smaller index only cost a write on every task insert and
status change.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_tasks_project_status", table_name="tasks")


def downgrade() -> None:
    op.create_index("ix_tasks_project_status", "tasks", ["project_id", "status"], unique=False)
