"""Model versions: the one in use (rollback), and the label rows each learned from."""

from __future__ import annotations

import pandas as pd
import pytest
from sqlalchemy import insert, select, text
from sqlalchemy.exc import DBAPIError

from medloop.store import Database
from medloop.store import repository as repo
from medloop.store.models import ModelVersion
from medloop.types import LabelKind, LabelSource, Role


def _project(database: Database, name: str = "chest") -> tuple[int, list[int]]:
    with database.session() as s:
        project = repo.create_project(s, name=name, classes=["normal", "pneumonia"], n_channels=1)
        repo.add_items(
            s,
            project=project,
            items=[repo.NewItem(f"{name}-{i}.png", f"{i:064x}", "train") for i in range(3)],
        )
        items = repo.items_frame(s, project_id=project.id).index.tolist()
        return project.id, items


def _version(database: Database, project_id: int, **extra: object) -> int:
    with database.session() as s:
        row = repo.add_model_version(
            s,
            project_id=project_id,
            network="cnn",
            checkpoint_path="m.pt",
            n_train=3,
            metrics={},
            **extra,  # type: ignore[arg-type]
        )
        return row.version


def _in_use(database: Database, project_id: int) -> int | None:
    with database.session() as s:
        found = repo.current_model_version(s, project_id=project_id)
        return None if found is None else found.version


def test_a_new_version_is_put_in_use_and_an_earlier_one_can_be_again(
    database: Database,
) -> None:
    """The newest version was always the one used: a bad retraining could not be undone."""
    project_id, _ = _project(database)
    other_id, _ = _project(database, "skin")
    assert _in_use(database, project_id) is None
    _version(database, project_id)
    _version(database, project_id)
    _version(database, other_id)
    assert (_in_use(database, project_id), _in_use(database, other_id)) == (2, 1)

    with database.session() as s:
        first = repo.find_model_version(s, project_id=project_id, version=1)
        assert first is not None
        repo.use_model_version(s, model_version=first)
    assert (_in_use(database, project_id), _in_use(database, other_id)) == (1, 1)
    with database.session() as s:  # putting it in use again changes nothing
        again = repo.find_model_version(s, project_id=project_id, version=1)
        assert again is not None
        repo.use_model_version(s, model_version=again)
        assert again.in_use is True
    assert _in_use(database, project_id) == 1

    _version(database, project_id)  # the next training is put in use in its turn
    assert _in_use(database, project_id) == 3
    with database.session() as s:
        flags = s.execute(
            select(ModelVersion.version, ModelVersion.in_use)
            .where(ModelVersion.project_id == project_id)
            .order_by(ModelVersion.version)
        ).all()
    assert [tuple(f) for f in flags] == [(1, None), (2, None), (3, True)]


def test_the_database_keeps_one_version_in_use_per_project(database: Database) -> None:
    project_id, _ = _project(database)
    _version(database, project_id)
    with pytest.raises(DBAPIError, match=r"(?i)unique"), database.engine.begin() as connection:
        connection.execute(
            insert(ModelVersion),
            [
                {
                    "project_id": project_id,
                    "version": 2,
                    "network": "cnn",
                    "checkpoint_path": "m.pt",
                    "n_train": 1,
                    "round": 0,
                    "metrics": {},
                    "created_at": pd.Timestamp.now(tz="UTC").to_pydatetime(),
                    "in_use": True,
                }
            ],
        )


def test_migration_0016_puts_each_projects_newest_version_in_use(database: Database) -> None:
    """A deployment upgraded from 0014 goes on using the models it used."""
    project_id, _ = _project(database)
    other_id, _ = _project(database, "skin")
    database.downgrade("0014")
    with database.engine.begin() as connection:
        for project, version in [(project_id, 1), (project_id, 2), (other_id, 1)]:
            connection.execute(
                text(
                    "INSERT INTO model_versions (project_id, version, network, "
                    "checkpoint_path, n_train, round, metrics, created_at) VALUES "
                    "(:p, :v, 'cnn', 'm.pt', 1, 0, '{}', CURRENT_TIMESTAMP)"
                ),
                {"p": project, "v": version},
            )
    database.migrate()
    assert (_in_use(database, project_id), _in_use(database, other_id)) == (2, 1)


def test_a_version_keeps_the_label_rows_it_learned_from(database: Database) -> None:
    """Only a digest of the labels was kept: once doctors corrected some, nobody could
    tell which labels (or whose) had trained a model in use months ago."""
    project_id, items = _project(database)
    with database.session() as s:
        doctor = repo.create_user(s, username="dr_grey", role=Role.DOCTOR)
        consensus = pd.Series([1, 0, 1], index=items)
        probabilities = pd.DataFrame([[0.2, 0.8], [0.9, 0.1], [0.4, 0.6]], index=items)
        repo.add_item_labels(
            s,
            project_id=project_id,
            labels=consensus,
            kind=LabelKind.CONSENSUS,
            source=LabelSource.CROWD,
            method="dawid_skene",
            probabilities=probabilities,
        )
        repo.add_item_labels(
            s,
            project_id=project_id,
            labels=pd.Series([0], index=items[2:]),
            kind=LabelKind.FINAL,
            source=LabelSource.DOCTOR,
            method="review",
            decided_by_id=doctor.id,
        )
        used = pd.concat(
            [
                repo.current_labels(
                    s, project_id=project_id, kind=LabelKind.CONSENSUS, with_ids=True
                ).loc[items[:2]],
                repo.current_labels(s, project_id=project_id, kind=LabelKind.FINAL, with_ids=True),
            ]
        )
    _version(database, project_id, label_ids=used["label_id"].tolist())
    with database.session() as s:  # later the doctor changes her mind: a newer label
        repo.add_item_labels(
            s,
            project_id=project_id,
            labels=pd.Series([1], index=items[2:]),
            kind=LabelKind.FINAL,
            source=LabelSource.DOCTOR,
            method="review",
            decided_by_id=doctor.id,
        )
        version = repo.find_model_version(s, project_id=project_id, version=1)
        assert version is not None
        frame = repo.training_labels_frame(s, model_version_id=version.id)
        counts = repo.training_label_counts(s, project_id=project_id)
    assert frame["item"].tolist() == items
    assert frame["label"].tolist() == [1, 0, 0], "the labels as they were when it trained"
    assert frame["kind"].tolist() == ["consensus", "consensus", "final"]
    assert frame["method"].tolist() == ["dawid_skene", "dawid_skene", "review"]
    assert frame["decided_by"].tolist()[2] == "dr_grey"
    assert frame["probabilities"].tolist()[0] == [0.2, 0.8]
    assert frame["label_id"].tolist() == used["label_id"].tolist()
    assert counts == {version.id: 3}
