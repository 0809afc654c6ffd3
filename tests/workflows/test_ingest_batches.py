"""Folder imports in batches: blobs flushed before their rows, a failed or interrupted
import run again skips what is in, and what a batch that failed left is found by gc."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image

from dicom_support import write_dicoms
from medloop.config import Settings
from medloop.exceptions import IngestError
from medloop.store import BlobStore
from medloop.store import repository as repo
from medloop.workflows import Workspace, ingest, storage
from medloop.workflows.audit import audit_log

FILES = 10


@pytest.fixture
def ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Workspace]:
    monkeypatch.setattr(ingest, "BATCH_SIZE", 4)
    workspace = Workspace.open(Settings(home=tmp_path / "home", secret_key="k" * 32))
    yield workspace
    workspace.close()


def _count(ws: Workspace, project: str) -> int:
    with ws.db.session() as s:
        return len(repo.items_frame(s, project_id=repo.get_project(s, name=project).id))


def test_an_import_that_failed_part_way_is_run_again_and_skips_what_is_in(
    ws: Workspace, tmp_path: Path
) -> None:
    folder = tmp_path / "ct"
    write_dicoms(folder, FILES)
    broken = pydicom.dcmread(folder / "09.dcm")
    broken.PixelData = b"\0" * 10  # the header is fine: found only when its image is read
    broken.save_as(folder / "09.dcm")
    with pytest.raises(IngestError, match=r"09\.dcm: cannot decode pixel data"):
        ingest.ingest_dicom_folder(ws, folder=folder, project="ct")
    assert _count(ws, "ct") == 8  # two batches of 4 committed before the error
    left = storage.collect_garbage(ws, grace_hours=0, actor="test").unused
    assert len(left) == 2  # 08.dcm's image and DICOM file, written, never committed
    write_dicoms(folder, FILES)  # the file mended
    summary = ingest.ingest_dicom_folder(ws, folder=folder, project="ct")
    assert (summary.items, summary.skipped) == (2, 8)
    again = ingest.ingest_dicom_folder(ws, folder=folder, project="ct")
    assert (again.items, again.skipped) == (0, FILES)  # run again: nothing doubled
    with ws.db.session() as s:
        project = repo.get_project(s, name="ct")
        items = repo.items_frame(s, project_id=project.id)
        splits = repo.patient_splits(s, project_id=project.id)
    assert len(items) == FILES and len(splits) == FILES // 2  # each patient in one split
    assert [e.detail["items"] for e in reversed(audit_log(ws, action="ingest").entries)] == [
        4,
        4,
        2,
    ]
    # the same folder into a fresh project gives the very same items and splits
    fresh = Workspace.open(Settings(home=tmp_path / "fresh", secret_key="k" * 32))
    try:
        ingest.ingest_dicom_folder(fresh, folder=folder, project="ct")
        with fresh.db.session() as s:
            whole = repo.items_frame(s, project_id=repo.get_project(s, name="ct").id)
    finally:
        fresh.close()
    assert sorted(zip(whole["image_sha256"], whole["split"], strict=True)) == sorted(
        zip(items["image_sha256"], items["split"], strict=True)
    )
    assert storage.verify_blobs(ws).problems == []
    report = storage.collect_garbage(ws, grace_hours=0, actor="test")
    assert len(report.unused) == 0  # the failed batch's blobs are named by the rerun


class CrashingBlobs(BlobStore):
    """A blob store on a machine that loses power at its `crash_at` call (("put", 13):
    the 13th `put`; ("sync", 2): the second flush, before it is done): blobs not flushed
    yet are lost, and the import stops there."""

    def __init__(self, root: Path, crash_at: tuple[str, int]) -> None:
        super().__init__(root)
        self.crash_at = crash_at
        self.calls = {"put": 0, "sync": 0}
        self.unflushed: set[str] = set()

    def _power_cut_at(self, call: str) -> None:
        self.calls[call] += 1
        if (call, self.calls[call]) == self.crash_at:
            for sha in self.unflushed:
                self.path(sha).unlink()
            raise KeyboardInterrupt  # the process dies with the machine

    def put(self, data: bytes, *, durable: bool = True) -> str:
        self._power_cut_at("put")
        sha = super().put(data, durable=durable)
        if not durable:
            self.unflushed.add(sha)
        return sha

    def sync(self, digests: Iterable[str]) -> None:
        digests = list(digests)
        self._power_cut_at("sync")
        super().sync(digests)
        self.unflushed -= set(digests)


@pytest.mark.parametrize("crash_at", [("put", 2 * 4 + 5), ("sync", 2)])
def test_a_crash_mid_batch_leaves_no_row_naming_a_lost_blob(
    ws: Workspace, tmp_path: Path, crash_at: tuple[str, int]
) -> None:
    folder = tmp_path / "ct"
    write_dicoms(folder, FILES)
    ws.blobs = CrashingBlobs(ws.blobs.root, crash_at)  # 2 blobs per file, 4 files a batch
    with pytest.raises(KeyboardInterrupt):
        ingest.ingest_dicom_folder(ws, folder=folder, project="ct")
    assert _count(ws, "ct") == 4  # the first batch only
    assert storage.verify_blobs(ws).problems == []  # every committed row's blobs survived
    ws.blobs = BlobStore(ws.blobs.root)
    summary = ingest.ingest_dicom_folder(ws, folder=folder, project="ct")
    assert (summary.items, summary.skipped) == (FILES - 4, 4)
    assert storage.verify_blobs(ws).problems == []


def test_an_image_folder_run_again_skips_its_images_and_another_folder_is_refused(
    ws: Workspace, tmp_path: Path
) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    rows = ["file,label,patient_id"]
    for i in range(6):
        Image.fromarray(np.full((4, 4), 20 * i, dtype=np.uint8)).save(folder / f"{i}.png")
        rows.append(f"{i}.png,{'ab'[i % 2]},p{i}")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    first = ingest.ingest_image_folder(ws, folder=folder, project="x")
    assert (first.items, first.skipped) == (6, 0)
    Image.fromarray(np.full((4, 4), 200, dtype=np.uint8), mode="L").convert("RGB").save(
        folder / "6.png"
    )
    Image.fromarray(np.full((4, 4), 20, dtype=np.uint8)).save(folder / "7.png")  # as 1.png
    (folder / "labels.csv").write_text("\n".join([*rows, "7.png,a,p7"]) + "\n")
    with pytest.raises(IngestError, match=r"7\.png: duplicate item: identical pixels .* otherwise"):
        ingest.ingest_image_folder(ws, folder=folder, project="x")  # 1.png is a "b"
    (folder / "labels.csv").write_text("\n".join([*rows, "7.png,b,p7"]) + "\n")
    second = ingest.ingest_image_folder(ws, folder=folder, project="x")
    assert (second.items, second.skipped) == (1, 6)
    assert second.left_out == {"duplicate": ["7.png"]}
    with ws.db.session() as s:
        assert repo.get_project(s, name="x").n_channels == 3  # an RGB image came
    other = tmp_path / "other"
    other.mkdir()
    (folder / "0.png").rename(other / "0.png")
    with pytest.raises(Exception, match="holds no import of this folder"):
        ingest.ingest_image_folder(ws, folder=other, project="x", classes=["a", "b"])


def test_a_file_refused_by_its_header_stops_the_import_before_anything_is_stored(
    ws: Workspace, tmp_path: Path
) -> None:
    folder = tmp_path / "ct"
    write_dicoms(folder, FILES)
    last = pydicom.dcmread(folder / "09.dcm")
    last.BurnedInAnnotation = "YES"
    last.save_as(folder / "09.dcm")
    with pytest.raises(IngestError, match=r"09\.dcm: BurnedInAnnotation is YES"):
        ingest.ingest_dicom_folder(ws, folder=folder, project="ct")
    with ws.db.session() as s:
        assert repo.list_projects(s) == []
    assert not [p for p in ws.blobs.root.rglob("*") if p.is_file()]


def test_a_study_export_is_imported_with_what_is_not_an_image_listed(
    ws: Workspace, tmp_path: Path
) -> None:
    """CT slices all air under the window render alike across batches (an import was
    refused as 'duplicate item'); a second copy of a file, a presentation state and a
    README are left out and listed, and the rest imported."""
    folder = tmp_path / "study"
    write_dicoms(folder, FILES)
    (folder / "labels.csv").unlink()
    for i in range(FILES):
        ds = pydicom.dcmread(folder / f"{i:02d}.dcm")
        ds.PixelData = np.full((8, 8), i, dtype=np.uint16).tobytes()  # air: all black
        ds.WindowCenter, ds.WindowWidth = 40, 400
        ds.save_as(folder / f"IM{i:04d}")
        (folder / f"{i:02d}.dcm").unlink()
    (folder / "IM9999").write_bytes((folder / "IM0003").read_bytes())
    presentation = pydicom.dcmread(folder / "IM0000")
    del presentation.PixelData
    presentation.SOPClassUID = "1.2.840.10008.5.1.4.1.1.11.1"
    presentation.SOPInstanceUID = "1.2.3.4"
    presentation.save_as(folder / "PR0001")
    (folder / "README.TXT").write_text("CD export")
    summary = ingest.ingest_dicom_folder(ws, folder=folder, project="ct", classes=["a", "b"])
    assert summary.items == FILES
    assert summary.left_out == {
        "not DICOM": ["README.TXT"],
        "not an image": ["PR0001"],
        "duplicate": ["IM9999"],
    }
