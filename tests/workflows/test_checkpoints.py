"""Model checkpoints are checked: training records each version's sha256, loading and
`store verify` check the file against it, and `store gc` deletes the checkpoints of
trainings killed before storing them (never one younger than the grace period)."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medloop.config import Settings
from medloop.exceptions import ConflictError, NotFoundError
from medloop.learning import TrainConfig
from medloop.store import repository as repo
from medloop.types import Role
from medloop.workflows import Workspace, accounts, ingest_image_folder, storage, train
from medloop.workflows.audit import audit_log
from medloop.workflows.predict import load_model

HOUR = 3600.0


@pytest.fixture
def ws(tmp_path: Path) -> Iterator[Workspace]:
    workspace = Workspace.open(Settings(home=tmp_path / "home", secret_key="k" * 32))
    yield workspace
    workspace.close()


def _labelled_folder(folder: Path, n: int = 120) -> None:
    """Bright squares (class "yes") on noise ("no"), labelled by a doctor."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = ["file,label,patient_id"]
    for i in range(n):
        pixels = rng.integers(0, 100, size=(16, 16), dtype=np.uint8)
        if i % 2:
            pixels[4:10, 4:10] = 240
        Image.fromarray(pixels).save(folder / f"img{i:02d}.png")
        rows.append(f"img{i:02d}.png,{'yes' if i % 2 else 'no'},P{i:02d}")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")


def _age(path: Path, hours: float) -> None:
    then = time.time() - hours * HOUR
    os.utime(path, (then, then))


def _stored_version(ws: Workspace, project: str, version: int, metrics: dict) -> Path:
    """A model version row (no training) and its checkpoint file."""
    with ws.db.session() as s:
        record = repo.create_project(s, name=project, classes=["a", "b"], n_channels=1)
        repo.add_model_version(
            s,
            project_id=record.id,
            network="cnn",
            checkpoint_path=f"{project}/v{version}.pt",
            n_train=2,
            metrics=metrics,
        )
    path = ws.settings.model_dir / project / f"v{version}.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"weights")
    return path


