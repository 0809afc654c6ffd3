"""A folder of DICOM images, de-identified on read, with an optional labels CSV.

`scan_dicom_folder` checks every file by its header (readable, not showing who the
patient is, one instance each) before any pixels are read; `DicomFolder.records` then
de-identifies every file (`medloop.ingest.deid`) one at a time before anything leaves it:
records carry only the de-identified file bytes, a display image and the patient
pseudonym. File names are kept as given (``source``), so they must not carry
personal data themselves.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut

from medloop.exceptions import IngestError, InvalidInputError
from medloop.ingest.deid import (
    IDENTITY_KEYWORDS,
    check_key,
    deidentified_identity,
    deidentify,
    dicom_to_bytes,
    pseudonymize,
    read_dicom,
)
from medloop.ingest.image_folder import (
    LABELS_CSV,
    check_classes,
    pixel_digest,
    read_labels_csv,
)
from medloop.ingest.images import scale_to_uint8

logger = logging.getLogger(__name__)

_MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"  # DICOMDIR: an index, not an image
_DICOM_SUFFIXES = frozenset({".dcm", ".dicom"})


@dataclass(frozen=True)
class DicomRecord:
    """One de-identified DICOM image.

    ``image`` is a uint8 (H, W) display/training image; ``dicom_bytes`` the
    de-identified file; ``label`` an index into the returned class list or ``None``.
    ``source`` is the file's name (which may name the patient: for messages while
    reading only); ``reference`` what the store keeps instead, the de-identified
    SOPInstanceUID (keyed, so the same file always maps to the same one).
    """

    source: str
    reference: str
    image: np.ndarray
    dicom_bytes: bytes
    patient_pseudonym: str
    label: int | None


def dicom_image(dataset: Dataset) -> np.ndarray:
    """Render a single-frame DICOM image as uint8 ``(H, W)``.

    Grey images go through the modality LUT (rescale slope/intercept), then the first
    VOI window (linear, PS3.3 C.11.2.1.2) or VOI LUT when present, else min-max
    scaling; MONOCHROME1 is inverted. Colour images (RGB, YBR, palette) become grey by
    ITU-R 601 luma. Raises `InvalidInputError` for multi-frame or undecodable data.
    """
    if "PixelData" not in dataset:
        raise InvalidInputError("no pixel data (not an image)")
    _check_single_frame(dataset)
    try:
        pixels = dataset.pixel_array
    except Exception as exc:  # decoders raise many types (missing plugin, bad data)
        syntax = getattr(getattr(dataset, "file_meta", None), "TransferSyntaxUID", "?")
        raise InvalidInputError(
            f"cannot decode pixel data (transfer syntax {syntax}): {exc}"
        ) from exc
    photometric = str(dataset.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if photometric == "PALETTE COLOR":
        pixels = apply_color_lut(pixels, dataset)
    if pixels.ndim == 3 and pixels.shape[-1] == 3:
        luma = pixels.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
        if pixels.dtype == np.uint8:
            return np.clip(np.rint(luma), 0, 255).astype(np.uint8)
        return scale_to_uint8(luma)
    if pixels.ndim != 2:
        raise InvalidInputError(f"unsupported pixel array shape {pixels.shape}")
    values = np.asarray(apply_modality_lut(pixels, dataset), dtype=np.float64)
    window = _first_window(dataset)
    if window is not None:
        image = _linear_window(values, *window)
    elif "VOILUTSequence" in dataset:
        image = scale_to_uint8(np.asarray(apply_voi_lut(values, dataset), dtype=np.float64))
    else:
        image = scale_to_uint8(values)
    if photometric == "MONOCHROME1":
        image = 255 - image
    return image


@dataclass(frozen=True)
class DicomFile:
    """One DICOM image of a checked folder, its header read, its pixels not yet:
    ``reference`` and ``patient_pseudonym`` as in `DicomRecord`."""

    source: str
    reference: str
    patient_pseudonym: str
    label: int | None


@dataclass(frozen=True)
class DicomFolder:
    """A checked DICOM folder (`scan_dicom_folder`): its classes and image files, sorted
    by ``source``, which `records` reads and de-identifies one at a time."""

    folder: Path
    classes: list[str]
    files: list[DicomFile]
    key: bytes = field(repr=False)
    pixels_checked: bool = False

    def records(self, files: Iterable[DicomFile] | None = None) -> Iterator[DicomRecord]:
        """Read, de-identify and render `files` (default all) one by one, so memory holds
        one image at a time.

        Raises `IngestError` naming the file for pixel data that is absent or cannot be
        decoded, identical pixels to an earlier file of the same call, or a file changed
        since the folder was scanned."""
        seen_pixels: dict[str, str] = {}
        for file in self.files if files is None else files:
            path = self.folder / file.source
            try:
                clean = deidentify(
                    read_dicom(path), key=self.key, pixels_checked=self.pixels_checked
                )
                image = dicom_image(clean)
            except InvalidInputError as exc:
                raise IngestError(path, str(exc)) from exc
            instance = str(clean.get("SOPInstanceUID", "") or "")
            if _reference(instance, file.source, key=self.key) != file.reference:
                raise IngestError(path, "the file changed while the folder was read")
            digest = pixel_digest(image)
            if digest in seen_pixels:
                raise IngestError(
                    path, f"duplicate item: identical pixels to {seen_pixels[digest]!r}"
                )
            seen_pixels[digest] = file.source
            yield DicomRecord(
                source=file.source,
                reference=file.reference,
                image=image,
                dicom_bytes=dicom_to_bytes(clean),
                patient_pseudonym=file.patient_pseudonym,
                label=file.label,
            )


def scan_dicom_folder(
    folder: Path,
    *,
    key: bytes,
    labels_csv: Path | None = None,
    classes: Sequence[str] | None = None,
    pixels_checked: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> DicomFolder:
    """Check every DICOM file under `folder` (recursively) by its header, before any
    pixels are read; `progress` is called with (files checked, files). A file whose pixels
    may show who the patient is (`identifying_pixels`; `pixels_checked` says a person has
    looked at the images of kinds that often do) is refused.

    A file is read when it ends in ``.dcm``/``.dicom`` or starts with the DICOM
    preamble + ``DICM``; other files (and hidden ones, the labels CSV, DICOMDIR) are
    skipped. The labels CSV follows `read_image_folder` rules (``file,label``; a
    ``patient_id`` column is ignored: the patient comes from the DICOM PatientID);
    default ``folder/labels.csv`` when present, else everything is unlabelled.

    Raises `IngestError` naming the file for identifying pixels, unreadable DICOM,
    multi-frame images, two files of the same SOP instance, CSV problems, or no images.
    """
    check_key(key)
    folder = Path(folder)
    if not folder.is_dir():
        raise IngestError(folder, "not a folder")
    csv_path = labels_csv if labels_csv is not None else folder / LABELS_CSV
    csv_path = Path(csv_path)
    if labels_csv is not None and not csv_path.is_file():
        raise IngestError(csv_path, "labels CSV not found")
    if csv_path.is_file():
        class_list, rows = read_labels_csv(csv_path, classes=classes)
        skip = {csv_path.resolve()}
    else:
        class_list, rows, skip = check_classes(classes) or [], {}, set()

    candidates = _dicom_candidates(folder, skip=skip)
    for name, row in rows.items():
        if name not in candidates:
            reason = "not found" if not (folder / name).is_file() else "not a DICOM file"
            raise IngestError(csv_path, f"line {row.line}: file {name!r} listed but {reason}")
    if rows and any(row.patient_id for row in rows.values()):
        logger.info("ignoring the patient_id column: DICOM PatientID is used instead")

    files: list[DicomFile] = []
    seen_instances: dict[str, str] = {}
    for done, name in enumerate(sorted(candidates), 1):
        path = folder / name
        header = read_dicom(path, only=(*IDENTITY_KEYWORDS, "NumberOfFrames"))
        if str(header.get("SOPClassUID", "")) == _MEDIA_STORAGE_DIRECTORY:
            continue
        try:
            _check_single_frame(header)
            pseudonym, instance = deidentified_identity(
                header, key=key, pixels_checked=pixels_checked
            )
        except InvalidInputError as exc:
            raise IngestError(path, str(exc)) from exc
        reference = _reference(instance, name, key=key)
        if reference in seen_instances:
            raise IngestError(
                path, f"duplicate item: same SOP instance as {seen_instances[reference]!r}"
            )
        seen_instances[reference] = name
        label_row = rows.get(name)
        files.append(
            DicomFile(
                source=name,
                reference=reference,
                patient_pseudonym=pseudonym,
                label=label_row.label if label_row else None,
            )
        )
        if progress is not None:
            progress(done, len(candidates))
    if not files:
        raise IngestError(folder, "no DICOM images found")
    patients = len({f.patient_pseudonym for f in files})
    logger.info("found %d DICOM images of %d patients in %s", len(files), patients, folder)
    return DicomFolder(folder, class_list, files, key=key, pixels_checked=pixels_checked)


def read_dicom_folder(
    folder: Path,
    *,
    key: bytes,
    labels_csv: Path | None = None,
    classes: Sequence[str] | None = None,
    pixels_checked: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[list[str], list[DicomRecord]]:
    """De-identify and read every DICOM image under `folder`, all in memory:
    `scan_dicom_folder` (whose rules and errors apply) then every record (errors of
    `DicomFolder.records`). `progress` is called with (files read, files). Returns the
    class list and the records sorted by ``source``. A large folder is better read with
    `scan_dicom_folder` and `DicomFolder.records`, which hold one image at a time."""
    scanned = scan_dicom_folder(
        folder, key=key, labels_csv=labels_csv, classes=classes, pixels_checked=pixels_checked
    )
    if progress is not None:
        progress(0, len(scanned.files))
    records: list[DicomRecord] = []
    for record in scanned.records():
        records.append(record)
        if progress is not None:
            progress(len(records), len(scanned.files))
    return scanned.classes, records


def _reference(instance: str, source: str, *, key: bytes) -> str:
    """What the store keeps of a file: its de-identified SOP instance UID (keyed: the
    same file always maps to the same reference), else a keyed pseudonym of its name."""
    return f"dicom:{instance or pseudonymize(source, key=key)}"


def _check_single_frame(dataset: Dataset) -> None:
    frames = int(dataset.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        raise InvalidInputError(f"multi-frame images ({frames} frames) are not supported")


def _first_window(dataset: Dataset) -> tuple[float, float] | None:
    """The first (center, width) VOI window, or None when absent or unusable."""
    if "WindowCenter" not in dataset or "WindowWidth" not in dataset:
        return None
    try:
        center_value = dataset.WindowCenter
        width_value = dataset.WindowWidth
        center = float(center_value[0] if _is_multi(center_value) else center_value)
        width = float(width_value[0] if _is_multi(width_value) else width_value)
    except (TypeError, ValueError, IndexError):
        return None
    if not np.isfinite(center) or not np.isfinite(width) or width < 1:
        return None
    return center, width


def _is_multi(value: object) -> bool:
    return isinstance(value, list | tuple) or type(value).__name__ == "MultiValue"


def _linear_window(values: np.ndarray, center: float, width: float) -> np.ndarray:
    """DICOM linear VOI function mapped to 0..255 (PS3.3 C.11.2.1.2.1)."""
    low = center - 0.5 - (width - 1) / 2
    high = center - 0.5 + (width - 1) / 2
    if width <= 1:
        scaled = np.where(values <= low, 0.0, 255.0)
    else:
        scaled = ((values - (center - 0.5)) / (width - 1) + 0.5) * 255.0
        scaled = np.where(values <= low, 0.0, np.where(values > high, 255.0, scaled))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _dicom_candidates(folder: Path, *, skip: set[Path]) -> set[str]:
    """Relative POSIX paths of files under `folder` that look like DICOM."""
    root = folder.resolve()
    found: set[str] = set()
    for path in folder.rglob("*"):
        rel = path.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts) or rel.name.upper() == "DICOMDIR":
            continue
        if not path.is_file() or path.resolve() in skip:
            continue
        if not path.resolve().is_relative_to(root):
            raise IngestError(path, f"link points outside {folder}")
        if PurePosixPath(rel.name).suffix.lower() in _DICOM_SUFFIXES or _has_dicom_magic(path):
            found.add(rel.as_posix())
    return found


def _has_dicom_magic(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            head = handle.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:] == b"DICM"
