"""A folder of PNG/JPEG images with an optional ``labels.csv`` (``file,label[,patient_id]``).

`scan_image_folder` checks the folder, the CSV and every file's header before any image
is read; `ImageFolder.records` then reads the images one at a time. Every error is an
`IngestError` naming the offending file (and CSV row).

    folder/
      labels.csv        file,label,patient_id
      a.png             a.png,pneumonia,p01
      sub/b.jpg         sub/b.jpg,normal,p02
      c.png             (not in the CSV: unlabelled)
"""

from __future__ import annotations

import csv
import hashlib
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

import numpy as np

from medloop.exceptions import IngestError, InvalidInputError
from medloop.ingest.images import IMAGE_EXTENSIONS, check_image_file, load_image_file

logger = logging.getLogger(__name__)

LABELS_CSV = "labels.csv"
_REQUIRED_COLUMNS = ("file", "label")


@dataclass(frozen=True)
class ImageRecord:
    """One image: its path relative to the folder, pixels, label index and patient.

    ``duplicate_of`` names an earlier file of the same `ImageFolder.records` call with
    identical pixels and the same label: a true duplicate, not to be stored."""

    source: str
    image: np.ndarray
    label: int | None
    patient_id: str | None
    duplicate_of: str | None = None


@dataclass(frozen=True)
class ImageFolderDataset:
    """Images read from a folder; ``classes[label]`` names each record's label."""

    classes: list[str]
    records: list[ImageRecord]


@dataclass(frozen=True)
class LabelRow:
    """One validated row of a labels CSV."""

    file: str
    label: int | None
    patient_id: str | None
    line: int


@dataclass(frozen=True)
class ImageFile:
    """One image file of a checked folder, not read yet."""

    source: str
    label: int | None
    patient_id: str | None


@dataclass(frozen=True)
class ImageFolder:
    """A checked image folder (`scan_image_folder`): its classes and files, sorted by
    ``source``, whose images `records` reads one at a time."""

    folder: Path
    classes: list[str]
    files: list[ImageFile]

    def records(self, files: Iterable[ImageFile] | None = None) -> Iterator[ImageRecord]:
        """Read `files` (default all) one by one, so memory holds one image at a time.

        A file with identical pixels to an earlier one of the call is a true duplicate
        (a copy under another name, as exports hold): its record says so
        (``duplicate_of``). Raises `IngestError` naming the file for a damaged image, or a
        duplicate labelled otherwise than its twin."""
        seen: dict[str, ImageFile] = {}
        for file in self.files if files is None else files:
            image = load_image_file(self.folder / file.source)
            twin = seen.setdefault(pixel_digest(image), file)
            if twin is not file and twin.label != file.label:
                raise IngestError(
                    self.folder / file.source,
                    f"duplicate item: identical pixels to {twin.source!r}, labelled otherwise",
                )
            yield ImageRecord(
                file.source,
                image,
                file.label,
                file.patient_id,
                duplicate_of=None if twin is file else twin.source,
            )


