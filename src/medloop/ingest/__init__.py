"""Readers that turn files into arrays and records; no database, no store.

- `load_medmnist`: MedMNIST 2D ``.npz`` sets (local first, else official download).
- `scan_image_folder` / `read_image_folder`: PNG/JPEG folders with a
  ``file,label[,patient_id]`` CSV, checked whole, then read one image at a time / at once.
- `scan_dicom_folder` / `read_dicom_folder`: DICOM folders, checked by their headers, then
  de-identified on read (`deidentify`) one file at a time / at once.
- `stratified_group_split`: train/val/test by label, never splitting a patient.
- `encode_png` / `decode_png`: the lossless image blob format.
"""

from medloop.ingest.deid import (
    BASIC_PROFILE,
    deidentify,
    deidentify_file,
    deidentify_uid,
    dicom_to_bytes,
    identifying_pixels,
    pseudonymize,
    read_dicom,
)
from medloop.ingest.dicom import (
    DicomFile,
    DicomFolder,
    DicomRecord,
    SkippedFile,
    dicom_image,
    group_skipped,
    read_dicom_folder,
    scan_dicom_folder,
)
from medloop.ingest.image_folder import (
    ImageFile,
    ImageFolder,
    ImageFolderDataset,
    ImageRecord,
    LabelRow,
    read_image_folder,
    read_labels_csv,
    scan_image_folder,
)
from medloop.ingest.images import decode_png, encode_png, load_image_file
from medloop.ingest.medmnist import (
    MEDMNIST_2D,
    MedMNISTDataset,
    MedMNISTInfo,
    MedMNISTSplit,
    default_data_dir,
    load_medmnist,
)
from medloop.ingest.splits import stratified_group_split

__all__ = [
    "BASIC_PROFILE",
    "MEDMNIST_2D",
    "DicomFile",
    "DicomFolder",
    "DicomRecord",
    "ImageFile",
    "ImageFolder",
    "ImageFolderDataset",
    "ImageRecord",
    "LabelRow",
    "MedMNISTDataset",
    "MedMNISTInfo",
    "MedMNISTSplit",
    "SkippedFile",
    "decode_png",
    "default_data_dir",
    "deidentify",
    "deidentify_file",
    "deidentify_uid",
    "dicom_image",
    "dicom_to_bytes",
    "encode_png",
    "group_skipped",
    "identifying_pixels",
    "load_image_file",
    "load_medmnist",
    "pseudonymize",
    "read_dicom",
    "read_dicom_folder",
    "read_image_folder",
    "read_labels_csv",
    "scan_dicom_folder",
    "scan_image_folder",
    "stratified_group_split",
]
