"""Deleted model versions (migration 0019): their rows stay, marked `deleted_at`, and
what looks for the files versions keep passes them by; on SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy import inspect, text

from medloop.store import Database, erasure
from medloop.store import patients as prepo
from medloop.store import repository as repo
from medloop.store.models import utcnow


def _columns(database: Database, table: str) -> set[str]:
    return {c["name"] for c in inspect(database.engine).get_columns(table)}


def test_migration_0019_goes_down_and_up_keeping_the_versions(database: Database) -> None:
    with database.session() as s:
        project = repo.create_project(s, name="chest", classes=["a", "b"], n_channels=1)
        repo.add_model_version(
            s, project_id=project.id, network="cnn", checkpoint_path="chest/v1.pt",
            n_train=1, metrics={},
        )  # fmt: skip
    database.downgrade("0018")
    assert "deleted_at" not in _columns(database, "model_versions")
    assert "deleted_at" not in _columns(database, "risk_model_versions")
    database.migrate()
    with database.session() as s:
        (version,) = repo.model_versions(s, project_id=project.id)
        assert version.deleted_at is None and version.checkpoint_path == "chest/v1.pt"
    with database.engine.connect() as c:
        assert c.execute(text("SELECT count(*) FROM model_versions")).scalar() == 1


def test_deleted_versions_name_no_file(database: Database) -> None:
    """Checks, backups and gc pass a deleted version's file by (it is gone), the newest
    kept expression transform is the one imports use, and a blob only a deleted risk
    model named is named by nobody."""
    with database.session() as s:
        project = repo.create_project(s, name="onc", classes=["no event", "event"], n_channels=1)
        for number in (1, 2):
            image = repo.add_model_version(
                s, project_id=project.id, network="cnn", checkpoint_path=f"onc/v{number}.pt",
                n_train=1, metrics={},
            )  # fmt: skip
            genes = prepo.add_risk_model(
                s, project_id=project.id, kind="expression", method="z-score",
                blob_sha256=f"{number:064x}", n_train=1, features=[], target={}, patients=[],
            )  # fmt: skip
        image.deleted_at = genes.deleted_at = utcnow()  # both version 2s
    with database.session() as s:
        assert [v for _, v, _, _ in repo.model_checkpoints(s)] == [1]
        assert set(repo.blob_references(s)["sha256"]) == {f"{1:064x}"}
        latest = prepo.find_latest_risk_model(s, project_id=project.id, kind="expression")
        assert latest is not None and latest.version == 1
        digests = {f"{1:064x}", f"{2:064x}"}
        assert erasure.blobs_named(s, digests=digests) == {f"{1:064x}"}
