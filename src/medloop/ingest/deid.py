"""DICOM de-identification: the PS3.15 Basic Application Level Confidentiality Profile
with the Retain Longitudinal Temporal Information with Modified Dates Option.

`deidentify` returns a copy of a dataset with the identifying attributes of PS3.15
Table E.1-1 removed (X), emptied (Z) or replaced by dummies (D); every instance UID
replaced (U) by a keyed hash, so the same UID under the same key always maps to the
same ``2.25.<int>`` UID and references between files stay intact; all private tags,
curves and overlays dropped; and the patient replaced by a keyed pseudonym. Pixel data
is never touched (burned-in text is *not* cleaned: the Clean Pixel Data option is not
applied).

Where the table leaves a choice (X/Z, Z/D, X/Z/D) the empty value Z is used; X/D
becomes X; a dummy sequence (D) is emptied. Beyond the table, as a safety net, any
remaining person name (PN) or free text (LT, ST, UT, UC) is emptied and public tags
unknown to pydicom's dictionary are removed.

Dates are modified, not removed (the option's C, for every date and time the table
lists and any other): every date (DA) and the date part of every date-time (DT) moves
by the patient's keyed date shift (`medloop.ingest.dateshift`), the one their FHIR facts
move by, so the intervals between a patient's studies, and between their images and
their facts, stay exact while the dates of care do not. The shift is whole weeks, so
times of day (TM, and DT's time and UTC offset) are what the modified dates give them:
they are kept. The patient's own birth date and time are not dates of care: they stay
emptied or removed as the Basic Profile says (a birth year comes from the FHIR import),
and so does their age (PatientAge is removed, so no age over 89 is kept). A date
or time that cannot be read is emptied. The output says
``LongitudinalTemporalInformationModified = MODIFIED`` and names both the profile (DCM
113100) and the option (DCM 113107).

>>> pseudonymize("12345", key=b"secret") == pseudonymize("12345", key=b"secret")
True
"""

from __future__ import annotations

import copy
import datetime
import hashlib
import hmac
import io
import logging
import re
from pathlib import Path
from typing import Any, Literal

import pydicom
from dicomanonymizer.dicom_anonymization_databases import dicomfields_2026c as _table
from pydicom.datadict import dictionary_has_tag, keyword_for_tag, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.sequence import Sequence
from pydicom.uid import (
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    UID_dictionary,
)

from medloop.exceptions import IngestError, InvalidInputError
from medloop.ingest.dateshift import date_offset, shift_dicom_time

logger = logging.getLogger(__name__)

Action = Literal["X", "Z", "D", "U"]

#: Value of (0012,0063) De-identification Method written into every output.
DEIDENTIFICATION_METHOD = "PS3.15 Basic Profile, Modified Dates; keyed (medloop)"
#: Codes (PS3.16 CID 7050) of the Basic Application Level Confidentiality Profile and of
#: its Retain Longitudinal Temporal Information with Modified Dates Option, with meanings.
DEIDENTIFICATION_CODES = {
    "113100": "Basic Application Confidentiality Profile",
    "113107": "Retain Longitudinal Temporal Information Modified Dates Option",
}

# PS3.15 Table E.1-1, Basic Profile column, as dicom-anonymizer ships it (its newest
# edition of the standard's table, regenerated upstream with each release): a table kept in
# step with the standard rather than a copy kept here by hand, which had missed
# ContentSequence, GraphicAnnotationSequence and some 250 more. Compound codes are resolved
# as the module docstring says; the sequences coded X/Z/U* (Referenced and Source Image
# Sequence) are kept and cleaned item by item, their UIDs replaced.
_TABLE_ACTIONS: dict[str, Action] = {
    "X_TAGS": "X",
    "Z_TAGS": "Z",
    "D_TAGS": "D",
    "U_TAGS": "U",
    "Z_D_TAGS": "Z",
    "X_Z_TAGS": "Z",
    "X_D_TAGS": "X",
    "X_Z_D_TAGS": "Z",
}
#: Rows of Table E.1-1 the shipped table lacks.
_BEYOND_TABLE: dict[str, Action] = {
    "PatientBirthDateInAlternativeCalendar": "X",
    "PatientDeathDateInAlternativeCalendar": "X",
    "PatientAlternativeCalendar": "X",
    "IssuerOfAccessionNumberSequence": "X",
    "IssuerOfPatientIDQualifiersSequence": "X",
    "CreatorVersionUID": "U",
    "ContextGroupExtensionCreatorUID": "U",
}


