"""A recompute of the consensus replaces the last one's rows instead of adding to them
(they grew by one row per item with every `aggregate`)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from medloop.config import Settings
from medloop.store import repository as repo
from medloop.store.models import ItemLabel
from medloop.types import LabelSource, Role
from medloop.workflows import Workspace, loop
from medloop.workflows.audit import audit_log


def test_each_recompute_keeps_one_consensus_row_per_item(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(loop, "CONSENSUS_GRACE", timedelta(0))  # no training runs here
    ws = Workspace.open(Settings(home=tmp_path / "home", secret_key="k"))
    try:
        with ws.db.session() as s:
            project = repo.create_project(s, name="chest", classes=["a", "b"], n_channels=1)
            repo.add_items(
                s,
                project=project,
                items=[repo.NewItem(f"x{n}.png", f"{n:064x}", "train") for n in range(4)],
            )
            items = repo.items_frame(s, project_id=project.id).index.tolist()
            tasks = repo.create_tasks(s, project_id=project.id, item_ids=items, required_answers=3)
            people = repo.ensure_users(
                s, usernames=["ann", "ben", "cat"], role=Role.ANNOTATOR, simulated=True
            )
        for round_, person in enumerate(("ann", "ben", "cat")):
            with ws.db.session() as s:
                repo.add_answers(
                    s,
                    task_ids=tasks,
                    worker_ids=[people[person]] * len(tasks),
                    labels=[(round_ + n) % 2 for n in range(len(tasks))],
                    source=LabelSource.CROWD,
                )
            loop.aggregate(ws, project="chest", method="majority_vote", round=round_)
        with ws.db.session() as s:
            assert s.scalar(select(func.count(ItemLabel.id))) == len(items)
        runs = audit_log(ws, action="label.consensus").entries
        assert [e.detail["pruned"] for e in runs] == [4, 4, 0]  # newest first
    finally:
        ws.close()
