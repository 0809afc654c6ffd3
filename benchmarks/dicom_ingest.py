"""Synthetic DICOM folders for measuring `medloop ingest dicom` (memory, time, resume).

`python benchmarks/dicom_ingest.py FOLDER --files 1000 --size 512` writes FOLDER/0000.dcm
... : pydicom's CT_small.dcm with SIZE x SIZE random 16-bit pixels, a new SOP instance
per file and a patient per 4 files, then prints one JSON object (files, bytes). Measure
the ingest itself with `/usr/bin/time -v medloop ingest dicom FOLDER -p NAME --classes a,b`
(its "Maximum resident set size" is the peak RSS).
"""

import argparse
import json
from pathlib import Path

import numpy as np
import pydicom
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("folder", type=Path)
parser.add_argument("--files", type=int, default=1000)
parser.add_argument("--size", type=int, default=512, help="rows and columns of each image")
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()

template = pydicom.dcmread(str(get_testdata_file("CT_small.dcm", download=False)))
rng = np.random.default_rng(args.seed)
args.folder.mkdir(parents=True, exist_ok=True)
written = 0
for i in range(args.files):
    ds = template.copy()
    pixels = rng.integers(0, 4096, (args.size, args.size), dtype=np.uint16)
    ds.Rows, ds.Columns = args.size, args.size
    ds.PixelData = pixels.tobytes()
    ds.PatientID = f"SYN{i // 4:06d}"
    ds.SOPInstanceUID = generate_uid(entropy_srcs=[str(args.seed), str(i)])
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    path = args.folder / f"{i:05d}.dcm"
    ds.save_as(path)
    written += path.stat().st_size
print(json.dumps({"files": args.files, "size": args.size, "bytes": written}))