# UI attributes naming classes, syntaxes or coding schemes, never an instance: kept.
_KEEP_UID_KEYWORDS = frozenset(
    {
        "SOPClassUID",
        "MediaStorageSOPClassUID",
        "ReferencedSOPClassUID",
        "ReferencedSOPClassUIDInFile",
        "TransferSyntaxUID",
        "ReferencedTransferSyntaxUIDInFile",
        "ImplementationClassUID",
        "CodingSchemeUID",
        "ContextUID",
        "MappingResourceUID",
        "RelatedGeneralSOPClassUID",
        "OriginalSpecializedSOPClassUID",
        "AffectedSOPClassUID",
        "RequestedSOPClassUID",
        "SOPClassesInStudy",
    }
)

# File meta attributes that can name sites or carry private content; the writer's
# implementation UID and version are dropped too (pydicom writes its own).
_FILE_META_REMOVE = frozenset(
    {
        "ImplementationClassUID",
        "ImplementationVersionName",
        "SourceApplicationEntityTitle",
        "SendingApplicationEntityTitle",
        "ReceivingApplicationEntityTitle",
        "SourcePresentationAddress",
        "SendingPresentationAddress",
        "ReceivingPresentationAddress",
        "PrivateInformationCreatorUID",
        "PrivateInformation",
    }
)

_DUMMY_TEXT = "ANONYMIZED"
_DUMMY_BY_VR: dict[str, Any] = {
    "AE": _DUMMY_TEXT,
    "AS": "000D",
    "CS": _DUMMY_TEXT,
    "DA": "19000101",
    "DS": "0",
    "DT": "19000101000000",
    "IS": "0",
    "LO": _DUMMY_TEXT,
    "LT": _DUMMY_TEXT,
    "PN": _DUMMY_TEXT,
    "SH": _DUMMY_TEXT,
    "ST": _DUMMY_TEXT,
    "TM": "000000",
    "UC": _DUMMY_TEXT,
    "UT": _DUMMY_TEXT,
}
#: Modalities whose images often carry text burned into their pixels.
TEXT_PRONE_MODALITIES = {
    "US": "ultrasound",
    "XC": "external-camera photograph",
    "ES": "endoscopy",
    "OT": "other",
    "DOC": "document",
    "SC": "secondary capture",
    "GM": "microscopy",
    "SM": "slide microscopy",
    "OP": "ophthalmic photograph",
}
#: SOP class UID roots (the class and those below it) -> the kind of image they store, for
#: the classes whose images often show text: screenshots, scans and photographs.
TEXT_PRONE_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.7": "secondary capture",
    "1.2.840.10008.5.1.4.1.1.77.1": "visible-light photograph",
}
_SAFETY_NET_VRS = frozenset({"PN", "LT", "ST", "UT", "UC"})
#: Values of dates and times, modified (dates shifted, times kept) whatever the table says.
_TEMPORAL_VRS = frozenset({"DA", "DT", "TM"})
#: Pixel Data and its float and double-float kinds.
PIXEL_DATA_KEYWORDS = ("FloatPixelData", "DoubleFloatPixelData", "PixelData")
_PIXEL_TAGS = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})


def _tags(keywords: frozenset[str] | dict[str, Action]) -> dict[int, str]:
    out: dict[int, str] = {}
    for keyword in keywords:
        tag = tag_for_keyword(keyword)
        if tag is None:  # pragma: no cover - guarded by a test on the installed pydicom
            raise RuntimeError(f"pydicom does not know the DICOM keyword {keyword!r}")
        out[tag] = keyword
    return out


