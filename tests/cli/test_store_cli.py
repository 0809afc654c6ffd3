"""`medloop ingest dicom` run again, `medloop store verify` and `medloop store gc`."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from cli_support import run
from dicom_support import write_dicoms
from medloop.config import Settings
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
