"""Synthetic DICOM folders for tests: small, distinct, made from pydicom's own test file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid


def write_dicoms(folder: Path, count: int, *, seed: int = 0) -> None:
    """`count` small CT images (pydicom's CT_small with new pixels), 2 per patient."""
    template = pydicom.dcmread(str(get_testdata_file("CT_small.dcm", download=False)))
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        ds = template.copy()
        ds.Rows, ds.Columns = 8, 8
        ds.PixelData = rng.integers(0, 4096, (8, 8), dtype=np.uint16).tobytes()
        ds.PatientID = f"P{i // 2}"
        ds.SOPInstanceUID = generate_uid(entropy_srcs=[str(seed), str(i)])
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.save_as(folder / f"{i:02d}.dcm")
    (folder / "labels.csv").write_text(
        "file,label\n" + "".join(f"{i:02d}.dcm,{'ab'[i % 2]}\n" for i in range(count))
    )