_KEEP_UID_TAGS = frozenset(_tags(_KEEP_UID_KEYWORDS))
#: DICOM TM: HHMMSS.FFFFFF, down to the hour (PS3.5 6.2; "HH:MM:SS" in older files).
_TIME = re.compile(r"\d{2}(?::?\d{2}(?::?\d{2}(?:\.\d{1,6})?)?)?")
#: The patient's own dates, not their care's: the Basic Profile's action applies.
_UNMODIFIED_TAGS = frozenset(_tags(frozenset({"PatientBirthDate", "PatientBirthTime"})))
_FILE_META_REMOVE_TAGS = frozenset(_tags(_FILE_META_REMOVE))


def _table_actions() -> dict[int, Action]:
    out: dict[int, Action] = {}
    for category, action in _TABLE_ACTIONS.items():
        for tag in getattr(_table, category):
            if len(tag) == 2:  # the others are group masks: curves and overlays, dropped whole
                out[(tag[0] << 16) | tag[1]] = action
    for tag, keyword in _tags(_BEYOND_TABLE).items():
        out[tag] = _BEYOND_TABLE[keyword]
    return out


_ACTION_BY_TAG: dict[int, Action] = _table_actions()
#: Keyword -> action of the Basic Profile as applied here, for the attributes pydicom names.
BASIC_PROFILE: dict[str, Action] = {
    keyword: action for tag, action in _ACTION_BY_TAG.items() if (keyword := keyword_for_tag(tag))
}


def check_key(key: bytes) -> None:
    """Raise `InvalidInputError` unless `key` is non-empty bytes."""
    if not isinstance(key, bytes | bytearray) or not key:
        raise InvalidInputError("the pseudonymisation key must be non-empty bytes")


def pseudonymize(value: str, *, key: bytes, prefix: str = "P") -> str:
    """Return a short keyed pseudonym: `prefix` + 16 hex chars of HMAC-SHA256(key, value).

    Deterministic for the same value and key; without the key it cannot be reversed or
    recomputed. Surrounding whitespace of `value` is ignored.
    """
    check_key(key)
    text = str(value).strip()
    if not text:
        raise InvalidInputError("cannot pseudonymize an empty value")
    digest = hmac.new(key, b"medloop-pseudonym\x00" + text.encode(), hashlib.sha256)
    return f"{prefix}{digest.hexdigest()[:16]}"


def deidentify_uid(uid: str, *, key: bytes) -> str:
    """Map a UID to ``2.25.<128-bit int>`` by keyed hash: same UID + key, same result."""
    check_key(key)
    text = str(uid).strip().rstrip("\x00")
    digest = hmac.new(key, b"medloop-uid\x00" + text.encode(), hashlib.sha256).digest()
    return f"2.25.{int.from_bytes(digest[:16], 'big')}"


def patient_identity(dataset: Dataset) -> str:
    """The value a dataset's pseudonym is derived from.

    PatientID when present (so ``pseudonymize(PatientID)`` is the pseudonym); else the
    patient name, else the study, else the instance UID (each prefixed by its kind).
    """
    patient_id = str(dataset.get("PatientID", "") or "").strip()
    if patient_id:
        return patient_id
    for keyword, kind in (
        ("PatientName", "name"),
        ("StudyInstanceUID", "study"),
        ("SOPInstanceUID", "instance"),
    ):
        value = str(dataset.get(keyword, "") or "").strip()
        if value:
            logger.warning("dataset has no PatientID; pseudonym derived from %s", keyword)
            return f"{kind}:{value}"
    raise InvalidInputError("dataset has no PatientID, PatientName or UID to pseudonymize")


