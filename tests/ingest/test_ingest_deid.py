"""De-identification on the DICOM files pydicom ships."""

from __future__ import annotations

import datetime
import io
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset

from medloop.exceptions import IngestError, InvalidInputError
from medloop.ingest import (
    BASIC_PROFILE,
    deidentify,
    deidentify_file,
    deidentify_uid,
    dicom_to_bytes,
    pseudonymize,
)
from medloop.ingest.dateshift import date_offset, shift_dicom_time

KEY = b"test-key"
DATE_KEY = b"a-date-shift-key-of-32-characters!"

# Attributes that must not survive with their original value (removed or emptied).
IDENTIFYING = [
    "PatientBirthDate",
    "PatientAddress",
    "OtherPatientIDs",
    "OtherPatientNames",
    "InstitutionName",
    "InstitutionAddress",
    "ReferringPhysicianName",
    "AccessionNumber",
    "StudyID",
    "DeviceSerialNumber",
    "OperatorsName",
    "PerformingPhysicianName",
    "StationName",
    "StudyDescription",
    "SeriesDescription",
    "ProtocolName",
    "PatientAge",
    "PatientWeight",
    "ImageComments",
]
UIDS = [
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SOPInstanceUID",
    "FrameOfReferenceUID",
    "InstanceCreatorUID",
]


def _testfile(name: str) -> Path:
    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"pydicom test file {name} is not installed")
    return Path(str(path))


def _read(name: str) -> Dataset:
    return pydicom.dcmread(_testfile(name))


def _strings(ds: Dataset) -> list[str]:
    """Every value of every element, meta included, as text."""
    values = [str(e.value) for e in ds.iterall() if e.VR not in ("OB", "OW", "SQ", "UN")]
    values += [str(e.value) for e in ds.file_meta if e.VR not in ("OB",)]
    return values


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm", "rtplan.dcm"])
def test_no_identifying_attribute_survives(name: str) -> None:
    original = _read(name)
    out = deidentify(original, key=KEY, date_key=DATE_KEY)
    for keyword in IDENTIFYING:
        assert not out.get(keyword), f"{keyword} survived in {name}"
    assert not any(e.tag.is_private for e in out.iterall())
    assert out.PatientIdentityRemoved == "YES"
    assert [c.CodeValue for c in out.DeidentificationMethodCodeSequence] == ["113100", "113107"]
    assert out.PatientID == pseudonymize(str(original.PatientID), key=KEY)
    assert out.PatientName == out.PatientID

    secrets = [str(original.PatientName), str(original.PatientID)]
    secrets += [str(original[k].value) for k in UIDS if k in original]
    secrets += [str(e.value) for e in original.iterall() if e.VR == "UI" and "5962" in str(e.value)]
    if original.get("InstitutionName") and original.InstitutionName not in original.Manufacturer:
        secrets.append(str(original.InstitutionName))
    for text in _strings(out):
        for secret in secrets:
            assert secret not in text, f"{secret!r} leaked into {text!r}"


def test_input_is_not_modified() -> None:
    original = _read("CT_small.dcm")
    before = dicom_to_bytes(pydicom.dcmread(_testfile("CT_small.dcm")))
    deidentify(original, key=KEY, date_key=DATE_KEY)
    assert dicom_to_bytes(original) == before
    assert original.PatientName == "CompressedSamples^CT1"


def test_private_tags_and_pixels() -> None:
    original = _read("CT_small.dcm")
    assert sum(e.tag.is_private for e in original.iterall()) > 0
    out = deidentify(original, key=KEY, date_key=DATE_KEY)
    assert sum(e.tag.is_private for e in out.iterall()) == 0
    assert out.PixelData == original.PixelData  # byte-identical
    assert (out.pixel_array == original.pixel_array).all()
    assert out.SOPClassUID == original.SOPClassUID  # classes are kept


