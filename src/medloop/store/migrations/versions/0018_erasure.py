"""erasure: models marked as built on erased data, risk model lineage, pseudonymised actors

`model_versions.erased_patients` and `risk_model_versions.erased_patients` count the
patients erased since (withdrawn consent, `workflows.erasure`) whose data a version was
trained on or keeps: 0 until one is. `risk_model_patients` names the patients each risk,
effects or expression model version was built from (its training rows, and those it
keeps a risk interval for); versions trained before this migration have none.

The audit log stays append-only, but an entry's `actor` may be replaced by a pseudonym
(`erased-<hex>`, nothing else of the entry changed): a person who leaves is no longer
named in it. Every other UPDATE and every DELETE is still refused by the database.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-20
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

_REFUSE = "audit_log is append-only"


def upgrade() -> None:
    for table in ("model_versions", "risk_model_versions"):
        op.add_column(
            table,
            sa.Column("erased_patients", sa.Integer(), nullable=False, server_default="0"),
        )
    op.create_table(
        "risk_model_patients",
        sa.Column("risk_model_version_id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["risk_model_version_id"],
            ["risk_model_versions.id"],
            name=op.f("fk_risk_model_patients_risk_model_version_id_risk_model_versions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["patients.id"],
            name=op.f("fk_risk_model_patients_patient_id_patients"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "risk_model_version_id", "patient_id", name=op.f("pk_risk_model_patients")
        ),
    )
    op.create_index(
        op.f("ix_risk_model_patients_patient_id"), "risk_model_patients", ["patient_id"]
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            f"""
            CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger AS $$
            BEGIN
                IF TG_OP = 'UPDATE' AND left(NEW.actor, 7) = 'erased-'
                   AND NEW.id = OLD.id AND NEW.at = OLD.at AND NEW.action = OLD.action
                   AND NEW.entity = OLD.entity
                   AND NEW.entity_id IS NOT DISTINCT FROM OLD.entity_id
                   AND NEW.detail::text IS NOT DISTINCT FROM OLD.detail::text THEN
                    RETURN NEW;
                END IF;
                RAISE EXCEPTION '{_REFUSE}';
            END;
            $$ LANGUAGE plpgsql;
            """
        )
    else:
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_update;")
        op.execute(
            "CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log "
            "WHEN NOT (substr(NEW.actor, 1, 7) = 'erased-' AND NEW.id = OLD.id "
            "AND NEW.at IS OLD.at AND NEW.action IS OLD.action AND NEW.entity IS OLD.entity "
            "AND NEW.entity_id IS OLD.entity_id AND NEW.detail IS OLD.detail) "
            f"BEGIN SELECT RAISE(ABORT, '{_REFUSE}'); END;"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            f"""
            CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger AS $$
            BEGIN
                RAISE EXCEPTION '{_REFUSE}';
            END;
            $$ LANGUAGE plpgsql;
            """
        )
    else:
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_update;")
        op.execute(
            "CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log "
            f"BEGIN SELECT RAISE(ABORT, '{_REFUSE}'); END;"
        )
    op.drop_index(op.f("ix_risk_model_patients_patient_id"), table_name="risk_model_patients")
    op.drop_table("risk_model_patients")
    for table in ("risk_model_versions", "model_versions"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("erased_patients")
