"""`medloop store backup`: a home copied while it is open, restored by pointing at it."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from sqlalchemy import select

from cli_support import run
from medloop import workflows
from medloop.config import Settings
from medloop.exceptions import InvalidInputError
from medloop.store import repository as repo
from medloop.store.models import ModelVersion


def _home_in_use(home: Path) -> workflows.Workspace:
    """An open home (its database's recent commits still in the WAL file) with two
    images, a model version and its checkpoint, and a training under way."""
    ws = workflows.Workspace.open(Settings(home=home))
    images = [ws.blobs.put(f"image {i}".encode()) for i in range(2)]
    with ws.db.session() as s:
        project = repo.create_project(s, name="chest", classes=["a", "b"], n_channels=1)
        repo.add_items(
            s,
            project=project,
            items=[repo.NewItem(f"{i}.png", sha, "train") for i, sha in enumerate(images)],
        )
        repo.add_model_version(
            s,
            project_id=project.id,
            network="cnn",
            checkpoint_path="chest/v1.pt",
            n_train=2,
            metrics={},
        )
        for i in range(50):
            repo.audit(s, actor="cli", action="test.write", entity="item", entity_id=i)
    folder = ws.settings.model_dir / "chest"
    folder.mkdir(parents=True)
    (folder / "v1.pt").write_bytes(b"weights")
    (folder / "training-0123.pt").write_bytes(b"half a training")
    return ws


def test_a_home_in_use_is_copied_whole_and_opens_as_a_home(home: Path, tmp_path: Path) -> None:
    """There was no backup command; a `cp` of medloop.db while a server had it open
    missed what was still in medloop.db-wal (on a new home: every table)."""
    ws = _home_in_use(home)
    try:
        shift_key = workflows.precision.date_shift_key(ws.settings)  # the home's key file
        report = workflows.backup.back_up(ws, target=tmp_path / "backup")
    finally:
        ws.close()
    assert report.complete and report.database
    # restored, patients imported later must be shifted as the stored ones were
    restored_key = workflows.precision.date_shift_key(Settings(home=tmp_path / "backup"))
    assert restored_key == shift_key
    assert (tmp_path / "backup" / "date-shift.key").stat().st_mode & 0o077 == 0
    assert (report.blobs, report.model_files) == (2, 1), "no unfinished checkpoint"

    restored = workflows.Workspace.open(Settings(home=tmp_path / "backup"))
    try:
        with restored.db.session() as s:
            log = repo.audit_frame(s)
            assert len(repo.items_frame(s, project_id=1)) == 2
        assert (log["action"] == "test.write").sum() == 50
        assert workflows.storage.verify_blobs(restored).problems == []
        checkpoint = workflows.explain.model_ref(restored, project="chest").checkpoint
        assert checkpoint.read_bytes() == b"weights"
    finally:
        restored.close()


def test_a_backup_refuses_a_used_folder_and_reports_a_damaged_blob(
    home: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    ws = _home_in_use(home)
    try:
        (tmp_path / "used").mkdir()
        (tmp_path / "used" / "notes.txt").write_text("mine")
        with pytest.raises(InvalidInputError, match="not an empty folder"):
            workflows.backup.back_up(ws, target=tmp_path / "used")
        with pytest.raises(InvalidInputError, match="inside the home"):
            workflows.backup.back_up(ws, target=home / "backup")
        damaged = next(p for p in ws.blobs.root.rglob("*") if p.is_file())
    finally:
        ws.close()
    damaged.write_bytes(b"rot")

    code, out, err = run(monkeypatch, capsys, "store", "backup", str(tmp_path / "b"), "--json")
    report = json.loads(out)
    assert code == 1, err
    assert report["damaged"] == [damaged.name] and report["missing"] == [damaged.name]
    assert report["blobs"] == 1

    shutil.rmtree(tmp_path / "b")
    damaged.unlink()
    code, out, _ = run(monkeypatch, capsys, "store", "backup", str(tmp_path / "b"))
    assert code == 1 and "missing from the copy" in out and damaged.name in out


def test_a_backup_checks_model_checkpoints_and_leaves_a_damaged_one_out(
    home: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    """Checkpoints were copied unchecked: a backup carried a corrupt model silently, to be
    found only when the restored home refused to load it."""
    ws = _home_in_use(home)
    try:
        with ws.db.session() as s:
            (version,) = s.scalars(select(ModelVersion))
            version.metrics = {"checkpoint_sha256": hashlib.sha256(b"weights").hexdigest()}
        healthy = workflows.backup.back_up(ws, target=tmp_path / "healthy")
    finally:
        ws.close()
    assert healthy.complete and healthy.model_files == 1
    assert (tmp_path / "healthy" / "models" / "chest" / "v1.pt").read_bytes() == b"weights"

    (home / "models" / "chest" / "v1.pt").write_bytes(b"weightz")  # damaged on disk
    code, out, err = run(monkeypatch, capsys, "store", "backup", str(tmp_path / "b"), "--json")
    report = json.loads(out)
    assert code == 1, err
    assert report["damaged_models"] == ["chest/v1.pt"] and report["damaged"] == []
    assert report["missing"] == ["chest/v1.pt"] and report["model_files"] == 0
    assert not (tmp_path / "b" / "models" / "chest" / "v1.pt").exists()

    code, out, _ = run(monkeypatch, capsys, "store", "backup", str(tmp_path / "c"))
    assert code == 1 and "damaged, not copied: model checkpoint chest/v1.pt" in out
