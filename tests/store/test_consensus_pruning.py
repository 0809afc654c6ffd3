"""Consensus rows are pruned: each recompute appended one per item, and they grew without
bound; what is current, what a model version learned from and what a running training
may have read stays (SQLite, PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
from sqlalchemy import func, select

from medloop.store import Database
from medloop.store import repository as repo
from medloop.store.models import ItemLabel
from medloop.types import LabelKind, LabelSource, Role


def _project(db: Database) -> tuple[int, list[int]]:
    with db.session() as s:
        project = repo.create_project(s, name="chest", classes=["a", "b"], n_channels=1)
        repo.add_items(
            s,
            project=project,
            items=[repo.NewItem(f"x{n}.png", f"{n:064x}", "train") for n in range(3)],
        )
        return project.id, repo.items_frame(s, project_id=project.id).index.tolist()


def _consensus(db: Database, project_id: int, items: list[int], p: float) -> list[int]:
    """One recompute: a consensus row for every item; returns their ids."""
    probabilities = pd.DataFrame({0: 1 - p, 1: p}, index=items)
    with db.session() as s:
        repo.add_item_labels(
            s,
            project_id=project_id,
            labels=(probabilities[1] > 0.5).astype(int),
            kind=LabelKind.CONSENSUS,
            source=LabelSource.CROWD,
            method="dawid_skene",
            probabilities=probabilities,
        )
        return list(
            s.scalars(select(ItemLabel.id).order_by(ItemLabel.id.desc()).limit(len(items)))
        )[::-1]


#: Far enough ahead that every replaced row is past the grace a running training has.
LATER = datetime(2100, 1, 1, tzinfo=UTC)


def _version(db: Database, project_id: int, label_ids: list[int]) -> None:
    with db.session() as s:
        repo.add_model_version(
            s,
            project_id=project_id,
            network="cnn",
            checkpoint_path="m.pt",
            n_train=3,
            metrics={},
            label_ids=label_ids,
        )


def _label_ids(db: Database, kind: LabelKind) -> set[int]:
    with db.session() as s:
        return set(s.scalars(select(ItemLabel.id).where(ItemLabel.kind == str(kind))))


def test_only_current_consensus_and_what_models_learned_from_is_kept(database: Database) -> None:
    project_id, items = _project(database)
    first = _consensus(database, project_id, items, 0.9)
    with database.session() as s:  # a doctor's label is never pruned
        doctor = repo.ensure_users(s, usernames=["dora"], role=Role.DOCTOR, simulated=True)
        repo.add_item_labels(
            s,
            project_id=project_id,
            labels=pd.Series([0], index=items[:1]),
            kind=LabelKind.FINAL,
            source=LabelSource.DOCTOR,
            method="review",
            decided_by_id=doctor["dora"],
        )
    finals = _label_ids(database, LabelKind.FINAL)
    _version(database, project_id, [])  # stored before lineage was recorded: by its time
    _consensus(database, project_id, items, 0.8)
    third = _consensus(database, project_id, items, 0.7)
    # a training read the labels while `third` was current, and a recompute came before
    # it stored its version
    _consensus(database, project_id, items, 0.6)
    _version(database, project_id, [*third[1:], *finals])  # item 0: its final label
    _consensus(database, project_id, items, 0.4)
    sixth = _consensus(database, project_id, items, 0.3)
    with database.session() as s:  # replaced a moment ago: a training may have read them
        assert repo.prune_consensus(s, project_id=project_id, replaced_before=_an_hour_ago()) == 0
    with database.session() as s:
        before = repo.current_labels(s, project_id=project_id, kind=LabelKind.CONSENSUS)
        assert repo.prune_consensus(s, project_id=project_id, replaced_before=LATER) == 10
    assert _label_ids(database, LabelKind.CONSENSUS) == {*first, *third[1:], *sixth}, (
        "second, fourth, fifth and item 0's third taught no model and are not current"
    )
    assert _label_ids(database, LabelKind.FINAL) == finals
    with database.session() as s:
        after = repo.current_labels(s, project_id=project_id, kind=LabelKind.CONSENSUS)
        assert repo.prune_consensus(s, project_id=project_id, replaced_before=LATER) == 0
    pd.testing.assert_frame_equal(after, before)
    with database.session() as s:  # the lineage is whole
        newest = repo.model_versions(s, project_id=project_id)[-1]
        lineage = repo.training_labels_frame(s, model_version_id=newest.id)
        assert sorted(lineage["label_id"]) == sorted([*third[1:], *finals])


def _an_hour_ago() -> datetime:
    return datetime.now(UTC) - timedelta(hours=1)


def test_recomputes_without_training_keep_one_row_per_item(database: Database) -> None:
    project_id, items = _project(database)
    for p in (0.9, 0.8, 0.7, 0.6):
        _consensus(database, project_id, items, p)
        with database.session() as s:
            repo.prune_consensus(s, project_id=project_id, replaced_before=LATER)
    with database.session() as s:
        rows = s.scalar(select(func.count(ItemLabel.id)))
        current = repo.current_labels(s, project_id=project_id, kind=LabelKind.CONSENSUS)
    assert rows == len(items) and current["confidence"].round(6).tolist() == [0.6] * 3
