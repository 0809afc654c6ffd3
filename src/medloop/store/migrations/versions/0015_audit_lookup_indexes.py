"""the audit log is found by people's and actions' names in any case through indexes

The audit page filters by the start of a name in any case (lower(actor) LIKE 'dora%'),
which no index served: ix_audit_log_actor_id holds the names as written, so every
filtered page scanned the whole log (1.4-1.8 s at 1,000,000 entries on SQLite, 0.5-1.1 s
on PostgreSQL). Indexes on the lower-cased names (text_pattern_ops on PostgreSQL, so
that LIKE can use them whatever the collation) replace it; ix_audit_log_action_id stays
for exact look-ups of an action and the page's list of actions.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for name in ("actor", "action"):
        op.create_index(
            f"ix_audit_log_lower_{name}_id",
            "audit_log",
            [sa.func.lower(sa.column(name)).label(f"lower_{name}"), "id"],
            postgresql_ops={f"lower_{name}": "text_pattern_ops"},
        )
    op.drop_index("ix_audit_log_actor_id", table_name="audit_log")
    if op.get_bind().dialect.name == "postgresql":
        # the planner knows nothing of lower(actor) until the table is analysed: it kept
        # scanning the whole log for a rare name until autovacuum came round
        op.execute("ANALYZE audit_log")


def downgrade() -> None:
    op.create_index("ix_audit_log_actor_id", "audit_log", ["actor", "id"])
    op.drop_index("ix_audit_log_lower_action_id", table_name="audit_log")
    op.drop_index("ix_audit_log_lower_actor_id", table_name="audit_log")
