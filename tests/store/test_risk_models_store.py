"""Risk and effects model versions: the one of each a cohort uses (rollback)."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from medloop.store import Database
from medloop.store import patients as prepo
from medloop.store import repository as repo


def _cohort(database: Database, name: str) -> int:
    with database.session() as s:
        return repo.create_project(s, name=name, classes=repo.COHORT_CLASSES, n_channels=1).id


def _in_use(database: Database, project_id: int) -> dict[str, tuple[str, int]]:
    with database.session() as s:
        found = {r: prepo.risk_model_in_use(s, project_id=project_id, role=r)
                 for r in ("risk", "effects")}  # fmt: skip
        return {r: (m.kind, m.version) for r, m in found.items() if m is not None}


def test_migration_0017_puts_each_cohorts_newest_models_in_use(database: Database) -> None:
    """A deployment upgraded from 0016 goes on using the models it used: the newest
    survival model or classifier as its risk model, the newest effects model."""
    trial, other = _cohort(database, "trial"), _cohort(database, "other")
    database.downgrade("0016")
    rows = [
        (trial, "survival", 1),
        (trial, "classification", 1),
        (trial, "survival", 2),
        (trial, "effects", 1),
        (trial, "effects", 2),
        (trial, "expression", 1),
        (other, "classification", 1),
    ]
    with database.engine.begin() as connection:
        for project, kind, version in rows:
            connection.execute(
                text(
                    "INSERT INTO risk_model_versions (project_id, kind, version, method, "
                    "target, features, blob_sha256, n_train, metrics, created_at) VALUES "
                    "(:p, :k, :v, 'cox', '{}', '[]', 'x', 1, '{}', CURRENT_TIMESTAMP)"
                ),
                {"p": project, "k": kind, "v": version},
            )
    database.migrate()
    assert _in_use(database, trial) == {"risk": ("survival", 2), "effects": ("effects", 2)}
    assert _in_use(database, other) == {"risk": ("classification", 1)}

    with database.session() as s:  # a model put in use takes the place of the other
        first = prepo.find_risk_model(s, project_id=trial, kind="classification", version=1)
        assert first is not None
        prepo.use_risk_model(s, model=first, role="risk")
    assert _in_use(database, trial)["risk"] == ("classification", 1)
    with pytest.raises(IntegrityError), database.session() as s:
        s.execute(text("UPDATE risk_model_versions SET in_use_as = 'risk' WHERE project_id = :p"),
                  {"p": trial})  # fmt: skip
