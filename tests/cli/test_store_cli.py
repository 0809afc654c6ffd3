"""`medloop ingest dicom` run again, `medloop store verify` and `medloop store gc`."""

from __future__ import annotations

import json
import os
import time
from hashlib import sha256
from pathlib import Path

from cli_support import run
from dicom_support import write_dicoms
from medloop import workflows
from medloop.config import Settings
from medloop.store import repository as repo
from medloop.store.blobs import BlobStore


def test_an_import_run_again_then_verify_and_gc(
    home: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    folder = tmp_path / "ct"
    write_dicoms(folder, 4)
    ingest = ("ingest", "dicom", str(folder), "-p", "ct")
    code, out, err = run(monkeypatch, capsys, *ingest)
    assert code == 0 and "ingested 4 items (2 patients)" in out, err
    code, out, err = run(monkeypatch, capsys, *ingest)
    assert code == 0 and "skipped 4 already imported" in out and "ingested" not in out, err

    code, out, err = run(monkeypatch, capsys, "store", "verify")
    assert code == 0 and "checked 8 blobs named 8 times: 0 missing, 0 damaged" in out
    assert "verify: checking blobs" in err  # a progress bar on stderr
    blobs = BlobStore(Settings().blob_dir)
    damaged = next(p for p in blobs.root.rglob("*") if p.is_file() and p.stat().st_size < 500)
    damaged.write_bytes(b"not the image")
    code, out, _ = run(monkeypatch, capsys, "store", "verify", "--json")
    report = json.loads(out)
    assert code == 1 and (report["missing"], report["damaged"]) == (0, 1)
    (problem,) = report["problems"]
    assert problem["sha256"] == damaged.name and problem["entity"] == "item"
    assert (problem["project"], problem["role"], problem["state"]) == ("ct", "image", "damaged")

    orphan = blobs.put(b"left by an interrupted import")
    code, out, _ = run(monkeypatch, capsys, "store", "gc", "--json")
    listed = json.loads(out)
    assert code == 0 and [b["sha256"] for b in listed["blobs"]] == [orphan]
    assert (listed["within_grace"], listed["deleted"]) == (1, 0)
    code, out, _ = run(monkeypatch, capsys, "store", "gc", "--delete")
    assert code == 0 and "deleted 0" in out and blobs.exists(orphan)  # younger than 24 h
    then = time.time() - 25 * 3600
    os.utime(blobs.path(orphan), (then, then))
    code, out, _ = run(monkeypatch, capsys, "store", "gc", "--delete")
    assert code == 0 and "deleted 1" in out and not blobs.exists(orphan)
    code, _, err = run(monkeypatch, capsys, "store", "gc", "--grace-hours", "-1")
    assert code == 2 and "Invalid value" in err


def test_verify_names_a_damaged_checkpoint_and_gc_deletes_a_killed_training(
    home: Path, monkeypatch, capsys
) -> None:
    ws = workflows.Workspace.open(Settings())
    try:
        with ws.db.session() as s:
            project = repo.create_project(s, name="chest", classes=["a", "b"], n_channels=1)
            for version, metrics in [(1, {}), (2, {"checkpoint_sha256": sha256(b"w").hexdigest()})]:
                repo.add_model_version(
                    s, project_id=project.id, network="cnn", n_train=2, metrics=metrics,
                    checkpoint_path=f"chest/v{version}.pt", version=version,
                )  # fmt: skip
    finally:
        ws.close()
    folder = Settings().model_dir / "chest"
    folder.mkdir(parents=True)
    (folder / "v1.pt").write_bytes(b"trained before digests")
    (folder / "v2.pt").write_bytes(b"w")
    code, out, _ = run(monkeypatch, capsys, "store", "verify")
    assert code == 0 and "2 model checkpoints: 0 missing, 0 damaged, 1 unverified" in out
    (folder / "v2.pt").write_bytes(b"bit rot")
    code, out, _ = run(monkeypatch, capsys, "store", "verify", "--json")
    checked = json.loads(out)["checkpoints"]
    assert code == 1 and (checked["damaged"], checked["unverified"]) == (1, 1)
    assert {(f["project"], f["version"], f["state"]) for f in checked["findings"]} == {
        ("chest", 1, "unverified"),
        ("chest", 2, "damaged"),
    }

    killed = folder / "training-0f.pt"
    killed.write_bytes(b"half")
    code, out, _ = run(monkeypatch, capsys, "store", "gc", "--delete")
    assert code == 0 and "deleted 0 unfinished checkpoints" in out and killed.exists()
    then = time.time() - 25 * 3600
    os.utime(killed, (then, then))
    code, out, _ = run(monkeypatch, capsys, "store", "gc", "--json")
    listed = json.loads(out)
    assert [c["name"] for c in listed["unfinished_checkpoints"]] == ["chest/training-0f.pt"]
    code, out, _ = run(monkeypatch, capsys, "store", "gc", "--delete")
    assert code == 0 and "deleted 1 unfinished checkpoints (4 bytes)" in out
    assert not killed.exists()
    orphan = folder / "v3.pt"  # no version names it
    orphan.write_bytes(b"lost")
    for path in (orphan, folder / "v1.pt", folder / "v2.pt"):
        os.utime(path, (then, then))
    code, out, _ = run(monkeypatch, capsys, "store", "gc")
    assert code == 0 and "checkpoints no model version names" in out and "chest/v3.pt" in out
    code, out, _ = run(monkeypatch, capsys, "store", "gc", "--delete", "--json")
    listed = json.loads(out)
    assert [(c["name"], c["deleted"]) for c in listed["orphan_checkpoints"]] == [
        ("chest/v3.pt", True)
    ]
    assert not orphan.exists() and (folder / "v1.pt").exists() and (folder / "v2.pt").exists()