def scan_image_folder(
    folder: Path,
    *,
    labels_csv: Path | None = None,
    classes: Sequence[str] | None = None,
) -> ImageFolder:
    """Check an image folder and its labels CSV without reading the images' pixels.

    Args:
        folder: the image folder; hidden files and the labels CSV are skipped, any
            other file must be a PNG or JPEG.
        labels_csv: CSV with columns ``file,label`` and optional ``patient_id``;
            default ``folder/labels.csv`` when it exists (else all images unlabelled).
            ``file`` is relative to `folder` (``/`` separators); an empty ``label``
            means unlabelled.
        classes: allowed label names in index order; default sorted unique CSV labels.

    Raises:
        IngestError: empty folder, missing CSV or column, a listed file that is absent,
            absolute or ``..`` paths, duplicate rows, unknown labels, unsupported
            extensions, or a file that is not a PNG or JPEG (its header is read).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise IngestError(folder, "not a folder")
    csv_path = _resolve_csv(folder, labels_csv)
    class_list, rows = (
        read_labels_csv(csv_path, classes=classes)
        if csv_path is not None
        else (check_classes(classes) or [], {})
    )

    files = _scan(folder, skip={csv_path.resolve()} if csv_path is not None else set())
    for name in sorted(files):
        suffix = PurePosixPath(name).suffix.lower()
        if suffix not in IMAGE_EXTENSIONS:
            raise IngestError(
                folder / name,
                f"unsupported extension {suffix or '(none)'!r}; "
                f"supported: {', '.join(sorted(IMAGE_EXTENSIONS))}",
            )
    for name, row in rows.items():
        if name not in files:
            assert csv_path is not None
            raise IngestError(
                csv_path, f"line {row.line}: file {name!r} listed but not found in {folder}"
            )
    if not files:
        raise IngestError(folder, "no images found")
    found = []
    for name in sorted(files):
        check_image_file(folder / name)
        listed = rows.get(name)
        found.append(
            ImageFile(name, listed.label if listed else None, listed.patient_id if listed else None)
        )
    labelled = sum(f.label is not None for f in found)
    logger.info("found %d images (%d labelled) in %s", len(found), labelled, folder)
    return ImageFolder(folder=folder, classes=class_list, files=found)


def read_image_folder(
    folder: Path,
    *,
    labels_csv: Path | None = None,
    classes: Sequence[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ImageFolderDataset:
    """Read every PNG/JPEG under `folder` (recursively) with labels from a CSV, all in
    memory: `scan_image_folder` (whose rules and errors apply) then every record.
    `progress` is called with (files read, files) as the images are read. True
    duplicates are left out. A large folder is better read with `scan_image_folder` and
    `ImageFolder.records`."""
    scanned = scan_image_folder(folder, labels_csv=labels_csv, classes=classes)
    records: list[ImageRecord] = []
    for done, record in enumerate(scanned.records(), 1):
        if record.duplicate_of is None:
            records.append(record)
        if progress is not None:
            progress(done, len(scanned.files))
    return ImageFolderDataset(classes=scanned.classes, records=records)


def read_labels_csv(
    csv_path: Path, *, classes: Sequence[str] | None = None
) -> tuple[list[str], dict[str, LabelRow]]:
    """Read and validate a ``file,label[,patient_id]`` CSV.

    Returns the class list (``classes`` or sorted unique labels) and the rows keyed by
    normalised relative path. Raises `IngestError` naming the CSV and line.
    """
    csv_path = Path(csv_path)
    allowed = check_classes(classes)
    try:
        with csv_path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            header = [h.strip() for h in (reader.fieldnames or [])]
            missing = [c for c in _REQUIRED_COLUMNS if c not in header]
            if missing:
                raise IngestError(
                    csv_path, f"missing column(s) {missing}; header is {header or '(empty)'}"
                )
            reader.fieldnames = header
            raw: list[tuple[int, str, str, str]] = []
            for record in reader:
                line = reader.line_num
                if None in record:
                    raise IngestError(csv_path, f"line {line}: more fields than the header")
                values = {k: (v or "").strip() for k, v in record.items()}
                if not any(values.values()):
                    continue
                raw.append((line, values["file"], values["label"], values.get("patient_id", "")))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise IngestError(csv_path, f"not a readable UTF-8 CSV file: {exc}") from exc
    except FileNotFoundError as exc:
        raise IngestError(csv_path, "labels CSV not found") from exc
    except OSError as exc:
        raise IngestError(csv_path, f"cannot read labels CSV: {exc}") from exc

    class_list = allowed if allowed is not None else sorted({lab for _, _, lab, _ in raw if lab})
    index = {name: i for i, name in enumerate(class_list)}
    rows: dict[str, LabelRow] = {}
    for line, file, label, patient in raw:
        name = normalise_relative_path(csv_path, file, line)
        if name in rows:
            raise IngestError(
                csv_path,
                f"line {line}: duplicate row for {name!r} (first on line {rows[name].line})",
            )
        if label and label not in index:
            raise IngestError(
                csv_path, f"line {line}: unknown label {label!r}; allowed {class_list}"
            )
        rows[name] = LabelRow(
            file=name,
            label=index[label] if label else None,
            patient_id=patient or None,
            line=line,
        )
    return class_list, rows


def normalise_relative_path(csv_path: Path, value: str, line: int) -> str:
    """Return `value` as a safe relative POSIX path or raise `IngestError`."""
    if not value:
        raise IngestError(csv_path, f"line {line}: empty file name")
    if PureWindowsPath(value).is_absolute() or PureWindowsPath(value).drive:
        raise IngestError(csv_path, f"line {line}: absolute path {value!r} not allowed")
    path = PurePosixPath(value.replace("\\", "/"))
    if path.is_absolute():
        raise IngestError(csv_path, f"line {line}: absolute path {value!r} not allowed")
    if ".." in path.parts:
        raise IngestError(csv_path, f"line {line}: path {value!r} leaves the folder")
    parts = [p for p in path.parts if p != "."]
    if not parts:
        raise IngestError(csv_path, f"line {line}: {value!r} is not a file name")
    return "/".join(parts)


def pixel_digest(image: np.ndarray) -> str:
    """SHA-256 over shape, dtype and pixels: equal digests mean identical images."""
    hasher = hashlib.sha256()
    hasher.update(f"{image.shape}|{image.dtype}|".encode())
    hasher.update(np.ascontiguousarray(image).tobytes())
    return hasher.hexdigest()


def _resolve_csv(folder: Path, labels_csv: Path | None) -> Path | None:
    if labels_csv is None:
        default = folder / LABELS_CSV
        return default if default.is_file() else None
    labels_csv = Path(labels_csv)
    if not labels_csv.is_file():
        raise IngestError(labels_csv, "labels CSV not found")
    return labels_csv


def check_classes(classes: Sequence[str] | None) -> list[str] | None:
    """Validate a caller's class list (unique, non-empty names); ``None`` passes through."""
    if classes is None:
        return None
    if isinstance(classes, str):
        raise InvalidInputError("classes must be a sequence of names, not one string")
    names = [str(c).strip() for c in classes]
    if not names or any(not n for n in names) or len(set(names)) != len(names):
        raise InvalidInputError(f"classes must be unique non-empty names, got {classes!r}")
    return names


def _scan(folder: Path, *, skip: set[Path]) -> set[str]:
    """Relative POSIX paths of the non-hidden files under `folder`, minus `skip`."""
    root = folder.resolve()
    found: set[str] = set()
    for path in folder.rglob("*"):
        rel = path.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if not path.is_file() or path.resolve() in skip:
            continue
        if not path.resolve().is_relative_to(root):
            raise IngestError(path, f"link points outside {folder}")
        found.add(rel.as_posix())
    return found
