"""Repository behaviour on SQLite and PostgreSQL."""

from __future__ import annotations

import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path

import pandas as pd
import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import insert, select, text
from sqlalchemy.exc import DBAPIError
from store_support import add_old_users

from medloop.exceptions import ConfigError, ConflictError, NotFoundError
from medloop.store import Database
from medloop.store import repository as repo
from medloop.store.db import alembic_config
from medloop.store.models import Item, User
from medloop.types import LabelKind, LabelSource, Role, TaskStatus


def _project_with_items(db: Database, n: int = 4) -> int:
    with db.session() as s:
        project = repo.create_project(
            s, name="chest", classes=["normal", "pneumonia"], n_channels=1
        )
        items = [
            repo.NewItem(
                source_ref=f"img{i}.png",
                image_sha256=f"{i:064x}",
                split="train",
                reference_label=i % 2,
                patient_pseudonym=f"P{i // 2}",
            )
            for i in range(n)
        ]
        repo.add_items(s, project=project, items=items)
        return project.id


def test_items_and_patients_round_trip(database: Database) -> None:
    project_id = _project_with_items(database)
    with database.session() as s:
        frame = repo.items_frame(s, project_id=project_id)
    assert len(frame) == 4
    assert frame["reference_label"].tolist() == [0, 1, 0, 1]
    # two items per pseudonymous patient
    assert frame["patient_id"].value_counts().tolist() == [2, 2]


def test_duplicate_item_is_refused_and_nothing_half_written(database: Database) -> None:
    project_id = _project_with_items(database)
    with pytest.raises(ConflictError, match=r"img1\.png"), database.session() as s:
        project = repo.get_project(s, name="chest")
        repo.add_items(
            s,
            project=project,
            items=[
                repo.NewItem(source_ref="new.png", image_sha256="a" * 64, split="train"),
                repo.NewItem(source_ref="img1.png", image_sha256="b" * 64, split="train"),
            ],
        )
    with database.session() as s:
        assert len(repo.items_frame(s, project_id=project_id)) == 4


def test_duplicate_project_and_missing_project(database: Database) -> None:
    _project_with_items(database)
    with pytest.raises(ConflictError), database.session() as s:
        repo.create_project(s, name="chest", classes=["a", "b"], n_channels=1)
    with pytest.raises(NotFoundError, match="existing projects"), database.session() as s:
        repo.get_project(s, name="chets")


def test_answers_close_tasks_and_refuse_double_answers(database: Database) -> None:
    project_id = _project_with_items(database)
    with database.session() as s:
        items = repo.items_frame(s, project_id=project_id).index.tolist()
        workers = repo.ensure_users(
            s, usernames=["ann", "bob"], role=Role.ANNOTATOR, simulated=True
        )
        task_ids = repo.create_tasks(
            s, project_id=project_id, item_ids=items[:2], required_answers=2
        )
        repo.add_answers(
            s,
            task_ids=[task_ids[0], task_ids[0], task_ids[1]],
            worker_ids=[workers["ann"], workers["bob"], workers["ann"]],
            labels=[1, 0, 1],
            source=LabelSource.CROWD,
        )
    with database.session() as s:
        tasks = repo.tasks_frame(s, project_id=project_id).set_index("task_id")
        assert tasks.loc[task_ids[0], "status"] == TaskStatus.DONE
        assert tasks.loc[task_ids[1], "status"] == TaskStatus.OPEN
        answers = repo.answers_frame(s, project_id=project_id)
    assert answers[["task", "worker", "label"]].values.tolist() == [
        [items[0], "ann", 1],
        [items[0], "bob", 0],
        [items[1], "ann", 1],
    ]
    with pytest.raises(ConflictError), database.session() as s:
        repo.add_answers(
            s,
            task_ids=[task_ids[0]],
            worker_ids=[workers["ann"]],
            labels=[0],
            source=LabelSource.CROWD,
        )
    with database.session() as s:
        assert len(repo.answers_frame(s, project_id=project_id)) == 3


