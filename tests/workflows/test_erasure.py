"""Erasing a patient's images (`medloop patients erase`) and a person who leaves
(`medloop users erase`): rows and files gone, shared files kept, models marked, names
replaced, all audited without personal data."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import select

from cli_support import run
from medloop.config import Settings
from medloop.exceptions import ConflictError, InvalidInputError, NotFoundError
from medloop.ingest import pseudonymize
from medloop.store import repository as repo
from medloop.store.models import Answer, AuditEntry, Item, Job, Patient, User
from medloop.types import LabelKind, LabelSource, Role
from medloop.workflows import Workspace, access, accounts, erasure, review
from medloop.workflows.audit import audit_log

PASSWORD = "correct horse battery"


def _chest(ws: Workspace) -> dict[str, str]:
    """Project "chest": raw patient "MRN-7" has two images (one the same file as an image
    of patient "MRN-8"), with answers and labels; model v1 learned from every image and
    has a Grad-CAM overlay of MRN-7's first image. Returns the blobs by name."""
    blobs = {name: ws.blobs.put(name.encode()) for name in ("own", "shared", "other", "cam")}
    key = ws.settings.resolved_secret_key
    seven, eight = pseudonymize("MRN-7", key=key), pseudonymize("MRN-8", key=key)
    with ws.db.session() as s:
        project = repo.create_project(s, name="chest", classes=["a", "b"], n_channels=1)
        repo.add_items(
            s,
            project=project,
            items=[
                repo.NewItem("r1", blobs["own"], "train", patient_pseudonym=seven),
                repo.NewItem("r2", blobs["shared"], "train", patient_pseudonym=seven),
                repo.NewItem("r3", blobs["shared"], "train", patient_pseudonym=eight),
                repo.NewItem("r4", blobs["other"], "train", patient_pseudonym=eight),
            ],
        )
        items = repo.items_frame(s, project_id=project.id).index.tolist()
        worker = repo.create_user(s, username="ann", role=Role.ANNOTATOR)
        tasks = repo.create_tasks(s, project_id=project.id, item_ids=items, required_answers=1)
        repo.add_answers(
            s,
            task_ids=tasks,
            worker_ids=[worker.id] * 4,
            labels=[0, 1, 1, 0],
            source=LabelSource.CROWD,
        )
        repo.add_item_labels(
            s,
            project_id=project.id,
            labels=pd.Series(0, index=items),
            kind=LabelKind.FINAL,
            source=LabelSource.CROWD,
            method="mv",
        )
        labels = repo.current_labels(s, project_id=project.id, kind=LabelKind.FINAL, with_ids=True)
        repo.add_model_version(
            s,
            project_id=project.id,
            network="cnn",
            checkpoint_path="chest/v1.pt",
            n_train=4,
            metrics={},
            label_ids=labels["label_id"].tolist(),
        )
        repo.audit(s, actor="ann", action="answer", entity="answer", entity_id=1)
    pointer = ws.settings.model_dir / "chest" / "v1.gradcam" / f"{items[0]}-predicted.sha256"
    pointer.parent.mkdir(parents=True)
    pointer.write_text(blobs["cam"])
    return blobs


