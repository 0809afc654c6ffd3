"""usernames are unique whatever their case

`create_user` refused "DR_HOUSE" beside "dr_house", but only by a look-up first: two
accounts added at the same moment could both pass it. A unique index on the lower-cased
name makes the database refuse the second one.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from medloop.exceptions import ConflictError

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    clashes = (
        op.get_bind()
        .execute(
            sa.text(
                "SELECT lower(username) FROM users GROUP BY lower(username) HAVING count(*) > 1"
            )
        )
        .scalars()
        .all()
    )
    if clashes:  # an index build would fail with the database's message; say what to do
        raise ConflictError(
            "usernames differing only in case must be merged or renamed before this upgrade: "
            + ", ".join(sorted(clashes))
        )
    op.create_index("uq_users_lower_username", "users", [sa.text("lower(username)")], unique=True)


def downgrade() -> None:
    op.drop_index("uq_users_lower_username", table_name="users")
