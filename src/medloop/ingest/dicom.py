"""A folder of DICOM images, de-identified on read, with an optional labels CSV.

`scan_dicom_folder` checks every file by its header (readable, not showing who the
patient is) before any pixels are read; `DicomFolder.records` then de-identifies every
file (`medloop.ingest.deid`) one at a time before anything leaves it: records carry only
the de-identified file bytes, a display image and the patient pseudonym. File names are
kept as given (``source``), so they must not carry personal data themselves.

What a hospital's export holds besides single-frame images is set aside and listed
(`SkippedFile`), never a reason to refuse the rest: files that are not DICOM (a CD's
viewer, a README), objects without pixel data (presentation states, key objects,
structured reports), multi-frame images, and true duplicates, that is a second file of
the same SOP instance or, read later, of the same stored pixel values (`raw_pixel_digest`,
never the rendered image: two CT slices all air under the window render the same).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut
from pydicom.uid import UID

from medloop.exceptions import IngestError, InvalidInputError
from medloop.ingest.deid import (
    IDENTITY_KEYWORDS,
    check_key,
    deidentified_identity,
    deidentify,
    dicom_to_bytes,
    has_pixel_data,
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

#: Why a file of a folder was set aside (`SkippedFile.reason`).
NOT_DICOM = "not DICOM"
NOT_AN_IMAGE = "not an image"
MULTI_FRAME = "multi-frame"
DUPLICATE = "duplicate"


@dataclass(frozen=True)
class SkippedFile:
    """A file of a DICOM folder that is not imported: ``reason`` one of `NOT_DICOM`,
    `NOT_AN_IMAGE`, `MULTI_FRAME`, `DUPLICATE`; ``detail`` says more."""

    source: str
    reason: str
    detail: str


@dataclass(frozen=True)
class DicomRecord:
    """One de-identified DICOM image.

    ``image`` is a uint8 (H, W) display/training image; ``dicom_bytes`` the
    de-identified file; ``label`` an index into the returned class list or ``None``.
    ``source`` is the file's name (which may name the patient: for messages while
    reading only); ``reference`` what the store keeps instead, the de-identified
    SOPInstanceUID (keyed, so the same file always maps to the same one).
    ``duplicate_of`` names an earlier file of the same `DicomFolder.records` call with
    the same stored pixel values: a true duplicate, not to be stored.
    """

    source: str
    reference: str
    image: np.ndarray
    dicom_bytes: bytes
    patient_pseudonym: str
    label: int | None
    duplicate_of: str | None = None


def raw_pixel_digest(dataset: Dataset) -> str:
    """`pixel_digest` of the stored pixel values as decoded (``pixel_array``), before any
    rescale or window: equal only for the same image, whatever its transfer syntax."""
    return pixel_digest(dataset.pixel_array)


def dicom_image(dataset: Dataset) -> np.ndarray:
    """Render a single-frame DICOM image as uint8 ``(H, W)``.

    Grey images go through the modality LUT (rescale slope/intercept), then the first
    VOI window (linear, PS3.3 C.11.2.1.2) or VOI LUT when present, else min-max
    scaling; MONOCHROME1 is inverted. Colour images (RGB, YBR, palette) become grey by
    ITU-R 601 luma. Raises `InvalidInputError` for multi-frame or undecodable data
    (naming the transfer syntax, whose decoder may be missing).
    """
    if "PixelData" not in dataset:
        raise InvalidInputError("no pixel data (not an image)")
    _check_single_frame(dataset)
    try:
        pixels = dataset.pixel_array
    except Exception as exc:  # decoders raise many types (missing plugin, bad data)
        syntax = getattr(getattr(dataset, "file_meta", None), "TransferSyntaxUID", None)
        name = f"{syntax.name} ({syntax})" if isinstance(syntax, UID) else "?"
        raise InvalidInputError(
            f"cannot decode pixel data (transfer syntax {name}): {exc}"
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
    by ``source``, which `records` reads and de-identifies one at a time, and the files
    set aside (`SkippedFile`)."""

    folder: Path
    classes: list[str]
    files: list[DicomFile]
    key: bytes = field(repr=False)
    date_key: bytes = field(repr=False)
    pixels_checked: bool = False
    skipped: list[SkippedFile] = field(default_factory=list)

    def records(
        self, files: Iterable[DicomFile] | None = None, *, stored: Iterable[DicomFile] = ()
    ) -> Iterator[DicomRecord]:
        """Read, de-identify and render `files` (default all) one by one, so memory holds
        one image at a time.

        A file with the same stored pixel values as an earlier one of the call is a true
        duplicate (the same image under another SOP instance UID): its record says so
        (``duplicate_of``); so does one with the pixels of a file of `stored` (imported by
        a run before, whose pixels are read first). Raises `IngestError` naming the file
        for pixel data that cannot be decoded, a duplicate labelled otherwise than its
        twin, or a file changed since the folder was scanned."""
        seen_pixels: dict[str, DicomFile] = {}
        for file in stored:
            path = self.folder / file.source
            try:
                seen_pixels.setdefault(raw_pixel_digest(read_dicom(path)), file)
            except Exception as exc:  # decoders raise many types (missing plugin, bad data)
                raise IngestError(path, f"cannot decode pixel data: {exc}") from exc
        for file in self.files if files is None else files:
            path = self.folder / file.source
            try:
                clean = deidentify(
                    read_dicom(path),
                    key=self.key,
                    date_key=self.date_key,
                    pixels_checked=self.pixels_checked,
                )
                image = dicom_image(clean)
            except InvalidInputError as exc:
                raise IngestError(path, str(exc)) from exc
            instance = str(clean.get("SOPInstanceUID", "") or "")
            if _reference(instance, file.source, key=self.key) != file.reference:
                raise IngestError(path, "the file changed while the folder was read")
            twin = seen_pixels.setdefault(raw_pixel_digest(clean), file)
            if twin is not file and twin.label != file.label:
                raise IngestError(
                    path,
                    f"duplicate item: identical pixels to {twin.source!r}, labelled otherwise",
                )
            yield DicomRecord(
                source=file.source,
                reference=file.reference,
                image=image,
                dicom_bytes=dicom_to_bytes(clean),
                patient_pseudonym=file.patient_pseudonym,
                label=file.label,
                duplicate_of=None if twin is file else twin.source,
            )


