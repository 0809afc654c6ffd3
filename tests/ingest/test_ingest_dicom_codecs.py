"""Compressed DICOM as hospitals store it: JPEG Lossless (Process 14, .57 and .70) and
JPEG-LS (.80, .81) decode with the plugins the project depends on (pylibjpeg with
pylibjpeg-libjpeg, pyjpegls); without them a test says which is missing."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate
from pydicom.pixels import get_decoder, get_encoder
from pydicom.uid import (
    UID,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    generate_uid,
)

from medloop.ingest import read_dicom_folder

KEY = b"dicom-codec-key"
DATE_KEY = b"a-date-shift-key-of-32-characters!"


def _need_decoder(syntax: UID) -> None:
    if not get_decoder(syntax).is_available:
        pytest.skip(f"no decoder for {syntax.name}: install pylibjpeg, pylibjpeg-libjpeg, pyjpegls")


def _jpeg_lossless(pixels: np.ndarray, precision: int) -> bytes:
    """A JPEG Lossless (ITU T.81 Process 14, predictor 1, one component) codestream: a
    fixture no installed library encodes. Every difference category 0..16 has a 5-bit
    Huffman code equal to itself, so the codestream is easy to check by eye."""
    rows, cols = pixels.shape
    values = pixels.astype(np.int64)
    predicted = np.empty_like(values)
    predicted[0, 0] = 1 << (precision - 1)
    predicted[0, 1:] = values[0, :-1]  # first line: the sample to the left
    predicted[1:, 0] = values[:-1, 0]  # first column: the sample above
    predicted[1:, 1:] = values[1:, :-1]  # predictor 1: the sample to the left
    bits: list[str] = []
    for diff in ((values - predicted + 32768) % 65536 - 32768).ravel():
        category = int(abs(diff)).bit_length()
        bits.append(format(category, "05b"))
        if 0 < category < 16:
            extra = diff if diff > 0 else diff + (1 << category) - 1
            bits.append(format(int(extra), f"0{category}b"))
    stream = "".join(bits)
    stream += "1" * (-len(stream) % 8)
    scan = bytearray()
    for i in range(0, len(stream), 8):
        scan.append(int(stream[i : i + 8], 2))
        if scan[-1] == 0xFF:
            scan.append(0)  # byte stuffing
    counts = [0] * 4 + [17] + [0] * 11  # 17 codes of 5 bits

    def segment(marker: int, body: bytes) -> bytes:
        return bytes([0xFF, marker]) + (len(body) + 2).to_bytes(2, "big") + body

    frame = (
        bytes([precision]) + rows.to_bytes(2, "big") + cols.to_bytes(2, "big") + b"\x01\x01\x11\x00"
    )
    return (
        b"\xff\xd8"
        + segment(0xC3, frame)
        + segment(0xC4, b"\x00" + bytes(counts) + bytes(range(17)))
        + segment(0xDA, b"\x01\x01\x00\x01\x00\x00")  # predictor 1, no point transform
        + bytes(scan)
        + b"\xff\xd9"
    )


def _ct(pixels: np.ndarray) -> pydicom.Dataset:
    ds = pydicom.dcmread(str(get_testdata_file("CT_small.dcm", download=False)))
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsStored, ds.HighBit = 12, 11
    ds.PixelRepresentation = 0
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return ds


@pytest.fixture
def pixels() -> np.ndarray:
    rng = np.random.default_rng(5)
    ramp = np.tile(np.linspace(0, 4000, 24), (20, 1))
    return (ramp + rng.integers(0, 50, (20, 24))).astype(np.uint16)


@pytest.mark.parametrize("syntax", [JPEGLosslessSV1, JPEGLossless])
def test_jpeg_lossless(tmp_path: Path, pixels: np.ndarray, syntax: UID) -> None:
    _need_decoder(syntax)
    ds = _ct(pixels)
    ds.PixelData = encapsulate([_jpeg_lossless(pixels, precision=12)])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = syntax
    ds.save_as(tmp_path / "IM0001", enforce_file_format=True)
    _, (record,) = read_dicom_folder(tmp_path, key=KEY, date_key=DATE_KEY)
    written = pydicom.dcmread(pydicom.filebase.DicomBytesIO(record.dicom_bytes))
    np.testing.assert_array_equal(written.pixel_array, pixels)
    assert record.image.shape == pixels.shape


@pytest.mark.parametrize("syntax", [JPEGLSLossless, JPEGLSNearLossless])
def test_jpeg_ls(tmp_path: Path, pixels: np.ndarray, syntax: UID) -> None:
    _need_decoder(syntax)
    if syntax == JPEGLSLossless:
        if not get_encoder(syntax).is_available:
            pytest.skip("no JPEG-LS encoder to write the fixture: install pyjpegls")
        ds = _ct(pixels)
        ds.compress(syntax)
        ds.save_as(tmp_path / "IM0001", enforce_file_format=True)
        expected = pixels
    else:  # pydicom's own near-lossless file
        shutil.copyfile(str(get_testdata_file("JPEGLSNearLossless_16.dcm")), tmp_path / "a.dcm")
        expected = pydicom.dcmread(tmp_path / "a.dcm").pixel_array
    _, (record,) = read_dicom_folder(tmp_path, key=KEY, date_key=DATE_KEY, pixels_checked=True)
    written = pydicom.dcmread(pydicom.filebase.DicomBytesIO(record.dicom_bytes))
    assert written.file_meta.TransferSyntaxUID == syntax
    np.testing.assert_array_equal(written.pixel_array, expected)
