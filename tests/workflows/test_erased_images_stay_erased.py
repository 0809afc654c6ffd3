"""Images of a patient erased from a project (consent withdrawn) are never imported
again: a DICOM or image folder imported again leaves them out before their files are
stored, and a patient erased while an import runs loses the images it read meanwhile."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select

from cli_support import run
from dicom_support import write_dicoms
from medloop.config import Settings
from medloop.ingest import pseudonymize
from medloop.store import repository as repo
from medloop.store.models import Item, Patient
from medloop.workflows import Workspace, erasure, ingest, storage
from medloop.workflows.audit import audit_log

KEY = "k" * 32


def _pseudonyms(ws: Workspace) -> list[str]:
    """The pseudonyms of the patients of the stored items, one per item."""
    with ws.db.session() as s:
        query = select(Patient.pseudonym).join(Item, Item.patient_id == Patient.id)
        return sorted(s.scalars(query))


def test_a_dicom_folder_imported_again_leaves_the_erased_patients_files_out(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("MEDLOOP_SECRET_KEY", KEY)
    folder = tmp_path / "ct"
    write_dicoms(folder, 6)  # patients P0, P1, P2: two files each
    code, out, err = run(monkeypatch, capsys, "ingest", "dicom", str(folder), "-p", "ct")
    assert code == 0 and "ingested 6 items (3 patients)" in out, err
    args = ("patients", "erase", "P1", "-p", "ct", "--reason", "withdrawn", "--yes")
    code, out, err = run(monkeypatch, capsys, *args)
    assert code == 0 and "images" in out, err

    code, out, err = run(monkeypatch, capsys, "ingest", "dicom", str(folder), "-p", "ct")
    assert code == 0, err
    said = " ".join(out.split())
    assert "ingested" not in said and "skipped 4 already imported" in said
    assert "2 images of erased patients skipped (consent withdrawn)" in said
    ws = Workspace.open(Settings())
    try:
        gone = pseudonymize("P1", key=KEY.encode())
        assert len(_pseudonyms(ws)) == 4 and gone not in _pseudonyms(ws)
        report = storage.collect_garbage(ws, grace_hours=0, actor="test")
        assert report.unused == []  # no image or DICOM file of theirs was written
        summary = ingest.ingest_dicom_folder(ws, folder=folder, project="ct")
        assert (summary.items, summary.skipped, summary.erased) == (0, 4, 2)
    finally:
        ws.close()


def _png(path: Path, value: int) -> None:
    image = np.full((4, 5), value, dtype=np.uint8)
    image[0, 0] = 255 - value
    Image.fromarray(image).save(path)


@pytest.fixture
def ws(tmp_path: Path) -> Iterator[Workspace]:
    workspace = Workspace.open(Settings(home=tmp_path / "home", secret_key=KEY))
    yield workspace
    workspace.close()


def test_a_patient_erased_during_an_import_loses_the_images_read_meanwhile(
    ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "xray"
    folder.mkdir()
    rows = ["file,label,patient_id"]
    for i, patient in enumerate(["p1", "p2"]):
        _png(folder / f"{patient}-a.png", 10 + i)
        rows.append(f"{patient}-a.png,{'xy'[i]},{patient}")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    ingest.ingest_image_folder(ws, folder=folder, project="xray")
    for i, patient in enumerate(["p1", "p2"]):  # a later visit of each
        _png(folder / f"{patient}-b.png", 20 + i)
        rows.append(f"{patient}-b.png,{'xy'[i]},{patient}")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    stored: list[str] = []
    store = ingest._image_blobs

    def erase_then_store(*args: object, **kwargs: object) -> object:
        if not stored:  # the import has planned p1's image: p1 withdraws now
            erasure.erase_patient(
                ws, project="xray", patient="p1", reason="withdrawn", actor="cli", dry_run=False
            )
        blobs = store(*args, **kwargs)  # type: ignore[arg-type]
        stored.append(blobs.image_sha256)  # type: ignore[union-attr]
        return blobs

    monkeypatch.setattr(ingest, "_image_blobs", erase_then_store)
    summary = ingest.ingest_image_folder(ws, folder=folder, project="xray")
    p2 = pseudonymize("p2", key=KEY.encode())
    assert _pseudonyms(ws) == [p2, p2]
    assert len(stored) == 2 and not ws.blobs.exists(stored[0])  # p1's later image
    assert ws.blobs.exists(stored[1])
    assert (summary.items, summary.erased, summary.skipped) == (1, 1, 2)
    with ws.db.session() as s:
        refs = sorted(s.scalars(select(Item.source_ref)))
        assert len(refs) == 2 and repo.get_project(s, name="xray").n_channels == 1
    entry = audit_log(ws, action="ingest").entries[0]
    assert (entry.detail["items"], entry.detail["erased_patients_skipped"]) == (1, 1)