def scan_dicom_folder(
    folder: Path,
    *,
    key: bytes,
    date_key: bytes,
    labels_csv: Path | None = None,
    classes: Sequence[str] | None = None,
    pixels_checked: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> DicomFolder:
    """Check every file under `folder` (recursively) by its header, before any pixels
    are read; `progress` is called with (files checked, files). `key` keys the patient
    pseudonyms and UIDs, `date_key` the patients' date shifts (`deidentify`, on read).
    A file whose pixels may show who the patient is (`identifying_pixels`;
    `pixels_checked` says a person has looked at the images of kinds that often do) is
    refused.

    Every file but hidden ones, the labels CSV and DICOMDIR is looked at. One ending in
    ``.dcm``/``.dicom`` or starting with the DICOM preamble + ``DICM`` must be readable
    DICOM; any other is read as DICOM when it is (PACS and CD exports name their files
    ``IM0001``, often without the preamble), else set aside as `NOT_DICOM`. Objects
    without pixel data (presentation states, key objects, structured reports: `NOT_AN_IMAGE`),
    multi-frame images (`MULTI_FRAME`) and a second file of the same SOP instance
    (`DUPLICATE`) are set aside too: `DicomFolder.skipped`, logged by count. The labels
    CSV follows `read_image_folder` rules (``file,label``; a ``patient_id`` column is
    ignored: the patient comes from the DICOM PatientID); default ``folder/labels.csv``
    when present, else everything is unlabelled.

    Raises `IngestError` naming the file for identifying pixels, a file that says it is
    DICOM and cannot be read, CSV problems (a listed file set aside, a duplicate labelled
    otherwise than its twin), or no images.
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

    candidates = _folder_files(folder, skip=skip)
    for name, row in rows.items():
        if name not in candidates:
            raise IngestError(csv_path, f"line {row.line}: file {name!r} listed but not found")
    if rows and any(row.patient_id for row in rows.values()):
        logger.info("ignoring the patient_id column: DICOM PatientID is used instead")

    files: list[DicomFile] = []
    skipped: list[SkippedFile] = []
    seen_instances: dict[str, DicomFile] = {}
    for done, name in enumerate(sorted(candidates), 1):
        checked = _check_file(
            folder / name,
            name,
            claims_dicom=candidates[name],
            key=key,
            pixels_checked=pixels_checked,
        )
        listed = rows.get(name)
        if isinstance(checked, SkippedFile):
            if listed is not None:
                raise IngestError(
                    csv_path, f"line {listed.line}: file {name!r} listed but {checked.detail}"
                )
            skipped.append(checked)
        else:
            pseudonym, reference = checked
            file = DicomFile(name, reference, pseudonym, listed.label if listed else None)
            twin = seen_instances.setdefault(reference, file)
            if twin is file:
                files.append(file)
            elif twin.label != file.label:
                raise IngestError(
                    folder / name,
                    f"duplicate item: same SOP instance as {twin.source!r}, labelled otherwise",
                )
            else:
                skipped.append(
                    SkippedFile(name, DUPLICATE, f"same SOP instance as {twin.source!r}")
                )
        if progress is not None:
            progress(done, len(candidates))
    if not files:
        raise IngestError(folder, "no DICOM images found")
    patients = len({f.patient_pseudonym for f in files})
    logger.info("found %d DICOM images of %d patients in %s", len(files), patients, folder)
    for reason, names in group_skipped(skipped).items():
        logger.warning("%d files skipped (%s): %s", len(names), reason, _some(names))
    return DicomFolder(
        folder,
        class_list,
        files,
        key=key,
        date_key=date_key,
        pixels_checked=pixels_checked,
        skipped=skipped,
    )


def group_skipped(skipped: Iterable[SkippedFile]) -> dict[str, list[str]]:
    """The sources of `skipped` by reason, in the order met."""
    groups: dict[str, list[str]] = {}
    for file in skipped:
        groups.setdefault(file.reason, []).append(file.source)
    return groups


def _some(names: Sequence[str], shown: int = 10) -> str:
    more = f", ... ({len(names) - shown} more)" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def _check_file(
    path: Path, name: str, *, claims_dicom: bool, key: bytes, pixels_checked: bool
) -> tuple[str, str] | SkippedFile:
    """(patient pseudonym, reference) of a single-frame image file, by its header, or why
    it is set aside. Raises `IngestError` for a file that says it is DICOM (suffix,
    preamble) and cannot be read, pixel data without a SOP Class UID, or pixels that may
    show who the patient is."""
    try:
        header = read_dicom(path, only=(*IDENTITY_KEYWORDS, "NumberOfFrames"))
    except IngestError:
        if claims_dicom:
            raise
        return SkippedFile(name, NOT_DICOM, "not a DICOM file")
    sop_class = str(header.get("SOPClassUID", "") or "")
    if sop_class == _MEDIA_STORAGE_DIRECTORY or not has_pixel_data(header):
        kind = UID(sop_class).name if sop_class else "no SOP class"
        return SkippedFile(name, NOT_AN_IMAGE, f"not an image ({kind}: no pixel data)")
    if not sop_class:  # read like any DICOM file, but it could not be written as one
        raise IngestError(path, "pixel data but no SOP Class UID (a required attribute)")
    frames = int(header.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        detail = f"multi-frame ({frames} frames; only single-frame images are imported)"
        return SkippedFile(name, MULTI_FRAME, detail)
    try:
        pseudonym, instance = deidentified_identity(header, key=key, pixels_checked=pixels_checked)
    except InvalidInputError as exc:
        raise IngestError(path, str(exc)) from exc
    return pseudonym, _reference(instance, name, key=key)


def read_dicom_folder(
    folder: Path,
    *,
    key: bytes,
    date_key: bytes,
    labels_csv: Path | None = None,
    classes: Sequence[str] | None = None,
    pixels_checked: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[list[str], list[DicomRecord]]:
    """De-identify and read every DICOM image under `folder`, all in memory:
    `scan_dicom_folder` (whose rules and errors apply) then every record (errors of
    `DicomFolder.records`). `progress` is called with (files read, files). Returns the
    class list and the records sorted by ``source``, true duplicates left out. A large
    folder is better read with `scan_dicom_folder` and `DicomFolder.records`, which hold
    one image at a time."""
    scanned = scan_dicom_folder(
        folder,
        key=key,
        date_key=date_key,
        labels_csv=labels_csv,
        classes=classes,
        pixels_checked=pixels_checked,
    )
    if progress is not None:
        progress(0, len(scanned.files))
    records: list[DicomRecord] = []
    for done, record in enumerate(scanned.records(), 1):
        if record.duplicate_of is None:
            records.append(record)
        if progress is not None:
            progress(done, len(scanned.files))
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


def _folder_files(folder: Path, *, skip: set[Path]) -> dict[str, bool]:
    """Relative POSIX paths of the files under `folder` to look at, each with whether it
    says it is DICOM (``.dcm``/``.dicom`` suffix, or the preamble and ``DICM``)."""
    root = folder.resolve()
    found: dict[str, bool] = {}
    for path in folder.rglob("*"):
        rel = path.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts) or rel.name.upper() == "DICOMDIR":
            continue
        if not path.is_file() or path.resolve() in skip:
            continue
        if not path.resolve().is_relative_to(root):
            raise IngestError(path, f"link points outside {folder}")
        suffix = PurePosixPath(rel.name).suffix.lower()
        found[rel.as_posix()] = suffix in _DICOM_SUFFIXES or _has_dicom_magic(path)
    return found


def _has_dicom_magic(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            head = handle.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:] == b"DICM"