def identifying_pixels(dataset: Dataset, *, pixels_checked: bool = False) -> str | None:
    """Why the pixels of `dataset` may show who the patient is, or None.

    The profile never cleans pixels, so an image is refused when it says it shows
    identifying features (RecognizableVisualFeatures, e.g. a face) or text
    (BurnedInAnnotation YES), and, unless a person has checked its pixels
    (`pixels_checked`), when it does not say and is of a kind that often carries the
    patient's name burned in: secondary captures (screenshots, scans) and the
    `TEXT_PRONE_MODALITIES`."""
    if _stated(dataset, "RecognizableVisualFeatures") == "YES":
        return (
            "RecognizableVisualFeatures is YES: the image shows features (such as a face) "
            "that identify the patient"
        )
    burned_in = _stated(dataset, "BurnedInAnnotation")
    if burned_in == "YES":
        return "BurnedInAnnotation is YES: its pixels may show who the patient is"
    if burned_in or pixels_checked:
        return None
    modality = _stated(dataset, "Modality")
    sop_class = str(dataset.get("SOPClassUID", ""))
    classes = [
        k for u, k in TEXT_PRONE_CLASSES.items() if sop_class == u or sop_class.startswith(f"{u}.")
    ]
    if classes:
        kind = classes[0]
    elif modality in TEXT_PRONE_MODALITIES:
        kind = f"{modality} ({TEXT_PRONE_MODALITIES[modality]})"
    else:
        return None
    return (
        f"BurnedInAnnotation is not stated, and {kind} images often show the patient's name "
        "in their pixels: state it (NO) once the pixels are checked, or confirm that they "
        "are (--pixels-checked)"
    )


def _stated(dataset: Dataset, keyword: str) -> str:
    return str(dataset.get(keyword, "") or "").strip().upper()


#: The attributes `deidentified_identity` reads.
IDENTITY_KEYWORDS = (
    "PatientID",
    "PatientName",
    "StudyInstanceUID",
    "SOPInstanceUID",
    "SOPClassUID",
    "Modality",
    "BurnedInAnnotation",
    "RecognizableVisualFeatures",
)


def deidentified_identity(
    dataset: Dataset, *, key: bytes, pixels_checked: bool = False
) -> tuple[str, str]:
    """(patient pseudonym, SOP instance UID) as `deidentify` would write them, from the
    `IDENTITY_KEYWORDS` alone and without copying the dataset (a folder's headers are
    checked before any image is read); raises as `deidentify` does for pixels that may
    identify the patient. The UID is empty when the dataset has none."""
    check_key(key)
    pseudonym = pseudonymize(patient_identity(dataset), key=key)
    reason = identifying_pixels(dataset, pixels_checked=pixels_checked)
    if reason is not None:
        raise InvalidInputError(reason)
    instance = str(dataset.get("SOPInstanceUID", "") or "")
    return pseudonym, _new_uid(instance, key) if instance else ""


def deidentify(
    dataset: Dataset, *, key: bytes, date_key: bytes, pixels_checked: bool = False
) -> Dataset:
    """Return a de-identified copy of `dataset` (the input is not modified).

    PatientID and PatientName become ``pseudonymize(PatientID)``, and dates move by
    ``date_offset(PatientID, key=date_key)`` (`patient_identity` gives the value both
    are made from: a FHIR Patient whose identifier is that PatientID has the same
    pseudonym and shift); see the module docstring for the rules. Adds
    PatientIdentityRemoved = YES, DeidentificationMethod,
    DeidentificationMethodCodeSequence (`DEIDENTIFICATION_CODES`) and
    LongitudinalTemporalInformationModified = MODIFIED. Raises `InvalidInputError` when
    the pixels may identify the patient (`identifying_pixels`): the profile leaves
    pixels as they are, so it could not claim the identity removed.
    """
    check_key(key)
    identity = patient_identity(dataset)
    pseudonym = pseudonymize(identity, key=key)
    offset = date_offset(identity, key=date_key)
    reason = identifying_pixels(dataset, pixels_checked=pixels_checked)
    if reason is not None:
        raise InvalidInputError(reason)
    out = copy.deepcopy(dataset)
    if isinstance(out, FileDataset):
        out.filename = None  # the source path may itself name the patient
    _clean(out, key, offset)
    meta = getattr(out, "file_meta", None)
    if isinstance(meta, FileMetaDataset):
        _clean_file_meta(out, meta, key)

    out.PatientID = pseudonym
    out.PatientName = pseudonym
    out.PatientIdentityRemoved = "YES"
    out.DeidentificationMethod = DEIDENTIFICATION_METHOD
    codes = []
    for value, meaning in DEIDENTIFICATION_CODES.items():
        code = Dataset()
        code.CodeValue = value
        code.CodingSchemeDesignator = "DCM"
        code.CodeMeaning = meaning
        codes.append(code)
    out.DeidentificationMethodCodeSequence = Sequence(codes)
    out.LongitudinalTemporalInformationModified = "MODIFIED"
    return out