def test_current_labels_are_the_newest_per_item(database: Database) -> None:
    project_id = _project_with_items(database)
    with database.session() as s:
        items = repo.items_frame(s, project_id=project_id).index.tolist()
        probs = pd.DataFrame([[0.8, 0.2], [0.3, 0.7]], index=items[:2], columns=[0, 1])
        repo.add_item_labels(
            s,
            project_id=project_id,
            labels=pd.Series([0, 1], index=items[:2]),
            kind=LabelKind.CONSENSUS,
            source=LabelSource.CROWD,
            method="dawid_skene",
            probabilities=probs,
        )
        repo.add_item_labels(
            s,
            project_id=project_id,
            labels=pd.Series([1], index=items[:1]),
            kind=LabelKind.CONSENSUS,
            source=LabelSource.CROWD,
            method="dawid_skene",
            round=1,
        )
    with database.session() as s:
        current = repo.current_labels(s, project_id=project_id, kind=LabelKind.CONSENSUS)
        finals = repo.current_labels(s, project_id=project_id, kind=LabelKind.FINAL)
    assert current.loc[items[0], "label"] == 1
    assert current.loc[items[1], "label"] == 1
    assert current.loc[items[1], "confidence"] == pytest.approx(0.7)
    assert finals.empty


def test_model_versions_and_predictions(database: Database) -> None:
    project_id = _project_with_items(database)
    with database.session() as s:
        items = repo.items_frame(s, project_id=project_id).index.tolist()
        v1 = repo.add_model_version(
            s,
            project_id=project_id,
            network="cnn",
            checkpoint_path="m1.pt",
            n_train=2,
            metrics={"auc": 0.9},
        )
        v2 = repo.add_model_version(
            s,
            project_id=project_id,
            network="cnn",
            checkpoint_path="m2.pt",
            n_train=4,
            metrics={"auc": 0.95},
        )
        probs = pd.DataFrame([[0.1, 0.9], [0.6, 0.4]], index=items[:2], columns=[0, 1])
        repo.save_predictions(s, model_version_id=v2.id, probabilities=probs)
    assert (v1.version, v2.version) == (1, 2)
    with database.session() as s:
        latest = repo.current_model_version(s, project_id=project_id)
        assert latest is not None and latest.metrics == {"auc": 0.95}
        back = repo.predictions_frame(s, model_version_id=v2.id, n_classes=2)
    pd.testing.assert_frame_equal(back, probs.rename_axis("item"), check_exact=False)


def test_audit_log_is_append_only(database: Database) -> None:
    with database.session() as s:
        repo.audit(s, actor="admin", action="create", entity="project", entity_id=1)
    with database.session() as s:
        assert repo.audit_frame(s)["action"].tolist() == ["create"]
    for statement in ("UPDATE audit_log SET actor = 'x'", "DELETE FROM audit_log"):
        with pytest.raises(DBAPIError, match="append-only"), database.session() as s:
            s.execute(text(statement))
    with database.session() as s:
        assert repo.audit_frame(s)["actor"].tolist() == ["admin"]


def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path: object) -> None:
    db = Database(f"sqlite:///{tmp_path}/x.db")
    db.migrate()
    with db.engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1
    db.dispose()


def test_simulated_work_never_lands_on_a_persons_account(database: Database) -> None:
    with database.session() as s:
        repo.create_user(s, username="lay-001", role=Role.ANNOTATOR, password_hash="x")
        with pytest.raises(ConflictError, match="'lay-001' is a person's account"):
            repo.ensure_users(s, usernames=["lay-001"], role=Role.ANNOTATOR, simulated=True)
        simulated = repo.ensure_users(s, usernames=["sim-1"], role=Role.DOCTOR, simulated=True)
        assert repo.ensure_users(s, usernames=["sim-1"], role=Role.DOCTOR, simulated=True) == (
            simulated
        )


def test_items_in_project_reads_only_the_items_asked_about(database: Database) -> None:
    with database.session() as s:
        project = repo.create_project(s, name="a", classes=["x", "y"], n_channels=1)
        other = repo.create_project(s, name="b", classes=["x", "y"], n_channels=1)
        for record, n in ((project, 3), (other, 2)):
            repo.add_items(
                s,
                project=record,
                items=[
                    repo.NewItem(f"{record.name}{i}", f"{record.name}{i}", "train")
                    for i in range(n)
                ],
            )
        mine = list(repo.items_frame(s, project_id=project.id).index)
        theirs = list(repo.items_frame(s, project_id=other.id).index)
        found = repo.items_in_project(s, project_id=project.id, item_ids=[*mine[:2], *theirs, 999])
        assert found == set(mine[:2])


