"""The loop's label figures, on a hand-made project: the doctors' part is not credited
to the aggregation."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from medloop.config import Settings
from medloop.store import repository as repo
from medloop.types import LabelKind, LabelSource, Role
from medloop.workflows import Workspace, label_quality, record_decisions

REFERENCE = [0, 1, 0, 1]
#: Three lay answers per item: majority vote is right on items 0 and 3 only.
ANSWERS = [[0, 0, 1], [0, 0, 1], [1, 1, 0], [1, 1, 1]]
#: The stored consensus is right on every item but 2, where a doctor then signs 0.
CONSENSUS = [0, 1, 1, 1]


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
                    split="train",
                    reference_label=label,
                )
                for i, label in enumerate(REFERENCE)
            ],
        )
        items = repo.items_frame(s, project_id=project.id).index.tolist()
        tasks = repo.create_tasks(s, project_id=project.id, item_ids=items, required_answers=3)
        workers = [
            repo.create_user(s, username=f"lay{w}", role=Role.ANNOTATOR).id for w in range(3)
        ]
        repo.add_answers(
            s,
            task_ids=[t for t in tasks for _ in workers],
            worker_ids=workers * len(tasks),
            labels=[label for row in ANSWERS for label in row],
            source=LabelSource.CROWD,
        )
        repo.add_item_labels(
            s,
            project_id=project.id,
            labels=pd.Series(CONSENSUS, index=items),
            kind=LabelKind.CONSENSUS,
            source=LabelSource.CROWD,
            method="dawid_skene",
        )
        repo.create_user(s, username="dora", role=Role.DOCTOR)
    record_decisions(workspace, project="chest", decisions=pd.Series({items[2]: 0}), doctor="dora")
    yield workspace
    workspace.close()


def test_majority_vote_gets_the_same_doctors_and_the_crowd_is_compared_alone(
    ws: Workspace,
) -> None:
    quality = label_quality(ws, project="chest")
    assert quality["labelled_items"] == 4 and quality["doctor_labels"] == 1
    assert quality["consensus_accuracy"] == 1.0  # consensus, and the doctor on item 2
    assert quality["majority_vote_accuracy"] == 0.5  # right on items 0 and 3
    assert quality["majority_vote_doctors_accuracy"] == 0.75  # and the doctor's item 2
    # on the three items no doctor signed: consensus 3 of 3, majority vote 2 of 3
    assert quality["unreviewed_items"] == 3
    assert quality["unreviewed_consensus_accuracy"] == 1.0
    assert quality["unreviewed_majority_vote_accuracy"] == pytest.approx(2 / 3, abs=1e-4)