def test_a_trained_checkpoint_is_checked_before_it_is_loaded(ws: Workspace, tmp_path: Path) -> None:
    """A damaged checkpoint was found only when torch failed to read it (or not at all,
    when the damage left it readable): no digest of it was kept."""
    _labelled_folder(tmp_path / "images")
    accounts.add_user(ws, username="dora", role=Role.DOCTOR, password="correct horse battery")
    ingest_image_folder(ws, folder=tmp_path / "images", project="sq", final_by="dora")
    metrics = train(ws, project="sq", config=TrainConfig(max_epochs=1, seed=0))
    checkpoint = ws.settings.model_dir / "sq" / "v1.pt"
    assert metrics["checkpoint_sha256"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert load_model("sq", ws=ws).name == "sq v1"
    assert storage.verify_checkpoints(ws).findings == []
    assert not list(checkpoint.parent.glob("training-*"))  # stored under its name

    with checkpoint.open("ab") as handle:
        handle.write(b"\0")  # still readable by torch: only the digest tells
    with pytest.raises(ConflictError, match="model version 1 of project 'sq'") as damaged:
        load_model("sq", ws=ws)
    assert "medloop model use -p sq" in str(damaged.value)
    report = storage.verify_checkpoints(ws)
    assert [(f.project, f.version, f.state) for f in report.problems] == [("sq", 1, "damaged")]

    checkpoint.unlink()
    with pytest.raises(NotFoundError, match="model version 1 of project 'sq' is missing"):
        load_model("sq", ws=ws)
    report = storage.verify_checkpoints(ws)
    assert [(f.project, f.version, f.state) for f in report.problems] == [("sq", 1, "missing")]


def test_a_version_number_used_again_drops_the_overlays_of_the_earlier_file(
    ws: Workspace, tmp_path: Path
) -> None:
    """After a database restore the next training is numbered v1 again and overwrites
    v1.pt: Grad-CAM overlays cached for the earlier v1 explain another model."""
    _labelled_folder(tmp_path / "images")
    accounts.add_user(ws, username="dora", role=Role.DOCTOR, password="correct horse battery")
    ingest_image_folder(ws, folder=tmp_path / "images", project="sq", final_by="dora")
    stale = ws.settings.model_dir / "sq" / "v1.gradcam" / "1-predicted.sha256"
    stale.parent.mkdir(parents=True)
    stale.write_text(ws.blobs.put(b"an overlay of the earlier v1"))
    train(ws, project="sq", config=TrainConfig(max_epochs=1, seed=0))
    assert (ws.settings.model_dir / "sq" / "v1.pt").is_file()
    assert not stale.parent.exists()


def test_versions_trained_before_digests_are_unverified_not_damaged(ws: Workspace) -> None:
    old = _stored_version(ws, "old", 1, {"val_auc": 0.7})
    _stored_version(ws, "new", 1, {"checkpoint_sha256": hashlib.sha256(b"weights").hexdigest()})
    report = storage.verify_checkpoints(ws)
    assert report.checkpoints == 2 and report.problems == []
    assert [(f.project, f.version, f.state) for f in report.findings] == [("old", 1, "unverified")]
    old.unlink()  # a missing file is missing, digest or not
    assert [(f.project, f.state) for f in storage.verify_checkpoints(ws).problems] == [
        ("old", "missing")
    ]


def test_gc_deletes_the_checkpoints_of_killed_trainings_past_the_grace(ws: Workspace) -> None:
    """A killed training's `training-<hex>.pt` stayed forever: only Python exceptions
    removed it, and `store gc` looked at blobs only."""
    stored = _stored_version(ws, "chest", 1, {})
    folder = stored.parent
    killed, running, half = (
        folder / "training-aa.pt",
        folder / "training-bb.pt",
        folder / "training-cc.pt.tmp",
    )
    for path in (killed, running, half):
        path.write_bytes(b"x" * 10)
    for path in (killed, half, stored):
        _age(path, 30)

    listed = storage.collect_garbage(ws, grace_hours=24, actor="ops")
    names = {u.name: u.deleted for u in listed.unfinished}
    assert names == {"chest/training-aa.pt": False, "chest/training-bb.pt": False,
                     "chest/training-cc.pt.tmp": False}  # fmt: skip
    assert listed.checkpoints_within_grace == 1 and killed.exists()
    assert audit_log(ws, action="store.gc").entries == []

    deleted = storage.collect_garbage(ws, grace_hours=24, delete=True, actor="ops")
    assert (deleted.deleted_checkpoints, deleted.deleted_checkpoint_bytes) == (2, 20)
    assert not killed.exists() and not half.exists()
    assert running.exists() and stored.exists()  # a training under way; a stored version
    (entry,) = audit_log(ws, action="store.gc").entries
    assert entry.actor == "ops" and entry.entity == "checkpoints"
    assert entry.detail["files"] == ["chest/training-aa.pt", "chest/training-cc.pt.tmp"]


def test_gc_deletes_checkpoints_no_version_names_past_the_grace(ws: Workspace) -> None:
    """A vN.pt no version named (a crash between storing the file and committing its
    version, a database restored to an earlier copy) stayed forever: gc looked at
    `training-*` files only."""
    stored = _stored_version(ws, "chest", 1, {})
    with ws.db.session() as s:  # a row written before paths were kept relative
        record = repo.create_project(s, name="old", classes=["a", "b"], n_channels=1)
        legacy = ws.settings.model_dir / "old" / "v1.pt"
        repo.add_model_version(s, project_id=record.id, network="cnn", n_train=2,
                               metrics={}, checkpoint_path=str(legacy))  # fmt: skip
    legacy.parent.mkdir()
    legacy.write_bytes(b"weights")
    orphan, young, other = (
        stored.parent / "v2.pt",
        stored.parent / "v3.pt",
        stored.parent / "notes-v4.pt",
    )
    for path in (orphan, young, other):
        path.write_bytes(b"x" * 10)
    overlays = stored.parent / "v2.gradcam"
    overlays.mkdir()
    (overlays / "7-1.sha256").write_text("ab" * 32)
    for path in (stored, legacy, orphan, other):
        _age(path, 30)

    listed = storage.collect_garbage(ws, grace_hours=24, actor="ops")
    assert {u.name: u.deleted for u in listed.orphans} == {
        "chest/v2.pt": False,
        "chest/v3.pt": False,
    }
    assert listed.orphans_within_grace == 1 and orphan.exists()

    deleted = storage.collect_garbage(ws, grace_hours=24, delete=True, actor="ops")
    assert (deleted.deleted_orphans, deleted.deleted_orphan_bytes) == (1, 10)
    assert not orphan.exists() and not overlays.exists()  # its Grad-CAM pointers too
    assert young.exists() and stored.exists() and legacy.exists() and other.exists()
    (entry,) = audit_log(ws, action="store.gc").entries
    assert entry.actor == "ops" and entry.entity == "orphan_checkpoints"
    assert entry.detail["files"] == ["chest/v2.pt"]