def test_uids_replaced_consistently() -> None:
    ct, mr = _read("MR_small.dcm"), _read("MR_small_RLE.dcm")  # same study, same patient
    a, b = deidentify(ct, key=KEY, date_key=DATE_KEY), deidentify(mr, key=KEY, date_key=DATE_KEY)
    for keyword in UIDS:
        assert a[keyword].value != ct[keyword].value
        assert a[keyword].value.startswith("2.25.") and len(a[keyword].value) <= 64
        assert a[keyword].value == deidentify_uid(ct[keyword].value, key=KEY)
    assert a.StudyInstanceUID == b.StudyInstanceUID
    assert a.file_meta.MediaStorageSOPInstanceUID == a.SOPInstanceUID
    assert deidentify_uid("1.2.3", key=KEY) != deidentify_uid("1.2.3", key=b"other")


def test_uids_inside_sequences_are_replaced() -> None:
    plan = _read("rtplan.dcm")
    refs = [e.value for e in plan.iterall() if e.keyword == "ReferencedSOPInstanceUID"]
    assert refs
    out = deidentify(plan, key=KEY, date_key=DATE_KEY)
    new = [e.value for e in out.iterall() if e.keyword == "ReferencedSOPInstanceUID"]
    assert new == [deidentify_uid(r, key=KEY) for r in refs]
    classes = [e.value for e in out.iterall() if e.keyword == "ReferencedSOPClassUID"]
    assert classes == [e.value for e in plan.iterall() if e.keyword == "ReferencedSOPClassUID"]


def test_pseudonyms() -> None:
    p = pseudonymize("1CT1", key=KEY)
    assert p == pseudonymize(" 1CT1 ", key=KEY) and len(p) == 17 and p.startswith("P")
    assert p != pseudonymize("1CT1", key=b"another-key")
    assert p != pseudonymize("1CT2", key=KEY)
    assert pseudonymize("1CT1", key=KEY, prefix="S-").startswith("S-")
    with pytest.raises(InvalidInputError):
        pseudonymize("x", key=b"")
    with pytest.raises(InvalidInputError):
        pseudonymize("   ", key=KEY)


def test_files_same_patient_same_pseudonym(tmp_path: Path) -> None:
    first = deidentify_file(
        _testfile("MR_small.dcm"), tmp_path / "a.dcm", key=KEY, date_key=DATE_KEY
    )
    second = deidentify_file(
        _testfile("MR_small_RLE.dcm"), tmp_path / "b.dcm", key=KEY, date_key=DATE_KEY
    )
    other = deidentify_file(
        _testfile("CT_small.dcm"), tmp_path / "c.dcm", key=KEY, date_key=DATE_KEY
    )
    again = deidentify_file(
        _testfile("MR_small.dcm"), tmp_path / "d.dcm", key=KEY, date_key=DATE_KEY
    )
    rekeyed = deidentify_file(
        _testfile("MR_small.dcm"), tmp_path / "e.dcm", key=b"k2", date_key=DATE_KEY
    )
    assert first == second == again == pseudonymize("4MR1", key=KEY)
    assert other != first and rekeyed != first
    written = pydicom.dcmread(tmp_path / "a.dcm")  # still a valid DICOM file
    assert written.PatientID == first and written.preamble == b"\x00" * 128
    original = _read("MR_small.dcm")
    assert written.PixelData == original.PixelData
    assert (tmp_path / "a.dcm").read_bytes() == (tmp_path / "d.dcm").read_bytes()


def test_file_without_preamble(tmp_path: Path) -> None:
    pseudonym = deidentify_file(
        _testfile("rtstruct.dcm"), tmp_path / "s.dcm", key=KEY, date_key=DATE_KEY
    )
    out = pydicom.dcmread(tmp_path / "s.dcm")
    assert out.PatientID == pseudonym and out.file_meta.TransferSyntaxUID


def test_not_dicom(tmp_path: Path) -> None:
    bad = tmp_path / "fake.dcm"
    bad.write_bytes(b"hello, I am a text file" * 10)
    with pytest.raises(IngestError, match=r"fake\.dcm"):
        deidentify_file(bad, tmp_path / "out.dcm", key=KEY, date_key=DATE_KEY)
    with pytest.raises(IngestError, match="not found"):
        deidentify_file(tmp_path / "missing.dcm", tmp_path / "out.dcm", key=KEY, date_key=DATE_KEY)
    assert not (tmp_path / "out.dcm").exists()