def test_usernames_are_unique_whatever_their_case_in_the_database_too(
    database: Database,
) -> None:
    with database.session() as s:
        repo.create_user(s, username="dr_house", role=Role.DOCTOR)
    with pytest.raises(ConflictError, match="already exists"), database.session() as s:
        repo.create_user(s, username="DR_House", role=Role.DOCTOR)
    # an insert that skips the look-up (two accounts added at once) meets the index
    with pytest.raises(DBAPIError, match=r"(?i)unique"), database.engine.begin() as connection:
        connection.execute(insert(User), [{"username": "DR_HOUSE", "role": "doctor"}])


def test_migration_0011_refuses_usernames_differing_only_in_case(database: Database) -> None:
    database.downgrade("0010")
    with database.engine.begin() as connection:
        add_old_users(connection, role="doctor", usernames=["dr_house", "DR_HOUSE"])
    with pytest.raises(ConflictError, match="dr_house"):
        database.migrate()
    with database.engine.begin() as connection:
        connection.execute(text("DELETE FROM users WHERE username = 'DR_HOUSE'"))
    database.migrate()
    with database.session() as s:
        assert repo.get_user(s, username="dr_house").role == "doctor"


def test_a_database_newer_than_the_code_says_so(database: Database) -> None:
    """A software rollback met a 320-line traceback ending in "Can't locate revision"."""
    with database.engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '0099'"))
    with pytest.raises(ConfigError, match=r"at migration 0099, newer than this medloop"):
        database.migrate()


def test_commands_starting_together_on_an_older_schema_take_turns(database: Database) -> None:
    """Several processes upgrading at once: one crashed adding a column that another had
    just added (PostgreSQL; SQLite lets one writer in anyway)."""
    database.downgrade("0005")
    others = [Database(database.url) for _ in range(3)]
    try:
        with ThreadPoolExecutor(len(others)) as pool:
            list(pool.map(lambda db: db.migrate(), others))
    finally:
        for other in others:
            other.dispose()
    with database.engine.connect() as connection:
        version = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    assert version == ScriptDirectory.from_config(alembic_config()).get_current_head()


def test_a_locked_row_makes_another_process_wait(database: Database) -> None:
    """Deciding on an item (or a recommendation) checks, then writes: a second process
    must wait between the two, on SQLite too, where SELECT ... FOR UPDATE is ignored."""
    with database.session() as s:
        project = repo.create_project(s, name="p", classes=["a", "b"], n_channels=1)
        repo.add_items(s, project=project, items=[repo.NewItem("x.png", "a" * 64, "train")])
        item_id = s.scalar(select(Item.id))
    other = Database(database.url)  # another process: its own engine and write turn
    waited = threading.Event()
    try:
        with database.session() as s:
            repo.lock_row(s, Item, item_id)

            def second() -> None:
                with other.session() as t:
                    repo.get_item(t, item_id=item_id, lock=True)
                waited.set()

            thread = threading.Thread(target=second)
            thread.start()
            assert not waited.wait(0.5), "the second writer waits for the first"
        thread.join(10)
        assert waited.is_set(), "and goes on once the first has committed"
    finally:
        other.dispose()


def test_an_upgrade_of_a_sqlite_database_keeps_a_copy_from_before(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Any command upgraded an older database silently, with no way back."""
    db = Database(f"sqlite:///{tmp_path / 'medloop.db'}")
    try:
        db.migrate()
        db.downgrade("0010")
        with caplog.at_level("WARNING", logger="medloop.store.db"):
            db.migrate()
    finally:
        db.dispose()
    copy = tmp_path / "medloop.db.before-0010"
    with closing(sqlite3.connect(copy)) as connection:
        assert connection.execute("SELECT version_num FROM alembic_version").fetchone() == ("0010",)
    assert "upgraded from migration 0010" in caplog.text and str(copy) in caplog.text
