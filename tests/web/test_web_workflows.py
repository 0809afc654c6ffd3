"""Web workflows without HTTP: publishing tasks for people, reviewer evidence."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from web_support import Site, build_project

from medloop.config import Settings
from medloop.exceptions import ConflictError, InvalidInputError, NotFoundError
from medloop.store import assignments
from medloop.store import repository as repo
from medloop.types import Split
from medloop.workflows import Workspace, aggregate, annotate, dashboard, review
from medloop.workflows.accounts import Account


def test_publish_tasks_opens_unlabelled_training_items_and_gold(tmp_path: Path) -> None:
    ws = Workspace.open(Settings(home=tmp_path / "home"))
    try:
        gold = build_project(ws)
        result = annotate.publish_tasks(
            ws, project="chest", k=9, strategy="random", redundancy=3, gold_rate=0.1, seed=0
        )
        assert (result.tasks, result.gold_tasks) == (10, 1)
        with ws.db.session() as s:
            project = repo.get_project(s, name="chest")
            tasks = repo.tasks_frame(s, project_id=project.id)
            items = repo.items_frame(s, project_id=project.id)
        label_tasks = tasks[tasks["kind"] == "label"]
        assert (label_tasks["status"] == "open").all()
        ordinary = ~label_tasks["is_gold"]
        assert (label_tasks["required_answers"][ordinary] == 3).all()
        assert (label_tasks["required_answers"][~ordinary] == annotate.GOLD_ANSWERS).all()
        plain = label_tasks[~label_tasks["is_gold"]]["item"]
        assert (items.loc[plain, "split"] == Split.TRAIN).all()
        assert not set(plain) & set(gold)
        assert set(label_tasks[label_tasks["is_gold"]]["item"]) <= set(gold)
        again = annotate.publish_tasks(ws, project="chest", k=100, strategy="random")
        with ws.db.session() as s:
            tasks = repo.tasks_frame(s, project_id=repo.get_project(s, name="chest").id)
        plain_all = tasks[(tasks["kind"] == "label") & ~tasks["is_gold"]]["item"]
        assert plain_all.is_unique, "an item is never published twice"
        assert again.tasks - again.gold_tasks == 24 - len(gold) - 9
        gold_tasks = tasks[tasks["is_gold"]]["item"]
        assert gold_tasks.is_unique, "an item is never an open gold question twice"
    finally:
        ws.close()


def test_label_and_box_checks() -> None:
    assert annotate.label_index("b", ["a", "b"]) == 1
    assert annotate.label_index(0, ["a", "b"]) == 0
    for bad in ("c", 2, -1, True):
        with pytest.raises(InvalidInputError):
            annotate.label_index(bad, ["a", "b"])
    assert annotate.check_box([0, 0, 1, 1]) == [0.0, 0.0, 1.0, 1.0]
    for box in (
        [0, 0, 0, 1],
        [0.5, 0.5, 0.6, 0.1],
        [float("nan"), 0, 0.1, 0.1],
        [-0.1, 0, 0.1, 0.1],
    ):
        with pytest.raises(InvalidInputError):
            annotate.check_box(box)


def test_reviewer_sees_reliability_from_gold(site: Site) -> None:
    ws = site.ws
    with ws.db.session() as s:
        alice = repo.get_user(s, username="alice")
        bob = repo.get_user(s, username="bob")
        people = {
            "alice": Account(id=alice.id, username="alice", role=alice.role),  # type: ignore[arg-type]
            "bob": Account(id=bob.id, username="bob", role=bob.role),  # type: ignore[arg-type]
        }
    for name, account in people.items():
        while (task := annotate.next_task(ws, account=account)) is not None:
            is_gold = task.item_id in site.gold_items
            # alice is right on gold, bob always says "normal"
            label = site.gold_items[task.item_id] if is_gold and name == "alice" else 0
            annotate.submit_answer(ws, account=account, task_id=task.task_id, label=label)
    aggregate(ws, project="chest", method="majority_vote")
    entry = review.review_entries(ws)[0]
    detail = review.review_detail(ws, item_id=entry.item_id)
    by_worker = {a.worker: a for a in detail.answers}
    assert by_worker["alice"].gold_accuracy == 1.0
    with ws.db.session() as s:
        tasks = repo.tasks_frame(s, project_id=repo.get_project(s, name="chest").id)
    gold_items = tasks[tasks["is_gold"]]["item"].tolist()
    truths = [site.gold_items[i] for i in gold_items]
    assert by_worker["bob"].gold_answered == len(gold_items) == 2
    assert by_worker["bob"].gold_accuracy == sum(t == 0 for t in truths) / len(truths)
    with pytest.raises(NotFoundError):
        review.review_detail(ws, item_id=99999)
    doctor = Account(id=0, username="dora", role="doctor")  # type: ignore[arg-type]
    review.decide(ws, account=doctor, item_id=entry.item_id, label="normal")
    review.decide(ws, account=doctor, item_id=entry.item_id, label="normal")  # sent twice: done
    with pytest.raises(ConflictError, match="signed by dora at"):
        review.decide(ws, account=doctor, item_id=entry.item_id, label="pneumonia")
    with ws.db.session() as s:
        assert len(assignments.final_label_history(s, item_id=entry.item_id)) == 1


def test_crowd_figures_are_kept_until_the_project_gains_an_answer_or_a_label(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The review page's and the dashboard's fits of the crowd model are kept in the
    workspace, and what they show equals what a fresh workspace computes."""
    ws = site.ws
    fits: list[int] = []
    board_fits: list[str] = []

    def counted(module: Any, name: str, calls: list[Any]) -> None:
        original = getattr(module, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            calls.append(name)
            return original(*args, **kwargs)

        monkeypatch.setattr(module, name, call)

    counted(review, "estimated_reliability", fits)
    counted(dashboard, "_annotators", board_fits)
    counted(dashboard, "_consensus_on_gold", board_fits)
    with ws.db.session() as s:
        accounts = [
            Account(id=u.id, username=u.username, role=u.role)  # type: ignore[arg-type]
            for u in (repo.get_user(s, username=name) for name in ("alice", "bob"))
        ]

    def answer(account: Account, n: int) -> None:
        for _ in range(n):
            task = annotate.next_task(ws, account=account)
            assert task is not None
            annotate.submit_answer(ws, account=account, task_id=task.task_id, label=0)

    def as_fresh_workspace_sees_it(item_id: int) -> review.ReviewDetail:
        detail = review.review_detail(ws, item_id=item_id)
        board = dashboard.project_dashboard(ws, project="chest")
        annotators = dashboard.annotator_stats(ws, project="chest")
        fresh = Workspace.open(ws.settings)
        try:
            assert review.review_detail(fresh, item_id=item_id) == detail
            assert dashboard.project_dashboard(fresh, project="chest") == board
            assert annotators == board.annotators and board.annotators
        finally:
            fresh.close()
        return detail

    answer(accounts[0], 4)
    answer(accounts[1], 4)
    aggregate(ws, project="chest", method="majority_vote")
    item_id = review.review_entries(ws)[0].item_id
    first = as_fresh_workspace_sees_it(item_id)
    assert len(fits) == 2  # this workspace's fit and the fresh one's
    assert len(board_fits) == 4  # annotators and consensus on gold, twice
    assert review.review_detail(ws, item_id=item_id) == first
    dashboard.project_dashboard(ws, project="chest")
    dashboard.annotator_stats(ws, project="chest")
    assert len(fits) == 2, "an unchanged project is not fitted again"
    assert len(board_fits) == 4, "nor is its dashboard"
    answer(accounts[1], 2)
    as_fresh_workspace_sees_it(item_id)
    assert (len(fits), len(board_fits)) == (4, 8), "a new answer is seen"
    doctor = Account(id=0, username="dora", role="doctor")  # type: ignore[arg-type]
    other = next(e.item_id for e in review.review_entries(ws) if e.item_id != item_id)
    review.decide(ws, account=doctor, item_id=other, label="normal")
    as_fresh_workspace_sees_it(item_id)
    assert (len(fits), len(board_fits)) == (6, 12), "a new final label is seen"