def test_synthetic_dataset_covers_sequences_names_and_overlays() -> None:
    ds = Dataset()
    ds.PatientID = "MRN-778899"
    ds.PatientName = "Doe^Jane"
    ds.PatientBirthDate = "19700101"
    ds.OtherPatientIDs = "SSN-123"
    ds.SOPInstanceUID = "1.2.826.0.1.99.1"
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.BurnedInAnnotation = "NO"
    item = Dataset()
    item.ReferencedSOPInstanceUID = "1.2.826.0.1.99.2"
    item.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    item.EvaluatorName = "Smith^Dr"  # a PN outside the table: emptied by the safety net
    ds.ReferencedImageSequence = [item]
    ds.add_new(0x60003000, "OB", b"\x01\x02")  # overlay data
    ds.add_new(0x00091010, "LO", "secret private")
    ds.add_new(0x00090010, "LO", "ACME")
    out = deidentify(ds, key=KEY, date_key=DATE_KEY)
    text = " ".join(_strings_no_meta(out))
    for secret in ("MRN-778899", "Doe", "19700101", "SSN-123", "Smith", "1.2.826.0.1.99", "ACME"):
        assert secret not in text
    assert 0x60003000 not in out
    ref = out.ReferencedImageSequence[0]
    assert ref.ReferencedSOPInstanceUID == deidentify_uid("1.2.826.0.1.99.2", key=KEY)
    assert ref.ReferencedSOPClassUID == "1.2.840.10008.5.1.4.1.1.7"
    assert pydicom.dcmread(io.BytesIO(dicom_to_bytes(out))).PatientID == out.PatientID


def _strings_no_meta(ds: Dataset) -> list[str]:
    return [str(e.value) for e in ds.iterall() if e.VR not in ("OB", "OW", "SQ")]


def test_profile_table_is_known_to_pydicom() -> None:
    assert len(BASIC_PROFILE) > 300
    assert {BASIC_PROFILE[k] for k in ("PatientName", "StudyDate", "AccessionNumber")} == {"Z"}
    assert BASIC_PROFILE["PatientAddress"] == "X" and BASIC_PROFILE["StudyInstanceUID"] == "U"
    assert all(tag_for_keyword(k) is not None for k in BASIC_PROFILE)


def test_text_in_reports_annotations_and_newer_rows_of_the_table_is_removed() -> None:
    """Places an earlier hand-copied table missed: structured-report text, text drawn as
    annotations, dates in another calendar, device labels, who edited the image, issuers,
    and free text in attributes the table does not list."""
    ds = _read("CT_small.dcm")
    item = Dataset()
    item.TextValue = "SECRET report: Patient John Doe, DOB 1925-01-01"
    ds.ContentSequence = [item]
    text = Dataset()
    text.UnformattedTextValue = "SECRET Jane Roe"
    layer = Dataset()
    layer.TextObjectSequence = [text]
    ds.GraphicAnnotationSequence = [layer]
    ds.PatientBirthDateInAlternativeCalendar = "SECRET 1344-05-12"
    ds.PatientDeathDateInAlternativeCalendar = "SECRET 1444-01-01"
    ds.DeviceLabel = "SECRET ward 3 bed Roe"
    ds.ModifiedImageDescription = "SECRET modified"
    editor = Dataset()
    editor.Manufacturer = "ACME"
    editor.ContributionDescription = "SECRET edited by Dr Roe"
    ds.ContributingEquipmentSequence = [editor]
    issuer = Dataset()
    issuer.LocalNamespaceEntityID = "SECRET General Hospital"
    ds.IssuerOfAccessionNumberSequence = [issuer]
    code = Dataset()
    code.CodeValue = "SECRET-4711"
    person = Dataset()
    person.PersonIdentificationCodeSequence = [code]
    ds.ParticipantSequence = [person]
    ds.InterventionDescription = "SECRET given by Dr Roe"  # free text no row of the table names
    out = deidentify(ds, key=KEY, date_key=DATE_KEY)
    assert not [e for e in out.iterall() if "SECRET" in str(e.value)]
    assert out.ContributingEquipmentSequence[0].Manufacturer == "ACME"  # technical: kept
    assert out.ContentSequence == [] and out.GraphicAnnotationSequence == []


