"""The CSV exports are read and handed over in pieces, byte for byte what a whole-table
export wrote, and audited once their last piece is taken."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from fastapi.responses import StreamingResponse

from medloop.config import Settings
from medloop.store import repository as repo
from medloop.types import LabelKind, LabelSource, Role
from medloop.web.routes import api
from medloop.workflows import Workspace, export
from medloop.workflows.accounts import Account

CLASSES = ["normal", "pneumonia"]


@pytest.fixture
def ws(tmp_path: Path) -> Iterator[Workspace]:
    """Project chest: 7 items; 18 answers on 6; the consensus computed twice for items
    1-5 (the second run current), final labels on items 2 and 6, nothing on item 7."""
    workspace = Workspace.open(Settings(home=tmp_path / "home", secret_key="k"))
    with workspace.db.session() as s:
        project = repo.create_project(s, name="chest", classes=CLASSES, n_channels=1)
        repo.add_items(
            s,
            project=project,
            items=[
                repo.NewItem(f"x{n}.png", f"{n:064x}", ("train", "val", "test")[n % 3])
                for n in range(7)
            ],
        )
        items = repo.items_frame(s, project_id=project.id).index.tolist()
        tasks = repo.create_tasks(s, project_id=project.id, item_ids=items[:6], required_answers=3)
        people = repo.ensure_users(
            s, usernames=["ann", "ben", "cat"], role=Role.ANNOTATOR, simulated=True
        )
        repo.add_answers(
            s,
            task_ids=[t for t in tasks for _ in range(3)],
            worker_ids=[people[p] for _ in tasks for p in ("ann", "ben", "cat")],
            labels=[(n * 7) % 3 % 2 for n in range(18)],
            source=LabelSource.CROWD,
        )
        for shift in (0.1, 0.0):
            p = pd.Series([0.9 - shift, 0.2, 1 / 3, 0.75, 1e-5], index=items[:5])
            repo.add_item_labels(
                s,
                project_id=project.id,
                labels=(p > 0.5).astype(int),
                kind=LabelKind.CONSENSUS,
                source=LabelSource.CROWD,
                method="dawid_skene",
                probabilities=pd.DataFrame({0: 1 - p, 1: p}),
            )
        doctor = repo.ensure_users(s, usernames=["dora"], role=Role.DOCTOR, simulated=True)
        repo.add_item_labels(
            s,
            project_id=project.id,
            labels=pd.Series([1, 0], index=[items[1], items[5]]),
            kind=LabelKind.FINAL,
            source=LabelSource.DOCTOR,
            method="review",
            decided_by_id=doctor["dora"],
        )
    yield workspace
    workspace.close()


def whole_answers(ws: Workspace) -> str:
    """The answers CSV as it was made before: the whole table, then `to_csv`."""
    with ws.db.session() as s:
        answers = repo.answers_frame(s, project_id=repo.get_project(s, name="chest").id)
    frame = pd.DataFrame(
        {
            "task": answers["task_id"].astype(int),
            "item": answers["task"].astype(int),
            "worker": answers["worker"],
            "label": [CLASSES[int(v)] for v in answers["label"]],
            "source": answers["source"],
            "time": pd.to_datetime(answers["created_at"], utc=True).map(lambda t: t.isoformat()),
        }
    )
    return frame.to_csv(index=False)


def whole_labels(ws: Workspace) -> str:
    """The labels CSV as it was made before: every current label at once, then `to_csv`."""
    with ws.db.session() as s:
        project_id = repo.get_project(s, name="chest").id
        finals = repo.current_labels(s, project_id=project_id, kind=LabelKind.FINAL)
        consensus = repo.current_labels(s, project_id=project_id, kind=LabelKind.CONSENSUS)
        items = repo.items_frame(s, project_id=project_id)
    finals = finals.assign(kind="final")
    consensus = consensus[~consensus.index.isin(finals.index)].assign(kind="consensus")
    current = pd.concat([finals, consensus]).sort_index()
    frame = pd.DataFrame(
        {
            "item": current.index.astype(int),
            "split": items.loc[current.index, "split"].to_numpy(),
            "label": [CLASSES[int(v)] for v in current["label"]],
            "kind": current["kind"].to_numpy(),
            "source": current["source"].to_numpy(),
            "method": current["method"].to_numpy(),
            "confidence": current["confidence"].to_numpy(),
        }
    )
    return frame.to_csv(index=False)


def exports(ws: Workspace) -> list[str]:
    with ws.db.session() as s:
        return [a for a in repo.audit_frame(s)["action"] if a.startswith("export.")]


@pytest.mark.parametrize("batch", [1, 2, 4, 5_000])
def test_pieces_make_the_same_bytes_as_the_whole_table(ws: Workspace, batch: int) -> None:
    answers = export.export_answers(ws, project="chest", batch=batch)
    assert "".join(answers) == whole_answers(ws) and answers.rows == 18
    labels = export.export_labels(ws, project="chest", batch=batch)
    text = "".join(labels)
    assert text == whole_labels(ws) and labels.rows == 6
    assert ",final," in text and ",consensus," in text and "0.6666666666666667" in text


def test_an_export_is_handed_over_a_batch_at_a_time_and_audited_after_the_last(
    ws: Workspace,
) -> None:
    answers = iter(export.export_answers(ws, project="chest", batch=4))
    header = next(answers)
    first = next(answers)
    assert header == "task,item,worker,label,source,time\n" and first.count("\n") == 4
    assert exports(ws) == [], "not on file before the last piece is taken"
    rest = list(answers)
    assert [piece.count("\n") for piece in rest] == [4, 4, 4, 2]
    assert exports(ws) == ["export.answers"]
    labels = iter(export.export_labels(ws, project="chest", batch=2))
    assert next(labels).startswith("item,split,") and next(labels).count("\n") == 2
    labels.close()  # a download closed midway
    assert exports(ws) == ["export.answers"], "an export left midway is not on file"


def test_answers_given_during_an_export_are_left_out(ws: Workspace) -> None:
    answers = export.export_answers(ws, project="chest", batch=4)
    pieces = iter(answers)
    next(pieces)
    with ws.db.session() as s:
        project = repo.get_project(s, name="chest")
        item = repo.items_frame(s, project_id=project.id).index[6]
        (task,) = repo.create_tasks(s, project_id=project.id, item_ids=[item], required_answers=1)
        ann = repo.get_user(s, username="ann").id
        repo.add_answers(s, task_ids=[task], worker_ids=[ann], labels=[1], source=LabelSource.CROWD)
    assert sum(piece.count("\n") for piece in pieces) == 18 and answers.rows == 18


def test_the_web_sends_the_csv_exports_as_they_are_read(ws: Workspace) -> None:
    with ws.db.session() as s:
        doctor = repo.create_user(s, username="dr_who", role=Role.DOCTOR)
        account = Account(id=doctor.id, username=doctor.username, role=Role.DOCTOR)
    for route in (api.export_answers, api.export_labels):
        response = route(ws=ws, account=account, project="chest")
        assert isinstance(response, StreamingResponse)
        assert response.media_type == "text/csv"
    assert exports(ws) == [], "audited when sent, not when the response is made"
