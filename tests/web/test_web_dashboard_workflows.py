"""Dashboard, jobs and exports as workflows, without a server (and the CLI export)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from web_support import PEOPLE, build_project, open_tasks

from medloop import plots
from medloop.annotation import wilson_interval
from medloop.cli import main
from medloop.config import Settings
from medloop.exceptions import InvalidInputError, NotFoundError
from medloop.ingest import encode_png
from medloop.store import repository as repo
from medloop.types import LabelKind, Role, Split
from medloop.workflows import Workspace, aggregate, annotate, dashboard, record_decisions
from medloop.workflows import jobs as jobs_workflow
from medloop.workflows.accounts import Account
from medloop.workflows.dashboard import project_dashboard


@pytest.fixture
def ws(tmp_path: Path) -> Iterator[Workspace]:
    workspace = Workspace.open(Settings(home=tmp_path / "home"))
    yield workspace
    workspace.close()


def accounts_of(ws: Workspace) -> dict[str, Account]:
    with ws.db.session() as s:
        return {
            name: Account(id=repo.get_user(s, username=name).id, username=name, role=role)
            for name, role in PEOPLE.items()
        }


def test_dashboard_numbers_are_the_known_answers(ws: Workspace) -> None:
    gold = build_project(ws)
    open_tasks(ws)
    people = accounts_of(ws)
    # alice is always right (item parity is the truth on plain items), carol always says 0
    for name in ("alice", "carol"):
        while (task := annotate.next_task(ws, account=people[name])) is not None:
            truth = gold.get(task.item_id, task.item_id % 2)
            label = truth if name == "alice" else 0
            annotate.submit_answer(ws, account=people[name], task_id=task.task_id, label=label)
    aggregate(ws, project="chest")
    board = project_dashboard(ws, project="chest")
    # what each chart reads on its own is the dashboard's part
    assert dashboard.answers_per_day(ws, project="chest") == board.answers_per_day
    assert dashboard.annotator_stats(ws, project="chest") == board.annotators
    progress = board.progress
    assert (progress.items, progress.splits) == (30, {"train": 24, "val": 6})
    assert progress.final_labels == 4 and progress.doctor_answers == 4
    assert progress.crowd_answers == 20 and progress.answers == 24
    assert progress.labelled == 4 + 8  # gold items plus the 8 answered plain items
    assert [(d.crowd, d.doctor) for d in board.answers_per_day] == [(20, 4)]
    stats = {a.worker: a for a in board.annotators}
    assert set(stats) == {"alice", "carol"}
    for name, correct in (("alice", 2), ("carol", sum(gold[i] == 0 for i in (1, 2)))):
        row = stats[name]
        assert row.answers == 10 and row.gold_answers == 2
        low, high = wilson_interval(np.array([correct]), np.array([2]))
        assert row.gold_accuracy == correct / 2
        assert (row.gold_low, row.gold_high) == (round(low[0], 4), round(high[0], 4))
        low_, estimate, high_ = row.estimated_low, row.estimated_accuracy, row.estimated_high
        assert low_ is not None and estimate is not None and high_ is not None
        assert low_ <= estimate <= high_
    assert (stats["alice"].estimated_accuracy or 0) > (stats["carol"].estimated_accuracy or 1)
    methods = {g.method: g for g in board.consensus_on_gold}
    assert set(methods) == {"dawid_skene", "majority_vote"}
    assert all(g.items == 2 for g in methods.values()), "two gold items were put to the crowd"
    assert board.models == [] and board.learning_curve == []
    data = board.as_dict()
    json.dumps(data, default=str)  # JSON-ready
    for png in (
        plots.answers_per_day_png(data["answers_per_day"]),
        plots.annotators_png(data["annotators"]),
        plots.model_curve_png(data["learning_curve"]),
        plots.model_curve_png([]),
        plots.annotators_png([]),
    ):
        assert png.startswith(b"\x89PNG")


def test_dashboard_of_a_project_without_answers(ws: Workspace) -> None:
    build_project(ws)
    board = project_dashboard(ws, project="chest")
    assert board.annotators == [] and board.consensus_on_gold == []
    assert board.progress.crowd_answers == 0 and board.progress.final_labels == 4


def _trainable_project(ws: Workspace) -> None:
    """28x28 images whose class is a bright square; 20 signed training labels, 12 val."""
    rng = np.random.default_rng(0)
    items = []
    for split, n in ((Split.TRAIN, 30), (Split.VAL, 12), (Split.TEST, 8)):
        for row in range(n):
            image = rng.integers(0, 60, size=(28, 28), dtype=np.uint8)
            if row % 2:
                image[8:20, 8:20] = 220
            items.append(
                repo.NewItem(
                    source_ref=f"{split.value}/{row}",
                    image_sha256=ws.blobs.put(encode_png(image)),
                    split=split.value,
                    reference_label=row % 2,
                )
            )
    with ws.db.session() as s:
        project = repo.create_project(s, name="squares", classes=["no", "yes"], n_channels=1)
        repo.add_items(s, project=project, items=items)
        repo.create_user(s, username="dr", role=Role.DOCTOR)
        frame = repo.items_frame(s, project_id=project.id)
    train = frame[frame["split"] == "train"].head(20)
    record_decisions(
        ws, project="squares", decisions=train["reference_label"].astype(int), doctor="dr"
    )


def test_retrain_job_runs_the_loops_train_stage(ws: Workspace) -> None:
    _trainable_project(ws)
    job, created = jobs_workflow.request_retrain(ws, project="squares", requested_by="adam")
    assert created and job.status == "queued" and job.active
    same, created_again = jobs_workflow.request_retrain(ws, project="squares", requested_by="dr")
    assert same.id == job.id and not created_again
    done = jobs_workflow.run_next_job(ws)
    assert done is not None and done.id == job.id
    assert done.status == "succeeded", done.error
    assert done.progress == 1.0 and not done.active
    assert done.result is not None and done.result["version"] == 1
    assert done.result["n_train"] == 20 and 0.0 <= done.result["val_auc"] <= 1.0
    with ws.db.session() as s:
        versions = repo.model_versions(s, project_id=repo.get_project(s, name="squares").id)
    assert [v.version for v in versions] == [1]
    with ws.db.session() as s:
        on_file = {(e.action, e.actor) for e in repo.audit_entries(s, limit=100)[0]}
    assert {("job.request", "adam"), ("job.succeeded", "system")} <= on_file
    board = project_dashboard(ws, project="squares")
    assert [p.n_train for p in board.learning_curve] == [20]
    assert dashboard.learning_curve(ws, project="squares") == board.learning_curve
    assert jobs_workflow.run_next_job(ws) is None, "nothing else waits"


def test_retrain_first_aggregates_what_people_answered_in_the_web(ws: Workspace) -> None:
    _trainable_project(ws)
    with ws.db.session() as s:
        user = repo.create_user(s, username="alice", role=Role.ANNOTATOR, password_hash="x")
        alice = Account(id=user.id, username="alice", role=Role.ANNOTATOR)
    annotate.publish_tasks(ws, project="squares", k=3, redundancy=1, gold_rate=0.0, round=2)
    answered = []
    while (task := annotate.next_task(ws, account=alice)) is not None:
        annotate.submit_answer(ws, account=alice, task_id=task.task_id, label="yes")
        answered.append(task.item_id)
    assert len(answered) == 3
    jobs_workflow.request_retrain(ws, project="squares", requested_by="adam")
    done = jobs_workflow.run_next_job(ws)
    assert done is not None and done.status == "succeeded", done and done.error
    with ws.db.session() as s:
        project_id = repo.get_project(s, name="squares").id
        consensus = repo.current_labels(s, project_id=project_id, kind=LabelKind.CONSENSUS)
    assert set(answered) <= set(consensus.index)
    with ws.db.session() as s:  # the model belongs to the project's current round
        assert [v.round for v in repo.model_versions(s, project_id=project_id)] == [2]


def test_a_job_that_cannot_train_fails_with_the_domain_message(ws: Workspace) -> None:
    build_project(ws)  # 4 labelled items: too few to train
    job, _ = jobs_workflow.request_retrain(ws, project="chest", requested_by="adam")
    failed = jobs_workflow.run_next_job(ws)
    assert failed is not None and failed.id == job.id and failed.status == "failed"
    assert failed.error is not None and "need at least 10" in failed.error
    assert jobs_workflow.latest_job(ws, project="chest") == failed


def test_a_retrain_that_could_never_train_is_refused_when_asked(ws: Workspace) -> None:
    with ws.db.session() as s:
        repo.create_project(s, name="empty", classes=["no", "yes"], n_channels=1)
    with pytest.raises(InvalidInputError, match="no answers or labels yet"):
        jobs_workflow.request_retrain(ws, project="empty", requested_by="adam")
    with ws.db.session() as s:
        repo.create_project(s, name="cohort", classes=repo.COHORT_CLASSES, n_channels=0)
    with pytest.raises(InvalidInputError, match="cohort"):
        jobs_workflow.request_retrain(ws, project="cohort", requested_by="adam")
    assert jobs_workflow.latest_job(ws, project="empty") is None


def test_cli_export_coco(
    tmp_path: Path,
    home: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    workspace = Workspace.open(Settings(home=home))
    try:
        build_project(workspace)
        open_tasks(workspace)
        people = accounts_of(workspace)
        for name in ("alice", "bob"):
            task = annotate.next_task(workspace, account=people[name])
            assert task is not None
            annotate.submit_answer(
                workspace,
                account=people[name],
                task_id=task.task_id,
                label=1,
                box=[0.0, 0.0, 0.5, 0.5],
            )
    finally:
        workspace.close()
    output = tmp_path / "boxes.json"
    for extra, expected in (([], 1), (["--raw"], 2)):
        monkeypatch.setattr(
            sys, "argv", ["medloop", "export", "coco", str(output), "-p", "chest", *extra]
        )
        with pytest.raises(SystemExit) as exit_:
            main()
        assert exit_.value.code in (0, None)
        assert "wrote" in capsys.readouterr().out
        coco = json.loads(output.read_text())
        assert len(coco["annotations"]) == expected
        assert coco["annotations"][0]["bbox"] == [0.0, 0.0, 4.0, 4.0]
        assert coco["images"][0]["file_name"] == f"{coco['images'][0]['id']}.png"
    workspace = Workspace.open(Settings(home=home))
    try:
        with workspace.db.session() as s:
            _, total = repo.audit_entries(s, actor="cli", action="export.coco")
        assert total == 2
    finally:
        workspace.close()


def test_a_decision_about_an_item_of_another_project_is_refused(ws: Workspace) -> None:
    _trainable_project(ws)
    build_project(ws)  # "chest": its items are not the squares'
    with ws.db.session() as s:
        chest_item = int(
            repo.items_frame(s, project_id=repo.get_project(s, name="chest").id).index[0]
        )
    with pytest.raises(NotFoundError, match=f"item {chest_item} is not in project 'squares'"):
        record_decisions(ws, project="squares", decisions=pd.Series({chest_item: 0}), doctor="dr")
