"""Readers that turn files into arrays and records; no database, no store.

- `load_medmnist`: MedMNIST 2D ``.npz`` sets (local first, else official download).
- `read_image_folder`: PNG/JPEG folders with a ``file,label[,patient_id]`` CSV.
- `read_dicom_folder`: DICOM folders, de-identified on read (`deidentify`).
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
from medloop.ingest.dicom import DicomRecord, dicom_image, read_dicom_folder
from medloop.ingest.image_folder import (
    ImageFolderDataset,
    ImageRecord,
    LabelRow,
    read_image_folder,
    read_labels_csv,
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
    "DicomRecord",
    "ImageFolderDataset",
    "ImageRecord",
    "LabelRow",
    "MedMNISTDataset",
    "MedMNISTInfo",
    "MedMNISTSplit",
    "decode_png",
    "default_data_dir",
    "deidentify",
    "deidentify_file",
    "deidentify_uid",
    "dicom_image",
    "dicom_to_bytes",
    "encode_png",
    "identifying_pixels",
    "load_image_file",
    "load_medmnist",
    "pseudonymize",
    "read_dicom",
    "read_dicom_folder",
    "read_image_folder",
    "read_labels_csv",
    "stratified_group_split",
]
