"""clinical notes, text values and doctors' reasons are free text of any length

They were VARCHAR(2000 / 500 / 1000): SQLite stored longer values whatever the declared
length, PostgreSQL refused the whole import or decision with a database error.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

#: (table, column, its length before)
COLUMNS = (
    ("patient_observations", "note", 2000),
    ("patient_observations", "value_text", 500),
    ("treatment_decisions", "reason", 1000),
)


def upgrade() -> None:
    for table, column, length in COLUMNS:
        with _batch(table) as batch:
            batch.alter_column(column, type_=sa.Text(), existing_type=sa.String(length))


def downgrade() -> None:
    for table, column, length in COLUMNS:
        with _batch(table) as batch:
            batch.alter_column(column, type_=sa.String(length), existing_type=sa.Text())


@contextmanager
def _batch(table: str) -> Iterator[Any]:
    """`op.batch_alter_table` (SQLite rebuilds the table); reflecting its foreign keys
    reads `users`, whose lower(username) index SQLAlchemy cannot reflect and says so."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*expression-based index", sa.exc.SAWarning)
        with op.batch_alter_table(table) as batch:
            yield batch
