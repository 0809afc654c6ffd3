"""DICOM folders: de-identified on read, rendered to uint8 images, labelled by CSV."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from medloop.exceptions import IngestError, InvalidInputError
from medloop.ingest import dicom_image, pseudonymize, read_dicom_folder

KEY = b"dicom-test-key"


def _testfile(name: str) -> Path:
    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"pydicom test file {name} is not installed")
    return Path(str(path))


def _copy(name: str, folder: Path, target: str) -> Path:
    dst = folder / target
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_testfile(name), dst)
    return dst


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "dicoms"
    _copy("CT_small.dcm", root, "ct.dcm")
    _copy("MR_small.dcm", root, "mr")  # no extension: found by its DICM magic
    rgb = _copy("SC_rgb_small_odd.dcm", root, "sub/rgb.DCM")
    checked = pydicom.dcmread(rgb)  # a secondary capture: refused until it says its pixels
    checked.BurnedInAnnotation = "NO"  # carry no text
    checked.save_as(rgb)
    (root / "readme.txt").write_text("not an image")
    return root


def _expected_window(values: np.ndarray, center: float, width: float) -> np.ndarray:
    scaled = (values - (center - 0.5)) / (width - 1) + 0.5
    return np.rint(np.clip(scaled, 0, 1) * 255).astype(np.uint8)


def test_reads_deidentified_records(folder: Path) -> None:
    (folder / "labels.csv").write_text("file,label,patient_id\nct.dcm,abnormal,x\nmr,normal,y\n")
    classes, records = read_dicom_folder(folder, key=KEY)
    assert classes == ["abnormal", "normal"]
    assert [r.source for r in records] == ["ct.dcm", "mr", "sub/rgb.DCM"]
    ct, mr, rgb = records
    assert (ct.label, mr.label, rgb.label) == (0, 1, None)
    assert ct.patient_pseudonym == pseudonymize("1CT1", key=KEY)
    assert mr.patient_pseudonym == pseudonymize("4MR1", key=KEY)
    for record in records:
        assert record.image.dtype == np.uint8 and record.image.ndim == 2
        for secret in (b"CompressedSamples", b"1CT1", b"4MR1", b"JFK IMAGING", b"5962"):
            assert secret not in record.dicom_bytes
        written = pydicom.dcmread(io.BytesIO(record.dicom_bytes))
        assert written.PatientID == record.patient_pseudonym
        assert written.PatientIdentityRemoved == "YES"
    assert ct.image.shape == (128, 128) and rgb.image.shape == (3, 3)
    original = pydicom.dcmread(_testfile("CT_small.dcm"))
    assert pydicom.dcmread(io.BytesIO(ct.dicom_bytes)).PixelData == original.PixelData


def test_progress_counts_every_dicom_file(folder: Path) -> None:
    calls: list[tuple[int, int]] = []
    read_dicom_folder(folder, key=KEY, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(0, 3), (1, 3), (2, 3), (3, 3)]  # readme.txt is not a candidate


def test_images_follow_window_rescale_and_luma() -> None:
    mr = pydicom.dcmread(_testfile("MR_small.dcm"))  # window 600 / 1600, no rescale
    expected = _expected_window(mr.pixel_array.astype(float), 600.0, 1600.0)
    np.testing.assert_array_equal(dicom_image(mr), expected)

    ct = pydicom.dcmread(_testfile("CT_small.dcm"))  # rescale -1024, no window: min-max
    image = dicom_image(ct)
    assert image.min() == 0 and image.max() == 255
    ct.WindowCenter, ct.WindowWidth = 40, 400  # soft-tissue window in Hounsfield units
    hounsfield = ct.pixel_array.astype(float) * 1.0 - 1024.0
    np.testing.assert_array_equal(dicom_image(ct), _expected_window(hounsfield, 40, 400))
    ct.PhotometricInterpretation = "MONOCHROME1"
    np.testing.assert_array_equal(dicom_image(ct), 255 - _expected_window(hounsfield, 40, 400))

    rgb = pydicom.dcmread(_testfile("SC_rgb_small_odd.dcm"))
    luma = rgb.pixel_array.astype(float) @ np.array([0.299, 0.587, 0.114])
    np.testing.assert_array_equal(dicom_image(rgb), np.rint(luma).astype(np.uint8))


def test_classes_argument_and_no_csv(folder: Path) -> None:
    classes, records = read_dicom_folder(folder, key=KEY, classes=["normal", "abnormal"])
    assert classes == ["normal", "abnormal"] and all(r.label is None for r in records)


def test_duplicate_instance(folder: Path) -> None:
    _copy("MR_small_RLE.dcm", folder, "zz_again.dcm")  # same SOP instance as MR_small
    with pytest.raises(IngestError, match=r"zz_again\.dcm: duplicate item"):
        read_dicom_folder(folder, key=KEY)


def test_no_pixel_data(folder: Path) -> None:
    _copy("rtplan.dcm", folder, "plan.dcm")
    with pytest.raises(IngestError, match=r"plan\.dcm: no pixel data"):
        read_dicom_folder(folder, key=KEY)


def test_multiframe_rejected(folder: Path) -> None:
    _copy("examples_ybr_color.dcm", folder, "cine.dcm")
    with pytest.raises(IngestError, match=r"cine\.dcm: multi-frame"):
        read_dicom_folder(folder, key=KEY, pixels_checked=True)


def test_corrupt_dicom(folder: Path) -> None:
    (folder / "junk.dcm").write_bytes(b"\x00" * 50)
    with pytest.raises(IngestError, match=r"junk\.dcm"):
        read_dicom_folder(folder, key=KEY)


@pytest.mark.parametrize(
    ("csv", "match"),
    [
        ("file,label\nnope.dcm,a\n", "'nope.dcm' listed but not found"),
        ("file,label\nreadme.txt,a\n", "'readme.txt' listed but not a DICOM file"),
        ("file,label\nct.dcm,a\nct.dcm,b\n", "duplicate row"),
        ("file,label\n../ct.dcm,a\n", "leaves the folder"),
    ],
)
def test_csv_errors(folder: Path, csv: str, match: str) -> None:
    (folder / "labels.csv").write_text(csv)
    with pytest.raises(IngestError, match=match):
        read_dicom_folder(folder, key=KEY)


def test_empty_and_bad_key(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(IngestError, match="no DICOM images found"):
        read_dicom_folder(tmp_path, key=KEY)
    with pytest.raises(InvalidInputError, match="key"):
        read_dicom_folder(tmp_path, key=b"")


def test_the_store_keeps_a_deidentified_reference_not_the_file_name(tmp_path: Path) -> None:
    """A file name may name the patient: what the store keeps is the de-identified
    SOPInstanceUID, the same on every read with the same key."""
    root = tmp_path / "dicoms"
    _copy("CT_small.dcm", root, "Smith_John_MRN001_19600101.dcm")
    (record,) = read_dicom_folder(root, key=KEY)[1]
    assert record.source == "Smith_John_MRN001_19600101.dcm"  # for messages while reading
    written = pydicom.dcmread(io.BytesIO(record.dicom_bytes))
    assert record.reference == f"dicom:{written.SOPInstanceUID}"
    assert "Smith" not in record.reference and "MRN001" not in record.reference
    original = pydicom.dcmread(_testfile("CT_small.dcm"))
    assert str(original.SOPInstanceUID) not in record.reference
    assert read_dicom_folder(root, key=KEY)[1][0].reference == record.reference


def test_burned_in_annotations_never_reach_lay_annotators(folder: Path) -> None:
    dataset = pydicom.dcmread(folder / "ct.dcm")
    dataset.BurnedInAnnotation = "YES"
    dataset.save_as(folder / "ct.dcm")
    with pytest.raises(IngestError, match=r"ct\.dcm: BurnedInAnnotation is YES"):
        read_dicom_folder(folder, key=KEY, pixels_checked=True)  # stated: no one overrides it


def test_images_that_often_show_names_need_a_person_to_check_them(folder: Path) -> None:
    rgb = folder / "sub" / "rgb.DCM"
    dataset = pydicom.dcmread(rgb)
    del dataset.BurnedInAnnotation  # a secondary capture that does not say
    dataset.save_as(rgb)
    with pytest.raises(IngestError, match=r"rgb\.DCM: BurnedInAnnotation is not stated"):
        read_dicom_folder(folder, key=KEY)
    assert len(read_dicom_folder(folder, key=KEY, pixels_checked=True)[1]) == 3
    dataset.BurnedInAnnotation = "NO"
    dataset.RecognizableVisualFeatures = "YES"  # a face: never for lay annotators
    dataset.save_as(rgb)
    with pytest.raises(IngestError, match="RecognizableVisualFeatures is YES"):
        read_dicom_folder(folder, key=KEY, pixels_checked=True)
    del dataset.BurnedInAnnotation, dataset.RecognizableVisualFeatures
    dataset.SOPClassUID = "1.2.840.10008.5.1.4.1.1.77.1.5.1"  # ophthalmic photography
    dataset.save_as(rgb)
    with pytest.raises(IngestError, match=r"visible-light photograph.*--pixels-checked"):
        read_dicom_folder(folder, key=KEY)
