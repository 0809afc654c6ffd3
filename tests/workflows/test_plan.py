"""Planning a project's next requests from its stored answers, final labels and model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy.orm import Session

from medloop.aggregation.allocation import Action
from medloop.annotation.simulate import SimulatedCrowd
from medloop.config import Settings
from medloop.store import assignments
from medloop.store import repository as repo
from medloop.types import Role
from medloop.workflows import (
    PublishedPlan,
    Workspace,
    aggregate,
    collect_crowd_answers,
    publish_plan,
    record_decisions,
)
from medloop.workflows.plan import plan_requests
from medloop.workflows.review import REQUESTED, review_entries

N_TRAIN = 40


@pytest.fixture
def ws(tmp_path: Path) -> Iterator[Workspace]:
    workspace = Workspace.open(Settings(home=tmp_path / "home"))
    with workspace.db.session() as s:
        project = repo.create_project(
            s, name="chest", classes=["normal", "pneumonia"], n_channels=1
        )
        repo.add_items(
            s,
            project=project,
            items=[
                repo.NewItem(
                    source_ref=f"img{i}.png",
                    image_sha256=f"{i:064x}",
                    split="train" if i < N_TRAIN else "test",
                    reference_label=i % 2,
                )
                for i in range(N_TRAIN + 10)
            ],
        )
        for doctor in ("dr_grey", "dora"):
            repo.create_user(s, username=doctor, role=Role.DOCTOR)
    yield workspace
    workspace.close()


def _item_ids(ws: Workspace) -> pd.DataFrame:
    with ws.db.session() as s:
        return repo.items_frame(s, project_id=repo.get_project(s, name="chest").id)


def test_plan_covers_open_answered_items_and_the_models_unanswered_ones(ws: Workspace) -> None:
    items = _item_ids(ws)
    train = items.index[items["split"] == "train"]
    answered = [int(i) for i in train[:20]]
    crowd = SimulatedCrowd(10, n_classes=2, accuracy_mean=0.75, seed=0)
    collect_crowd_answers(ws, project="chest", item_ids=answered, crowd=crowd, redundancy=3)
    decided = answered[0]
    record_decisions(ws, project="chest", decisions=pd.Series({decided: 0}), doctor="dr_grey")

    plan = plan_requests(ws, project="chest", budget=1e6, doctor_cost=5.0)
    # without a model only the answered, undecided training items are candidates
    assert plan.candidates == 19
    assert decided not in plan.requests.index
    assert set(plan.requests.index) <= set(answered)

    _save_predictions(ws, pd.DataFrame(np.tile([0.6, 0.4], (len(items), 1)), index=items.index))
    plan = plan_requests(ws, project="chest", budget=1e6, doctor_cost=5.0)
    assert plan.candidates == N_TRAIN - 1  # every training item but the decided one
    unanswered = set(int(i) for i in train[20:])
    assert unanswered <= set(plan.requests.index)  # a 60/40 guess is worth asking about
    assert not set(plan.requests.index) & set(items.index[items["split"] == "test"])

    small = plan_requests(ws, project="chest", budget=12.0, doctor_cost=5.0)
    summary = small.summary()
    assert summary["cost"] <= 12.0
    assert summary["lay_answers"] + 5 * summary["doctor_items"] == summary["cost"]
    assert summary["expected_errors_removed"] > 0
    assert set(small.requests["action"]) <= {Action.CROWD, Action.DOCTOR}


def _save_predictions(ws: Workspace, probabilities: pd.DataFrame) -> None:
    with ws.db.session() as s:
        project = repo.get_project(s, name="chest")
        version = repo.add_model_version(
            s,
            project_id=project.id,
            network="cnn",
            checkpoint_path="unused.pt",
            n_train=0,
            metrics={},
        )
        repo.save_predictions(s, model_version_id=version.id, probabilities=probabilities)


def test_before_any_answer_the_plan_rests_on_the_model_alone(ws: Workspace) -> None:
    assert plan_requests(ws, project="chest", budget=10.0).candidates == 0
    items = _item_ids(ws)
    sure = pd.DataFrame(np.tile([0.99, 0.01], (len(items), 1)), index=items.index)
    sure.iloc[:3] = [0.5, 0.5]
    _save_predictions(ws, sure)
    plan = plan_requests(ws, project="chest", budget=3.0)
    assert plan.candidates == N_TRAIN
    # a typical lay annotator (70% right) is worth asking about the three coin flips
    assert plan.requests.index.tolist() == items.index[:3].tolist()
    assert (plan.requests["action"] == Action.CROWD).all()


def test_publishing_opens_more_answers_and_puts_review_requests_first(ws: Workspace) -> None:
    items = _item_ids(ws)
    answered = [int(i) for i in items.index[items["split"] == "train"][:12]]
    crowd = SimulatedCrowd(10, n_classes=2, accuracy_mean=0.7, seed=3)
    collect_crowd_answers(ws, project="chest", item_ids=answered, crowd=crowd, redundancy=1)
    aggregate(ws, project="chest")
    plan = plan_requests(ws, project="chest", budget=40.0, doctor_cost=10.0)
    lay = plan.requests[plan.requests["action"] == Action.CROWD]
    doctor = plan.requests[plan.requests["action"] == Action.DOCTOR]
    assert len(lay) and len(doctor)

    published = publish_plan(ws, project="chest", plan=plan, actor="dora")
    assert published == PublishedPlan(len(lay), int(lay["answers"].sum()), len(doctor))
    with ws.db.session() as s:
        project = repo.get_project(s, name="chest")
        tasks = repo.tasks_frame(s, project_id=project.id)
        first = answered_by(s, project.id, int(lay.index[0]))
        offered = assignments.open_tasks_for_worker(
            s, worker_id=repo.get_user(s, username=first).id, project_ids=[project.id]
        )
        audit = repo.audit_frame(s)
    labelling = tasks[(tasks["kind"] == "label") & tasks["item"].isin(lay.index)]
    assert len(labelling) == len(lay) and (labelling["status"] == "open").all()
    # one answer so far, and as many more as the plan asked for
    wanted = lay["answers"].reindex(labelling["item"]).to_numpy()
    assert (labelling["required_answers"].to_numpy() == 1 + wanted).all()
    # whoever answered an item is not asked about it again
    assert int(lay.index[0]) not in {t.item_id for t in offered}
    assert audit["action"].tolist().count("plan.publish") == 1

    # until those answers and decisions come in, planning again leaves the items out
    again = plan_requests(ws, project="chest", budget=40.0, doctor_cost=10.0)
    assert again.pending == len(lay) + len(doctor)
    assert not set(again.requests.index) & set(plan.requests.index)
    assert again.summary()["pending_items"] == again.pending

    queue = review_entries(ws, project="chest", limit=5)
    head = [e.item_id for e in queue[: len(doctor)]]
    assert sorted(head) == sorted(int(i) for i in doctor.index)
    assert all(e.requested and e.reason.startswith(REQUESTED) for e in queue[: len(doctor)])
    # publishing again asks nobody twice, and says so
    assert publish_plan(ws, project="chest", plan=plan, actor="dora") == PublishedPlan(0, 0, 0)
    # a decision answers the request: no second review task, and the item leaves the head
    decided = int(doctor.index[0])
    record_decisions(ws, project="chest", decisions=pd.Series({decided: 1}), doctor="dora")
    with ws.db.session() as s:
        project = repo.get_project(s, name="chest")
        reviews = repo.tasks_frame(s, project_id=project.id)
        reviews = reviews[(reviews["kind"] == "review") & (reviews["item"] == decided)]
        assert decided not in repo.requested_reviews(s, project_id=project.id)
    assert reviews["status"].tolist() == ["done"]
    assert decided not in {e.item_id for e in review_entries(ws, project="chest")}


def answered_by(s: Session, project_id: int, item_id: int) -> str:
    """The username of someone who answered `item_id`."""
    answers = repo.answers_frame(s, project_id=project_id)
    return str(answers.loc[answers["task"] == item_id, "worker"].iloc[0])
