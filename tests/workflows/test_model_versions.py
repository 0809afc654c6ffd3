"""Rolling back to an earlier model version, and telling which one was in use when."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest

from cli_support import run
from medloop import workflows
from medloop.config import Settings
from medloop.exceptions import NotFoundError
from medloop.store import repository as repo
from medloop.store.models import AuditEntry
from medloop.types import LabelKind, LabelSource, Role


@pytest.fixture
def ws(home: Path) -> Iterator[workflows.Workspace]:
    """A project of four items with crowd consensus and two model versions that
    disagree: version 1 calls every item "normal", version 2 "pneumonia"."""
    workspace = workflows.Workspace.open(Settings(home=home))
    with workspace.db.session() as s:
        project = repo.create_project(
            s, name="chest", classes=["normal", "pneumonia"], n_channels=1
        )
        repo.add_items(
            s,
            project=project,
            items=[repo.NewItem(f"{i}.png", f"{i:064x}", "train") for i in range(4)],
        )
        items = repo.items_frame(s, project_id=project.id).index
        repo.add_item_labels(
            s,
            project_id=project.id,
            labels=pd.Series(0, index=items),
            kind=LabelKind.CONSENSUS,
            source=LabelSource.CROWD,
            method="dawid_skene",
            probabilities=pd.DataFrame([[0.55, 0.45]] * 4, index=items),
        )
        repo.create_user(s, username="dr_grey", role=Role.DOCTOR)
    for version, p1 in [(1, 0.1), (2, 0.9)]:
        with workspace.db.session() as s:
            row = repo.add_model_version(
                s,
                project_id=project.id,
                network="cnn",
                checkpoint_path=f"chest/v{version}.pt",
                n_train=4,
                metrics={"val_auc": 0.5 + version / 10},
            )
            repo.audit(s, actor="system", action="model.train", entity="model_version",
                       entity_id=row.id)  # fmt: skip
            repo.save_predictions(
                s,
                model_version_id=row.id,
                probabilities=pd.DataFrame([[1 - p1, p1]] * 4, index=items),
            )
    yield workspace
    workspace.close()


def _model_labels(ws: workflows.Workspace) -> set[str]:
    queue = workflows.review.review_entries(ws, project="chest", limit=10)
    return {entry.model_label for entry in queue}


def test_an_earlier_version_is_put_back_in_use(ws: workflows.Workspace) -> None:
    """The newest version was always the one used: after a bad retraining, nothing but
    training yet another model changed what doctors and annotators were shown."""
    assert workflows.evaluate(ws, project="chest")["version"] == 2
    assert _model_labels(ws) == {"pneumonia"}

    before = workflows.models.use_model(ws, project="chest", version=1, actor="cli")

    assert before == 2
    assert workflows.evaluate(ws, project="chest")["version"] == 1
    assert workflows.explain.model_ref(ws, project="chest").version == 1
    assert _model_labels(ws) == {"normal"}, "the review queue shows version 1's opinion"
    rows = workflows.models.list_models(ws, project="chest")
    assert [(r.version, r.in_use) for r in rows] == [(1, True), (2, False)]
    with ws.db.session() as s:
        (entry,) = [e for e in repo.audit_frame(s).itertuples() if e.action == "model.use"]
    assert entry.actor == "cli" and entry.detail == {"project": 1, "version": 1, "previous": 2}
    with pytest.raises(NotFoundError, match=r"has no model version 7; versions: \[1, 2\]"):
        workflows.models.use_model(ws, project="chest", version=7, actor="cli")


def test_the_version_in_use_at_a_moment_and_the_one_a_doctor_saw(
    ws: workflows.Workspace,
) -> None:
    """Which model suggested the diagnosis a doctor signed in March?"""
    workflows.models.use_model(ws, project="chest", version=1, actor="cli")
    item = int(workflows.review.review_entries(ws, project="chest", limit=1)[0].item_id)
    workflows.record_decisions(
        ws, project="chest", decisions=pd.Series({item: 1}), doctor="dr_grey"
    )
    with ws.db.session() as s:
        (decision,) = s.query(AuditEntry).filter(AuditEntry.action == "label.final").all()
    assert decision.detail["model_version"] == 1

    history = workflows.models.model_history(ws, project="chest")
    assert [(p.version, p.action) for p in history] == [
        (1, "model.train"),
        (2, "model.train"),
        (1, "model.use"),
    ]
    assert history[1].until == history[2].since and history[2].until is None
    at = workflows.models.model_in_use_at
    assert at(ws, project="chest", at=history[0].since - timedelta(days=30)) is None
    assert at(ws, project="chest", at=history[1].since) == 2
    assert at(ws, project="chest", at=history[2].since + timedelta(days=30)) == 1


def test_model_commands(ws: workflows.Workspace, monkeypatch, capsys) -> None:
    ws.close()  # the commands open the home themselves
    code, out, err = run(monkeypatch, capsys, "model", "use", "-p", "chest", "1")
    assert code == 0 and "model version 1 of 'chest' in use (was 2)" in out, err
    code, out, _ = run(monkeypatch, capsys, "model", "list", "-p", "chest", "--json")
    listed = json.loads(out)
    assert code == 0 and [v["in_use"] for v in listed["versions"]] == [True, False]
    assert [p["version"] for p in listed["in_use"]] == [1, 2, 1]
    monkeypatch.setenv("COLUMNS", "80")  # every header and cell whole, none cut with "…"
    code, out, _ = run(monkeypatch, capsys, "model", "list", "-p", "chest")
    assert code == 0 and "…" not in out and "created at" in out, out
    assert max(len(line) for line in out.splitlines()) <= 80
    code, _, err = run(monkeypatch, capsys, "model", "use", "-p", "chest", "3")
    assert code == 2 and "no model version 3" in err