def _clean(ds: Dataset, key: bytes, offset: datetime.timedelta) -> None:
    """Apply the profile to `ds` in place, recursing into sequence items; dates move by
    `offset`."""
    for tag in list(ds.keys()):
        if int(tag) in _PIXEL_TAGS:
            continue
        group = tag.group
        if (
            tag.is_private
            or tag.element == 0  # group lengths go stale once values change
            or group & 0xFF00 in (0x5000, 0x6000)  # curves and overlays
            or not dictionary_has_tag(tag)
        ):
            del ds[tag]
            continue
        elem = ds[tag]
        action = _ACTION_BY_TAG.get(int(tag))
        if elem.VR in _TEMPORAL_VRS and int(tag) not in _UNMODIFIED_TAGS:
            _modify_temporal(elem, offset)
        elif action == "X":
            del ds[tag]
        elif action == "D" and elem.VR == "UI":  # a dummy UID: a keyed one
            _replace_uids(elem, key)
        elif action in ("Z", "D"):
            _blank(elem, dummy=action == "D")
        elif elem.VR == "SQ":
            for item in elem.value:
                _clean(item, key, offset)
        elif elem.VR == "UI":
            _replace_uids(elem, key)
        elif elem.VR in _SAFETY_NET_VRS:
            _blank(elem, dummy=False)


def _modify_temporal(elem: DataElement, offset: datetime.timedelta) -> None:
    """Move a DA or DT element's values by `offset` (`shift_dicom_time`); keep a TM
    element's (a whole-week shift leaves the time of day as it is). A value that is no
    date or time empties the element (logged by keyword, never by value)."""
    if elem.value in (None, ""):
        return
    values = [str(v) for v in (elem.value if elem.VM > 1 else [elem.value])]
    if elem.VR == "TM":
        if all(_TIME.fullmatch(v.strip()) for v in values):
            return
    else:
        try:
            modified = [shift_dicom_time(v, offset, vr=elem.VR) for v in values]
        except InvalidInputError:
            pass
        else:
            elem.value = modified if elem.VM > 1 else modified[0]
            return
    logger.warning("emptied %s: not a DICOM %s value", elem.keyword or elem.tag, elem.VR)
    elem.value = None


def _blank(elem: DataElement, *, dummy: bool) -> None:
    """Empty an element (Z) or give it a dummy value consistent with its VR (D)."""
    if elem.VR == "SQ":
        elem.value = Sequence([])
    elif dummy and elem.VR in _DUMMY_BY_VR:
        elem.value = _DUMMY_BY_VR[elem.VR]
    else:
        elem.value = None


def _replace_uids(elem: DataElement, key: bytes) -> None:
    """Replace instance UIDs by keyed UIDs; keep class, syntax and registered UIDs."""
    if int(elem.tag) in _KEEP_UID_TAGS or elem.value in (None, ""):
        return

    if elem.VM > 1:
        elem.value = [_new_uid(str(v), key) for v in elem.value]
    else:
        elem.value = _new_uid(str(elem.value), key)


def _new_uid(uid: str, key: bytes) -> str:
    """A UID's replacement: a keyed one, unless it is a registered UID (of the standard)."""
    return uid if uid in UID_dictionary else deidentify_uid(uid, key=key)


def _clean_file_meta(ds: Dataset, meta: FileMetaDataset, key: bytes) -> None:
    """Replace UIDs in the file meta, drop site names, and make it complete."""
    for tag in list(meta.keys()):
        if int(tag) in _FILE_META_REMOVE_TAGS or tag.is_private:
            del meta[tag]
        elif meta[tag].VR == "UI":
            _replace_uids(meta[tag], key)
    _complete_file_meta(ds, meta)


