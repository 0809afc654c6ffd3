"""`next_task` reads a first page of open tasks when no model ranks them, and the whole
window when every task on that page is held by other people."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import pytest

from medloop.config import Settings
from medloop.store import assignments
from medloop.store import repository as repo
from medloop.types import Role
from medloop.workflows import Workspace, annotate
from medloop.workflows.accounts import Account


def _workspace(
    tmp_path: Path, n_tasks: int, required: int = 3
) -> tuple[Workspace, list[int], Account]:
    ws = Workspace.open(Settings(home=tmp_path / "home"))
    with ws.db.session() as s:
        project = repo.create_project(s, name="chest", classes=["a", "b"], n_channels=1)
        repo.add_items(
            s,
            project=project,
            items=[
                repo.NewItem(source_ref=f"{i}.png", image_sha256=f"{i:064x}", split="train")
                for i in range(n_tasks)
            ],
        )
        items = repo.items_frame(s, project_id=project.id).index.tolist()
        tasks = repo.create_tasks(
            s, project_id=project.id, item_ids=items, required_answers=required
        )
        user = repo.create_user(s, username="ann", role=Role.ANNOTATOR)
        account = Account(id=user.id, username="ann", role=Role.ANNOTATOR)
    return ws, tasks, account


def test_past_a_page_of_held_tasks_the_next_free_one_is_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(annotate, "PAGE", 3)
    ws, tasks, ann = _workspace(tmp_path, 6, required=1)
    try:
        with ws.db.session() as s:
            others = repo.ensure_users(
                s, usernames=[f"o{i}" for i in range(5)], role=Role.ANNOTATOR, simulated=False
            )
        now = time.time()
        held = [*tasks[:4], tasks[5]]  # others hold every task but the fifth
        for person, task in zip(others.values(), held, strict=True):
            with ws.db.writing() as w:
                assignments.hold_first(w, worker_id=person, task_ids=[task], now=now, seconds=60)
        found = annotate.next_task(ws, account=ann, now=now)
        assert found is not None and found.task_id == tasks[4]
        assert annotate.next_task(ws, account=ann, now=now) == found, "asking again: the same"
        later = annotate.next_task(ws, account=ann, now=now + 120)
        assert later is not None and later.task_id == tasks[0], "the others' holds expired"
    finally:
        ws.close()


def test_with_a_model_the_whole_window_is_ranked_by_uncertainty(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(annotate, "PAGE", 2)
    ws, _, ann = _workspace(tmp_path, 5)
    try:
        with ws.db.session() as s:
            project = repo.get_project(s, name="chest")
            items = repo.items_frame(s, project_id=project.id).index
            doubtful = int(items[-1])  # beyond the first page
            probabilities = pd.DataFrame(
                [[0.5, 0.5] if i == doubtful else [0.9, 0.1] for i in items],
                index=items,
                columns=[0, 1],
            )
            version = repo.add_model_version(
                s, project_id=project.id, network="t", checkpoint_path="-", n_train=0, metrics={}
            )
            repo.save_predictions(s, model_version_id=version.id, probabilities=probabilities)
        found = annotate.next_task(ws, account=ann)
        assert found is not None and found.item_id == doubtful
    finally:
        ws.close()