def _dates(ds: Dataset) -> list[tuple[str, str, str]]:
    """Every date, date-time and time of `ds` (sequences too): (keyword, VR, value)."""
    return [(e.keyword, e.VR, str(e.value)) for e in ds.iterall() if e.VR in TEMPORAL and e.value]


TEMPORAL = ("DA", "DT", "TM")


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm", "rtplan.dcm"])
def test_dates_move_by_the_patients_date_shift_and_times_of_day_stay(name: str) -> None:
    """The Retain Longitudinal Temporal Information with Modified Dates Option: every date
    moves by the patient's keyed offset (whole weeks), so the times of day are kept."""
    original = _read(name)
    out = deidentify(original, key=KEY, date_key=DATE_KEY)
    offset = date_offset(str(original.PatientID), key=DATE_KEY)
    expected = [
        (k, vr, v if vr == "TM" else shift_dicom_time(v, offset, vr=vr))
        for k, vr, v in _dates(original)
    ]
    assert _dates(out) == expected and "StudyDate" in {k for k, _, _ in expected}
    assert out.StudyDate != original.StudyDate
    assert out.LongitudinalTemporalInformationModified == "MODIFIED"


def test_intervals_between_a_patients_studies_survive_and_birth_and_age_do_not() -> None:
    first, second, other = _read("CT_small.dcm"), _read("CT_small.dcm"), _read("CT_small.dcm")
    first.StudyDate, second.StudyDate, other.StudyDate = "20200110", "20200324", "20200110"
    second.SeriesDate = "20200324"
    other.PatientID = "another patient"
    for ds in (first, second, other):
        ds.PatientBirthDate, ds.PatientBirthTime, ds.PatientAge = "19250101", "0830", "095Y"
        ds.AcquisitionDateTime = "20200110083000.25+0100"
    a, b, c = (deidentify(ds, key=KEY, date_key=DATE_KEY) for ds in (first, second, other))
    interval = _day(b.StudyDate) - _day(a.StudyDate)
    assert interval == _day("20200324") - _day("20200110")  # 74 days, as before
    assert a.StudyDate != first.StudyDate and a.StudyDate != c.StudyDate  # another shift
    assert a.AcquisitionDateTime.endswith("083000.25+0100")  # time of day and zone kept
    assert _day(a.AcquisitionDateTime[:8]) == _day(a.StudyDate)
    for ds in (a, b, c):  # the patient's own dates are not dates of care: not kept
        assert not ds.get("PatientBirthDate") and "PatientBirthTime" not in ds
        assert "PatientAge" not in ds  # removed, so no age over 89 is kept
    assert shift_dicom_time("20200110", date_offset("1CT1", key=DATE_KEY), vr="DA") == (a.StudyDate)


def _day(value: str) -> datetime.date:
    return datetime.date(int(value[:4]), int(value[4:6]), int(value[6:8]))


def test_dates_in_sequences_are_shifted_and_one_that_is_no_date_is_emptied() -> None:
    ds = _read("CT_small.dcm")
    step = Dataset()
    step.ScheduledProcedureStepStartDate = "20200110"
    step.ScheduledProcedureStepStartTime = "0930"
    ds.ScheduledProcedureStepSequence = [step]
    editor = Dataset()
    editor.ContributionDateTime = "20200110"
    ds.ContributingEquipmentSequence = [editor]
    with pytest.warns(UserWarning, match="Invalid value for VR DA"):
        ds.SeriesDate = "10.01.2020"  # not a DICOM date: not kept as it is
    ds.CalibrationDate = ["20200101", "20200201"]
    with pytest.warns(UserWarning, match="Invalid value for VR TM"):
        ds.ContentTime = "SECRET Roe"  # no time of day: not kept either
    out = deidentify(ds, key=KEY, date_key=DATE_KEY)
    offset = date_offset("1CT1", key=DATE_KEY)
    moved = shift_dicom_time("20200110", offset, vr="DA")
    assert out.ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartDate == moved
    assert out.ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartTime == "0930"
    assert out.ContributingEquipmentSequence[0].ContributionDateTime == moved
    assert not out.get("SeriesDate") and not out.get("ContentTime")
    assert out.StudyTime == "072730"
    assert list(out.CalibrationDate) == [
        shift_dicom_time(d, offset, vr="DA") for d in ("20200101", "20200201")
    ]
