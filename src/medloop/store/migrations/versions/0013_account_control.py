"""accounts can be disabled, and every token of an account ended at once

`users.is_disabled` keeps an account from signing in and its tokens from working;
`users.token_epoch` is carried by each token, and raising it ends every session and API
token the account holds (a leaked password changed, a stolen session ended) without
listing them.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ALTER: no batch table rebuild of a table others reference.
    op.add_column(
        "users",
        sa.Column("is_disabled", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.add_column(
        "users", sa.Column("token_epoch", sa.Integer(), nullable=False, server_default="0")
    )


def downgrade() -> None:
    for column in ("token_epoch", "is_disabled"):  # SQLite >= 3.35, PostgreSQL
        op.execute(f"ALTER TABLE users DROP COLUMN {column}")