def _complete_file_meta(ds: Dataset, meta: FileMetaDataset) -> None:
    """Fill in the transfer syntax and the media storage UIDs from the dataset."""
    if "TransferSyntaxUID" not in meta:
        implicit, little = getattr(ds, "original_encoding", (None, None))
        if implicit:
            meta.TransferSyntaxUID = ImplicitVRLittleEndian
        elif little is False:
            meta.TransferSyntaxUID = ExplicitVRBigEndian
        else:
            meta.TransferSyntaxUID = ExplicitVRLittleEndian
    if "SOPClassUID" in ds:
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
    if "SOPInstanceUID" in ds:
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID


def read_dicom(path: Path, *, only: tuple[str, ...] | None = None) -> Dataset:
    """Read a DICOM file (with or without the 128-byte preamble) or raise `IngestError`;
    with `only`, just those attributes (keywords) of its header."""
    path = Path(path)
    if not path.is_file():
        raise IngestError(path, "file not found")
    partial: dict[str, Any] = {}
    if only is not None:  # the pixel data's tag is read, its value deferred, never loaded
        tags = ["SOPClassUID", *only, *PIXEL_DATA_KEYWORDS]
        partial = {"specific_tags": tags, "defer_size": 1024}
    try:
        try:
            ds = pydicom.dcmread(path, **partial)
        except InvalidDicomError:
            ds = pydicom.dcmread(path, force=True, **partial)
            if "SOPClassUID" not in ds and not has_pixel_data(ds):
                raise IngestError(path, "not a DICOM file") from None
        _decode_elements(ds, skip=_PIXEL_TAGS if only is not None else frozenset())
    except IngestError:
        raise
    except Exception as exc:  # pydicom raises many types on damaged files
        raise IngestError(path, f"not a readable DICOM file: {exc}") from exc
    return ds


def has_pixel_data(dataset: Dataset) -> bool:
    """Whether `dataset` holds pixel data (of any of the three kinds), without loading it."""
    return any(keyword in dataset for keyword in PIXEL_DATA_KEYWORDS)


def _decode_elements(ds: Dataset, *, skip: frozenset[int]) -> None:
    """Decode every element of `ds` (but those tagged `skip`) now, so that a damaged file
    fails here and not halfway through an import."""
    for tag in list(ds.keys()):  # iterating a dataset itself would load deferred values
        if int(tag) in skip:
            continue
        element = ds[tag]
        if element.VR == "SQ":
            for item in element.value:
                _decode_elements(item, skip=frozenset())


def dicom_to_bytes(dataset: Dataset) -> bytes:
    """Encode a dataset as a DICOM Part 10 file (zeroed preamble, complete file meta).

    Fills in `dataset.file_meta` (transfer syntax, media storage UIDs) in place.
    """
    if not isinstance(getattr(dataset, "file_meta", None), FileMetaDataset):
        dataset.file_meta = FileMetaDataset()
    _complete_file_meta(dataset, dataset.file_meta)
    dataset.preamble = b"\x00" * 128
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, dataset, enforce_file_format=True)
    return buffer.getvalue()


def deidentify_file(
    src: Path, dst: Path, *, key: bytes, date_key: bytes, pixels_checked: bool = False
) -> str:
    """De-identify the DICOM file `src` into `dst` (`deidentify`); return the patient
    pseudonym.

    Raises `IngestError` naming `src` if it is not a readable DICOM file or its pixels
    may identify the patient (`identifying_pixels`).
    """
    check_key(key)
    dataset = read_dicom(src)
    try:
        out = deidentify(dataset, key=key, date_key=date_key, pixels_checked=pixels_checked)
    except InvalidInputError as exc:
        raise IngestError(src, str(exc)) from exc
    data = dicom_to_bytes(out)
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(data)
    logger.debug("wrote a de-identified DICOM file (%d bytes)", len(data))
    return str(out.PatientID)
