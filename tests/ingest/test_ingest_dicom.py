"""DICOM folders: de-identified on read, rendered to uint8 images, labelled by CSV."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

from medloop.exceptions import IngestError, InvalidInputError
from medloop.ingest import (
    SkippedFile,
    dicom_image,
    group_skipped,
    pseudonymize,
    read_dicom_folder,
    scan_dicom_folder,
)
from medloop.ingest.dicom import DUPLICATE, MULTI_FRAME, NOT_AN_IMAGE, NOT_DICOM

KEY = b"dicom-test-key"
DATE_KEY = b"a-date-shift-key-of-32-characters!"


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
    classes, records = read_dicom_folder(folder, key=KEY, date_key=DATE_KEY)
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
    read_dicom_folder(
        folder, key=KEY, date_key=DATE_KEY, progress=lambda done, total: calls.append((done, total))
    )
    assert calls == [(0, 3), (1, 3), (2, 3), (3, 3)]  # readme.txt is not an image


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
    classes, records = read_dicom_folder(
        folder, key=KEY, date_key=DATE_KEY, classes=["normal", "abnormal"]
    )
    assert classes == ["normal", "abnormal"] and all(r.label is None for r in records)


def test_a_second_file_of_the_same_instance_is_skipped_and_listed(folder: Path) -> None:
    _copy("MR_small_RLE.dcm", folder, "zz_again.dcm")  # same SOP instance as MR_small
    scanned = scan_dicom_folder(folder, key=KEY, date_key=DATE_KEY)
    assert [f.source for f in scanned.files] == ["ct.dcm", "mr", "sub/rgb.DCM"]
    assert SkippedFile("zz_again.dcm", DUPLICATE, "same SOP instance as 'mr'") in scanned.skipped
    (folder / "labels.csv").write_text("file,label\nmr,a\nzz_again.dcm,b\n")
    with pytest.raises(IngestError, match=r"zz_again\.dcm: duplicate item.*labelled otherwise"):
        scan_dicom_folder(folder, key=KEY, date_key=DATE_KEY)


def test_objects_without_pixels_and_multiframe_images_are_skipped_and_listed(
    folder: Path,
) -> None:
    """A study export holds presentation states, key objects and reports beside the
    images, and now and then a multi-frame image: set aside by the header pass, listed,
    and the rest imported."""
    _copy("rtplan.dcm", folder, "plan.dcm")
    for name, sop_class in (("PR0001", "1.2.840.10008.5.1.4.1.1.11.1"), ("KO0001", KO)):
        _object_without_pixels(folder / name, sop_class)
    _copy("examples_ybr_color.dcm", folder, "cine.dcm")
    scanned = scan_dicom_folder(folder, key=KEY, date_key=DATE_KEY, pixels_checked=True)
    assert len(scanned.files) == 3
    assert group_skipped(scanned.skipped) == {
        NOT_AN_IMAGE: ["KO0001", "PR0001", "plan.dcm"],
        MULTI_FRAME: ["cine.dcm"],
        NOT_DICOM: ["readme.txt"],
    }
    details = {f.source: f.detail for f in scanned.skipped}
    assert details["PR0001"] == (
        "not an image (Grayscale Softcopy Presentation State Storage: no pixel data)"
    )
    assert details["cine.dcm"].startswith("multi-frame (30 frames")
    (folder / "labels.csv").write_text("file,label\nct.dcm,a\nplan.dcm,b\n")
    with pytest.raises(IngestError, match=r"'plan\.dcm' listed but not an image"):
        scan_dicom_folder(folder, key=KEY, date_key=DATE_KEY, pixels_checked=True)


KO = "1.2.840.10008.5.1.4.1.1.88.59"  # Key Object Selection Document


def _object_without_pixels(path: Path, sop_class: str) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
    ds.PatientID, ds.Modality = "KH-1", "PR"
    ds.save_as(path, enforce_file_format=True)


def test_files_without_preamble_or_suffix_are_read_and_others_listed(tmp_path: Path) -> None:
    """Older PACS and CD exports write IM0001 with no preamble and no file meta; a file
    that is not DICOM at all is counted, not silently passed over."""
    root = tmp_path / "export"
    _copy("CT_small.dcm", root, "a.dcm")
    bare = pydicom.dcmread(_testfile("MR_small.dcm"))
    bare.preamble, bare.file_meta = None, FileMetaDataset()
    bare.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    pydicom.dcmwrite(root / "IM0001", bare, enforce_file_format=False, implicit_vr=True)
    assert (root / "IM0001").read_bytes()[128:132] != b"DICM"
    no_class = pydicom.dcmread(_testfile("CT_small.dcm"))
    no_class.SOPInstanceUID = generate_uid()
    (root / "VERSION").write_bytes(b"1.2\n")
    (root / "viewer.exe").write_bytes(bytes(range(256)) * 8)
    scanned = scan_dicom_folder(root, key=KEY, date_key=DATE_KEY)
    assert [f.source for f in scanned.files] == ["IM0001", "a.dcm"]
    assert group_skipped(scanned.skipped) == {NOT_DICOM: ["VERSION", "viewer.exe"]}
    assert [r.image.shape for r in scanned.records()] == [(64, 64), (128, 128)]
    # pixel data without a SOP class: read by the header pass as on reading it, and
    # refused there (it could not be stored as a DICOM file), not passed over
    del no_class.SOPClassUID
    no_class.preamble, no_class.file_meta = None, bare.file_meta
    pydicom.dcmwrite(root / "IM0002", no_class, enforce_file_format=False, implicit_vr=True)
    with pytest.raises(IngestError, match=r"IM0002: pixel data but no SOP Class UID"):
        scan_dicom_folder(root, key=KEY, date_key=DATE_KEY)


def test_air_slices_and_offset_images_are_different_images(tmp_path: Path) -> None:
    """Duplicates are told by the stored pixel values, not by the 8-bit rendering: CT
    slices above the body are all air under a soft-tissue window (all black), and two
    images differing by a constant render the same by min-max scaling."""
    root = tmp_path / "series"
    rng = np.random.default_rng(0)
    air = [rng.integers(0, 30, (8, 8), dtype=np.uint16) for _ in range(2)]
    ramp = np.tile(np.arange(0, 4000, 500, dtype=np.uint16), (8, 1))
    for name, pixels, window in (
        ("IM0007", air[0], True),
        ("IM0008", air[1], True),
        ("CR0001", ramp, False),
        ("CR0002", ramp + 1, False),
        ("CR0003", ramp + 1, False),  # the same image stored again under a new UID
    ):
        _write_ct(root / name, pixels, window=window)
    scanned = scan_dicom_folder(root, key=KEY, date_key=DATE_KEY)
    records = list(scanned.records())
    assert records[3].image.max() == 0 == records[4].image.max()  # both all black
    np.testing.assert_array_equal(records[0].image, records[1].image)
    assert [r.duplicate_of for r in records] == [None, None, "CR0002", None, None]
    _, read = read_dicom_folder(root, key=KEY, date_key=DATE_KEY)
    assert [r.source for r in read] == ["CR0001", "CR0002", "IM0007", "IM0008"]
    again = list(scanned.records(scanned.files[2:], stored=scanned.files[:2]))
    assert [r.duplicate_of for r in again] == ["CR0002", None, None]  # a run resumed


def _write_ct(path: Path, pixels: np.ndarray, *, window: bool) -> None:
    ds = pydicom.dcmread(_testfile("CT_small.dcm"))
    ds.Rows, ds.Columns = pixels.shape
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    if window:
        ds.WindowCenter, ds.WindowWidth = 40, 400
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path)


def test_corrupt_dicom(folder: Path) -> None:
    (folder / "junk.dcm").write_bytes(b"\x00" * 50)
    with pytest.raises(IngestError, match=r"junk\.dcm"):
        read_dicom_folder(folder, key=KEY, date_key=DATE_KEY)


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
        read_dicom_folder(folder, key=KEY, date_key=DATE_KEY)


def test_empty_and_bad_key(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(IngestError, match="no DICOM images found"):
        read_dicom_folder(tmp_path, key=KEY, date_key=DATE_KEY)
    with pytest.raises(InvalidInputError, match="key"):
        read_dicom_folder(tmp_path, key=b"", date_key=DATE_KEY)


def test_the_store_keeps_a_deidentified_reference_not_the_file_name(tmp_path: Path) -> None:
    """A file name may name the patient: what the store keeps is the de-identified
    SOPInstanceUID, the same on every read with the same key."""
    root = tmp_path / "dicoms"
    _copy("CT_small.dcm", root, "Smith_John_MRN001_19600101.dcm")
    (record,) = read_dicom_folder(root, key=KEY, date_key=DATE_KEY)[1]
    assert record.source == "Smith_John_MRN001_19600101.dcm"  # for messages while reading
    written = pydicom.dcmread(io.BytesIO(record.dicom_bytes))
    assert record.reference == f"dicom:{written.SOPInstanceUID}"
    assert "Smith" not in record.reference and "MRN001" not in record.reference
    original = pydicom.dcmread(_testfile("CT_small.dcm"))
    assert str(original.SOPInstanceUID) not in record.reference
    assert read_dicom_folder(root, key=KEY, date_key=DATE_KEY)[1][0].reference == record.reference


def test_burned_in_annotations_never_reach_lay_annotators(folder: Path) -> None:
    dataset = pydicom.dcmread(folder / "ct.dcm")
    dataset.BurnedInAnnotation = "YES"
    dataset.save_as(folder / "ct.dcm")
    with pytest.raises(IngestError, match=r"ct\.dcm: BurnedInAnnotation is YES"):
        read_dicom_folder(
            folder, key=KEY, date_key=DATE_KEY, pixels_checked=True
        )  # stated: no one overrides it


def test_images_that_often_show_names_need_a_person_to_check_them(folder: Path) -> None:
    rgb = folder / "sub" / "rgb.DCM"
    dataset = pydicom.dcmread(rgb)
    del dataset.BurnedInAnnotation  # a secondary capture that does not say
    dataset.save_as(rgb)
    with pytest.raises(IngestError, match=r"rgb\.DCM: BurnedInAnnotation is not stated"):
        read_dicom_folder(folder, key=KEY, date_key=DATE_KEY)
    assert len(read_dicom_folder(folder, key=KEY, date_key=DATE_KEY, pixels_checked=True)[1]) == 3
    dataset.BurnedInAnnotation = "NO"
    dataset.RecognizableVisualFeatures = "YES"  # a face: never for lay annotators
    dataset.save_as(rgb)
    with pytest.raises(IngestError, match="RecognizableVisualFeatures is YES"):
        read_dicom_folder(folder, key=KEY, date_key=DATE_KEY, pixels_checked=True)
    del dataset.BurnedInAnnotation, dataset.RecognizableVisualFeatures
    dataset.SOPClassUID = "1.2.840.10008.5.1.4.1.1.77.1.5.1"  # ophthalmic photography
    dataset.save_as(rgb)
    with pytest.raises(IngestError, match=r"visible-light photograph.*--pixels-checked"):
        read_dicom_folder(folder, key=KEY, date_key=DATE_KEY)
