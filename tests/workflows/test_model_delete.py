"""Deleting an image model version (`medloop model delete`): its checkpoint, Grad-CAM
overlays and predictions go, its row stays marked deleted so the history still reads;
the version in use is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import func, select

from cli_support import run
from medloop.config import Settings
from medloop.store import repository as repo
from medloop.store.models import Prediction
from medloop.workflows import Workspace, storage
from medloop.workflows.audit import audit_log
from medloop.workflows.checkpoints import DIGEST_KEY, file_sha256


def _chest(ws: Workspace) -> dict[int, str]:
    """Project "chest" with two items and model versions 1 and 2 (in use), each with its
    checkpoint file, predictions and a Grad-CAM overlay; returns the overlays' blobs."""
    with ws.db.session() as s:
        project = repo.create_project(s, name="chest", classes=["a", "b"], n_channels=1)
        repo.add_items(
            s,
            project=project,
            items=[repo.NewItem(f"{i}.png", f"{i:064x}", "train") for i in range(2)],
        )
        items = repo.items_frame(s, project_id=project.id).index
    overlays = {}
    for version in (1, 2):
        checkpoint = ws.settings.model_dir / "chest" / f"v{version}.pt"
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        checkpoint.write_bytes(f"weights {version}".encode())
        overlays[version] = ws.blobs.put(f"overlay {version}".encode())
        pointer = checkpoint.with_suffix(".gradcam") / f"{items[0]}-predicted.sha256"
        pointer.parent.mkdir()
        pointer.write_text(overlays[version])
        with ws.db.session() as s:
            row = repo.add_model_version(
                s,
                project_id=project.id,
                network="cnn",
                checkpoint_path=f"chest/v{version}.pt",
                n_train=2,
                metrics={DIGEST_KEY: file_sha256(checkpoint)},
            )
            repo.audit(
                s, actor="system", action="model.train", entity="model_version", entity_id=row.id
            )
            repo.save_predictions(
                s, model_version_id=row.id, probabilities=pd.DataFrame([[0.5, 0.5]] * 2, items)
            )
    return overlays


def test_a_model_version_not_in_use_is_deleted_and_its_history_kept(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = Workspace.open(Settings())
    try:
        overlays = _chest(ws)
    finally:
        ws.close()
    models = Settings().model_dir / "chest"

    code, out, err = run(monkeypatch, capsys, "model", "delete", "-p", "chest", "2", "--yes")
    said = " ".join(err.split())
    assert code != 0 and "model version 2 of 'chest' is in use" in said
    assert "medloop model use -p chest 1" in said and (models / "v2.pt").exists()

    code, out, err = run(monkeypatch, capsys, "model", "delete", "-p", "chest", "1")
    assert code == 0 and "would delete" in out and "dry run" in out, err
    assert (models / "v1.pt").exists() and (models / "v1.gradcam").is_dir()

    code, out, err = run(
        monkeypatch, capsys, "model", "delete", "-p", "chest", "1", "--yes", "--json"
    )
    assert code == 0, err
    done = json.loads(out)
    assert done["deleted"] is True and done["files"] == ["chest/v1.pt", "chest/v1.gradcam"]
    assert (done["rows"], done["blobs"]) == ({"predictions": 2}, 1)
    assert not (models / "v1.pt").exists() and not (models / "v1.gradcam").exists()
    assert (models / "v2.pt").exists() and (models / "v2.gradcam").is_dir()
    ws = Workspace.open(Settings())
    try:
        assert not ws.blobs.exists(overlays[1]) and ws.blobs.exists(overlays[2])
        with ws.db.session() as s:
            assert s.scalar(select(func.count(Prediction.id))) == 2  # v2's
            assert repo.next_model_version(s, project_id=1) == 3  # 1 is never given again
        entry = audit_log(ws, action="model.delete").entries[0]
        assert (entry.actor, entry.entity, entry.detail["version"]) == ("cli", "model_version", 1)
        assert storage.verify_checkpoints(ws).problems == []  # a deleted file is no problem
        assert storage.collect_garbage(ws, grace_hours=0, actor="test").unused == []
    finally:
        ws.close()

    code, out, err = run(monkeypatch, capsys, "model", "list", "-p", "chest", "--json")
    listed = json.loads(out)
    assert [v["deleted_at"] is not None for v in listed["versions"]] == [True, False]
    assert [p["version"] for p in listed["in_use"]] == [1, 2]  # its period in use stays
    code, out, err = run(monkeypatch, capsys, "model", "list", "-p", "chest")
    assert "deleted (their files are gone; kept for the history): v1" in " ".join(out.split())
    assert all(len(line) <= 80 for line in out.splitlines())
    for args in (("model", "use", "-p", "chest", "1"), ("model", "delete", "-p", "chest", "1")):
        code, out, err = run(monkeypatch, capsys, *args)
        assert code != 0 and "model version 1 of 'chest' was deleted on" in " ".join(err.split())
    code, out, err = run(monkeypatch, capsys, "model", "labels", "-p", "chest", "--version",
                         "1", "-o", str(home / "labels.csv"))  # fmt: skip
    assert code == 0, err  # the rows it learned from are still there to read