def test_a_patients_images_go_with_their_files_and_the_model_is_marked(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = Workspace.open(Settings())
    try:
        blobs = _chest(ws)
        with pytest.raises(NotFoundError, match=r"no patient 'MRN-9'.*nothing was erased"):
            erasure.erase_patient(ws, project="chest", patient="MRN-9", reason="r", actor="cli")
        with pytest.raises(InvalidInputError, match="reason"):
            erasure.erase_patient(ws, project="chest", patient="MRN-7", reason=" ", actor="cli")
    finally:
        ws.close()
    args = ("patients", "erase", "MRN-7", "-p", "chest", "--reason", "consent withdrawn")

    code, out, err = run(monkeypatch, capsys, *args, "--json")  # a dry run
    assert code == 0, err
    planned = json.loads(out)
    assert planned["erased"] is False and planned["image_models"] == [1]
    assert planned["rows"]["images"] == 2 and planned["rows"]["answers"] == 2
    assert planned["blobs"] == 2 and planned["shared_blobs"] == 1  # own image + overlay
    ws = Workspace.open(Settings())
    try:
        with ws.db.session() as s:
            assert s.query(Item).count() == 4 and s.query(Patient).count() == 2
            assert repo.model_versions(s, project_id=1)[0].erased_patients == 0
            assert audit_log(ws, action="patient.erased").total == 0
        assert all(ws.blobs.exists(sha) for sha in blobs.values())
    finally:
        ws.close()

    code, out, err = run(monkeypatch, capsys, *args, "--yes")
    assert code == 0, err
    assert "erased patient P" in out and "image model v1" in out and "retrain" in out
    ws = Workspace.open(Settings())
    try:
        with ws.db.session() as s:
            assert sorted(s.scalars(select(Item.source_ref))) == ["r3", "r4"]
            assert s.query(Patient).count() == 1 and s.query(Answer).count() == 2
        assert not ws.blobs.exists(blobs["own"]) and not ws.blobs.exists(blobs["cam"])
        assert ws.blobs.exists(blobs["shared"]) and ws.blobs.exists(blobs["other"])
        assert not list((ws.settings.model_dir / "chest" / "v1.gradcam").iterdir())
        entry = audit_log(ws, action="patient.erased").entries[0]
        pseudonym = pseudonymize("MRN-7", key=ws.settings.resolved_secret_key)
        assert (entry.actor, entry.entity, entry.entity_id) == ("cli", "patient", pseudonym)
        assert entry.detail["reason"] == "consent withdrawn" and entry.detail["blobs"] == 2
        assert entry.detail["rows"]["images"] == 2 and entry.detail["image_models"] == [1]
        summary = review.model_summary(ws, project="chest")
        assert summary is not None and summary.erased_patients == 1  # the doctor's card
        with ws.db.session() as s:  # the raw id is nowhere in the audit log
            entries = s.query(AuditEntry).all()
            assert not any("MRN" in json.dumps([e.actor, e.entity_id, e.detail]) for e in entries)
    finally:
        ws.close()
    code, out, err = run(monkeypatch, capsys, "model", "list", "-p", "chest", "--json")
    assert json.loads(out)["versions"][0]["erased_patients"] == 1
    code, out, err = run(monkeypatch, capsys, "model", "list", "-p", "chest")
    assert "trained on the data of patients erased since (erased_patients): v1" in out
    code, out, err = run(monkeypatch, capsys, *args, "--yes")
    assert code == 2 and "no patient 'MRN-7'" in err


def _people(ws: Workspace) -> None:
    """An admin, a second admin, and annotator "ann" with answers, an audit trail, a
    retraining job and a project membership."""
    _chest(ws)
    for name in ("root", "root2"):
        accounts.add_user(ws, username=name, role=Role.ADMIN, password=PASSWORD)
    with ws.db.session() as s:
        repo.get_user(s, username="ann").password_hash = accounts.hash_password(PASSWORD)
        s.add(Job(kind="retrain", status="done", requested_by="ann"))
    access.grant(ws, username="ann", project="chest", actor="root")


def test_a_person_who_leaves_is_named_by_a_pseudonym_everywhere(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = Workspace.open(Settings())
    try:
        _people(ws)
        with ws.db.session() as s:
            ann_id = repo.get_user(s, username="ann").id
        pseudonym = accounts.erased_name(ws, user_id=ann_id)
    finally:
        ws.close()
    code, out, err = run(monkeypatch, capsys, "users", "erase", "ann", "--reason", "left")
    assert code == 0 and "would erase user 'ann'" in out and "dry run" in out, err
    ws = Workspace.open(Settings())
    try:
        assert accounts.authenticate(ws, username="ann", password=PASSWORD) is not None
    finally:
        ws.close()

    code, out, err = run(
        monkeypatch, capsys, "users", "erase", "ann", "--reason", "left", "--yes", "--json"
    )
    assert code == 0, err
    done = json.loads(out)
    assert done["pseudonym"] == pseudonym and pseudonym.startswith("erased-")
    assert (done["audit_entries"], done["jobs"], done["answers"], done["memberships"]) == (
        1,
        1,
        4,
        1,
    )
    ws = Workspace.open(Settings())
    try:
        assert accounts.authenticate(ws, username="ann", password=PASSWORD) is None
        with ws.db.session() as s:
            user = s.get(User, ann_id)
            assert user is not None and user.username == pseudonym
            assert user.is_disabled and user.password_hash is None
            assert s.query(Answer).filter(Answer.worker_id == ann_id).count() == 4
            assert s.query(Job.requested_by).scalar() == pseudonym
            actors = set(s.scalars(select(AuditEntry.actor)))
            assert "ann" not in actors and pseudonym in actors
            entry = s.query(AuditEntry).filter(AuditEntry.action == "user.erased").one()
            assert (entry.actor, entry.entity_id) == ("cli", str(ann_id))
            assert entry.detail == {"pseudonym": pseudonym, "reason": "left", "answers": 4}
        assert _answer_workers(ws) == {pseudonym}  # exports and aggregation name the pseudonym
        with pytest.raises(ConflictError, match="erased already"):
            accounts.erase_user(ws, username=pseudonym, reason="x", actor="cli", dry_run=False)
        with pytest.raises(InvalidInputError, match="erased people"):
            accounts.add_user(ws, username="Erased-1234", role=Role.ANNOTATOR, password=PASSWORD)
        with pytest.raises(InvalidInputError, match="only lay annotators are erased"):
            accounts.erase_user(ws, username="root2", reason="left", actor="cli", dry_run=False)
        with ws.db.session() as s:
            assert repo.get_user(s, username="root2").username == "root2"
            assert repo.get_user(s, username="root2").is_disabled is False
    finally:
        ws.close()


def _answer_workers(ws: Workspace) -> set[str]:
    with ws.db.session() as s:
        return set(repo.answers_frame(s, project_id=1)["worker"])
