"""Image folders with a labels CSV: the happy path and every documented error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medloop.exceptions import IngestError, InvalidInputError
from medloop.ingest import read_image_folder, scan_image_folder


def _png(path: Path, value: int, *, rgb: bool = False) -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = np.full((4, 5, 3) if rgb else (4, 5), value, dtype=np.uint8)
    image[0, 0] = 255 - value  # not constant, still unique per value
    Image.fromarray(image).save(path)
    return image


def _folder(tmp_path: Path, csv: str | None) -> Path:
    folder = tmp_path / "imgs"
    _png(folder / "a.png", 10)
    _png(folder / "b.png", 20, rgb=True)
    _png(folder / "sub" / "c.png", 30)
    if csv is not None:
        (folder / "labels.csv").write_text(csv)
    return folder


def test_reads_labels_patients_and_subfolders(tmp_path: Path) -> None:
    folder = _folder(
        tmp_path, "file,label,patient_id\na.png,pneumonia,p1\nsub/c.png,normal,p2\nb.png,,\n"
    )
    data = read_image_folder(folder)
    assert data.classes == ["normal", "pneumonia"]
    by_source = {r.source: r for r in data.records}
    assert [r.source for r in data.records] == ["a.png", "b.png", "sub/c.png"]
    assert by_source["a.png"].label == 1 and by_source["a.png"].patient_id == "p1"
    assert by_source["sub/c.png"].label == 0 and by_source["sub/c.png"].patient_id == "p2"
    assert by_source["b.png"].label is None and by_source["b.png"].patient_id is None
    assert by_source["b.png"].image.shape == (4, 5, 3)
    assert by_source["a.png"].image[1, 1] == 10


def test_progress_counts_every_image(tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    read_image_folder(
        _folder(tmp_path, None), progress=lambda done, total: calls.append((done, total))
    )
    assert calls == [(1, 3), (2, 3), (3, 3)]


def test_classes_fix_order_and_unlisted_files_are_unlabelled(tmp_path: Path) -> None:
    folder = _folder(tmp_path, "file,label\n./a.png,normal\n")
    data = read_image_folder(folder, classes=["pneumonia", "normal"])
    assert data.classes == ["pneumonia", "normal"]
    assert [r.label for r in data.records] == [1, None, None]


def test_no_csv_means_unlabelled(tmp_path: Path) -> None:
    data = read_image_folder(_folder(tmp_path, None), classes=["x", "y"])
    assert data.classes == ["x", "y"] and all(r.label is None for r in data.records)


def test_explicit_csv_elsewhere_with_windows_separators(tmp_path: Path) -> None:
    folder = _folder(tmp_path, None)
    csv = tmp_path / "my_labels.csv"
    csv.write_text("\ufefffile,label\nsub\\c.png,yes\n")  # BOM and a backslash path
    data = read_image_folder(folder, labels_csv=csv)
    assert data.classes == ["yes"]
    assert {r.source: r.label for r in data.records}["sub/c.png"] == 0


@pytest.mark.parametrize(
    ("csv", "match"),
    [
        ("file,label\na.png,cat\n", r"labels\.csv: line 2: unknown label 'cat'"),
        ("name,label\na.png,normal\n", r"labels\.csv: missing column\(s\) \['file'\]"),
        ("file,label\nzz.png,normal\n", r"line 2: file 'zz.png' listed but not found"),
        ("file,label\n../a.png,normal\n", "leaves the folder"),
        ("file,label\n/etc/passwd,normal\n", "absolute path"),
        ("file,label\nC:\\x\\a.png,normal\n", "absolute path"),
        ("file,label\na.png,normal\na.png,normal\n", "line 3: duplicate row for 'a.png'"),
        ("file,label\na.png,normal,extra\n", "more fields than the header"),
    ],
)
def test_csv_errors_name_csv_and_line(tmp_path: Path, csv: str, match: str) -> None:
    folder = _folder(tmp_path, csv)
    with pytest.raises(IngestError, match=match) as info:
        read_image_folder(folder, classes=["normal", "pneumonia"])
    assert info.value.path == str(folder / "labels.csv")


def test_a_true_duplicate_is_left_out(tmp_path: Path) -> None:
    folder = _folder(tmp_path, "file,label\na.png,normal\nz_copy.png,normal\n")
    _png(folder / "z_copy.png", 10)
    scanned = scan_image_folder(folder)
    assert [(r.source, r.duplicate_of) for r in scanned.records()] == [
        ("a.png", None),
        ("b.png", None),
        ("sub/c.png", None),
        ("z_copy.png", "a.png"),
    ]
    assert [r.source for r in read_image_folder(folder).records] == ["a.png", "b.png", "sub/c.png"]


def test_identical_pixels_labelled_otherwise(tmp_path: Path) -> None:
    folder = _folder(tmp_path, "file,label\na.png,normal\nz_copy.png,pneumonia\n")
    _png(folder / "z_copy.png", 10)
    with pytest.raises(
        IngestError, match=r"identical pixels to 'a\.png', labelled otherwise"
    ) as info:
        read_image_folder(folder)
    assert info.value.path.endswith("z_copy.png")


def test_corrupt_image(tmp_path: Path) -> None:
    folder = _folder(tmp_path, None)
    (folder / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated jpeg")
    with pytest.raises(IngestError, match=r"bad\.jpg"):
        read_image_folder(folder)


def test_unsupported_extension(tmp_path: Path) -> None:
    folder = _folder(tmp_path, None)
    (folder / "notes.txt").write_text("hello")
    with pytest.raises(IngestError, match=r"notes\.txt: unsupported extension '\.txt'"):
        read_image_folder(folder)


def test_hidden_files_are_ignored(tmp_path: Path) -> None:
    folder = _folder(tmp_path, None)
    (folder / ".DS_Store").write_bytes(b"\x00\x01")
    assert len(read_image_folder(folder).records) == 3


def test_empty_folder_and_missing_things(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(IngestError, match="no images found"):
        read_image_folder(empty)
    with pytest.raises(IngestError, match="not a folder"):
        read_image_folder(tmp_path / "nope")
    with pytest.raises(IngestError, match="labels CSV not found"):
        read_image_folder(_folder(tmp_path, None), labels_csv=tmp_path / "none.csv")


def test_bad_classes_argument(tmp_path: Path) -> None:
    folder = _folder(tmp_path, "file,label\na.png,x\n")
    with pytest.raises(InvalidInputError, match="unique"):
        read_image_folder(folder, classes=["x", "x"])
