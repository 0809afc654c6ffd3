"""MedMNIST 2D datasets in the official ``.npz`` layout, local first, else downloaded.

A file ``<data_dir>/<name>.npz`` is always read first (any 2D MedMNIST-layout file
works, even under a name not in `MEDMNIST_2D`); otherwise the official 28 px file of
MedMNIST v3 (Yang et al., Scientific Data 10:41, 2023; Zenodo record 10519652) is
downloaded over HTTPS with an MD5 check and written atomically.

Layout: keys ``train_images, train_labels, val_images, val_labels, test_images,
test_labels``; images ``(N, H, W)`` or ``(N, H, W, 3)`` uint8; labels ``(N, 1)``, or
``(N, L)`` of 0/1 for a multi-label set (ChestMNIST: 14 findings per image), which loads
as an (N, L) int64 array with ``MedMNISTDataset.multi_label`` set. Multi-label sets can
be trained and benchmarked (`medloop.learning.bench`), not annotated: annotation tasks
are single choice, so the store and the loop load with ``require_single_label=True``.
"""

from __future__ import annotations

import difflib
import hashlib
import http.client
import logging
import os
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import BinaryIO

import numpy as np
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from medloop.exceptions import (
    DatasetUnavailableError,
    IngestError,
    InvalidInputError,
    UnknownOptionError,
)
from medloop.types import Split

logger = logging.getLogger(__name__)

_ZENODO = "https://zenodo.org/records/10519652/files/{name}.npz?download=1"
_TIMEOUT_S = 60.0
_CHUNK = 1 << 20


@dataclass(frozen=True)
class MedMNISTInfo:
    """Official facts about one MedMNIST 2D set (from MedMNIST's ``medmnist/info.py``)."""

    name: str
    md5: str
    classes: tuple[str, ...]
    n_channels: int
    task: str
    n_samples: tuple[int, int, int]  # train, val, test
    license: str = "CC BY 4.0"

    @property
    def url(self) -> str:
        """The official download URL of the 28 px file."""
        return _ZENODO.format(name=self.name)

    @property
    def multi_label(self) -> bool:
        return self.task.startswith("multi-label")


_ORGANS = (
    "bladder",
    "femur-left",
    "femur-right",
    "heart",
    "kidney-left",
    "kidney-right",
    "liver",
    "lung-left",
    "lung-right",
    "pancreas",
    "spleen",
)

_INFOS = (
    MedMNISTInfo(
        "pathmnist",
        "a8b06965200029087d5bd730944a56c1",
        (
            "adipose",
            "background",
            "debris",
            "lymphocytes",
            "mucus",
            "smooth muscle",
            "normal colon mucosa",
            "cancer-associated stroma",
            "colorectal adenocarcinoma epithelium",
        ),
        3,
        "multi-class",
        (89996, 10004, 7180),
    ),
    MedMNISTInfo(
        "chestmnist",
        "02c8a6516a18b556561a56cbdd36c4a8",
        (
            "atelectasis",
            "cardiomegaly",
            "effusion",
            "infiltration",
            "mass",
            "nodule",
            "pneumonia",
            "pneumothorax",
            "consolidation",
            "edema",
            "emphysema",
            "fibrosis",
            "pleural",
            "hernia",
        ),
        1,
        "multi-label, binary-class",
        (78468, 11219, 22433),
    ),
    MedMNISTInfo(
        "dermamnist",
        "0744692d530f8e62ec473284d019b0c7",
        (
            "actinic keratoses and intraepithelial carcinoma",
            "basal cell carcinoma",
            "benign keratosis-like lesions",
            "dermatofibroma",
            "melanoma",
            "melanocytic nevi",
            "vascular lesions",
        ),
        3,
        "multi-class",
        (7007, 1003, 2005),
        license="CC BY-NC 4.0",
    ),
    MedMNISTInfo(
        "octmnist",
        "c68d92d5b585d8d81f7112f81e2d0842",
        ("choroidal neovascularization", "diabetic macular edema", "drusen", "normal"),
        1,
        "multi-class",
        (97477, 10832, 1000),
    ),
    MedMNISTInfo(
        "pneumoniamnist",
        "28209eda62fecd6e6a2d98b1501bb15f",
        ("normal", "pneumonia"),
        1,
        "binary-class",
        (4708, 524, 624),
    ),
    MedMNISTInfo(
        "retinamnist",
        "bd4c0672f1bba3e3a89f0e4e876791e4",
        ("0", "1", "2", "3", "4"),
        3,
        "ordinal-regression",
        (1080, 120, 400),
    ),
    MedMNISTInfo(
        "breastmnist",
        "750601b1f35ba3300ea97c75c52ff8f6",
        ("malignant", "normal, benign"),
        1,
        "binary-class",
        (546, 78, 156),
    ),
    MedMNISTInfo(
        "bloodmnist",
        "7053d0359d879ad8a5505303e11de1dc",
        (
            "basophil",
            "eosinophil",
            "erythroblast",
            "immature granulocytes(myelocytes, metamyelocytes and promyelocytes)",
            "lymphocyte",
            "monocyte",
            "neutrophil",
            "platelet",
        ),
        3,
        "multi-class",
        (11959, 1712, 3421),
    ),
    MedMNISTInfo(
        "tissuemnist",
        "ebe78ee8b05294063de985d821c1c34b",
        (
            "Collecting Duct, Connecting Tubule",
            "Distal Convoluted Tubule",
            "Glomerular endothelial cells",
            "Interstitial endothelial cells",
            "Leukocytes",
            "Podocytes",
            "Proximal Tubule Segments",
            "Thick Ascending Limb",
        ),
        1,
        "multi-class",
        (165466, 23640, 47280),
    ),
    MedMNISTInfo(
        "organamnist",
        "68e3f8846a6bd62f0c9bf841c0d9eacc",
        _ORGANS,
        1,
        "multi-class",
        (34561, 6491, 17778),
    ),
    MedMNISTInfo(
        "organcmnist",
        "b9ceb9546e10131b32923c5bbeaea2b1",
        _ORGANS,
        1,
        "multi-class",
        (12975, 2392, 8216),
    ),
    MedMNISTInfo(
        "organsmnist",
        "9ab87b696fb54e2a387ebe992d6ed5f1",
        _ORGANS,
        1,
        "multi-class",
        (13932, 2452, 8827),
    ),
)

#: The 12 official MedMNIST 2D sets (28 px files of MedMNIST v3, Zenodo record 10519652).
MEDMNIST_2D: Mapping[str, MedMNISTInfo] = MappingProxyType({i.name: i for i in _INFOS})

_SPLITS = (Split.TRAIN, Split.VAL, Split.TEST)
_KEYS = tuple(f"{s.value}_{kind}" for s in _SPLITS for kind in ("images", "labels"))


@dataclass(frozen=True)
class MedMNISTSplit:
    """One split: ``images`` (N, H, W) or (N, H, W, 3) uint8, ``labels`` (N,) int64
    (multi-label sets: (N, L) int64 of 0/1) and ``rows`` (N,), each image's row number in
    the file's split (stable item references)."""

    images: np.ndarray
    labels: np.ndarray
    rows: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass(frozen=True)
class MedMNISTDataset:
    """A MedMNIST dataset: class names (index = label), channels and its three splits.

    For a multi-label set `classes` names the L binary labels (label columns)."""

    name: str
    classes: list[str]
    n_channels: int
    splits: dict[Split, MedMNISTSplit]
    multi_label: bool = False

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, ...]:
        """Shape of one image: ``(H, W)`` or ``(H, W, 3)``."""
        return tuple(self.splits[Split.TRAIN].images.shape[1:])

    @property
    def counts(self) -> dict[Split, int]:
        """Number of rows per split."""
        return {split: len(part) for split, part in self.splits.items()}


def default_data_dir() -> Path:
    """Where datasets go when no data directory is given: ``~/.medloop-data``."""
    return Path.home() / ".medloop-data"


def load_medmnist(
    name: str,
    *,
    data_dir: Path | None,
    download: bool = True,
    limit: int | None = None,
    progress: bool = True,
    require_single_label: bool = False,
) -> MedMNISTDataset:
    """Load a 2D MedMNIST set from ``<data_dir>/<name>.npz``, downloading it if absent.

    Args:
        name: e.g. ``"pneumoniamnist"`` (case-insensitive).
        data_dir: folder searched first and written to by a download
            (``MEDLOOP_DATA_DIR``); ``None`` means `default_data_dir()`.
        download: fetch the official file when it is not local.
        limit: keep ``limit`` rows of each split, a seeded random sample in file order
            (quick runs; files may be sorted by label, so the first rows would not do).
        progress: show a Rich progress bar while downloading.
        require_single_label: refuse multi-label sets (for callers needing one class
            per image, e.g. single-choice annotation); an official one before any download.

    Raises:
        UnknownOptionError: no local file and the name is not an official 2D set.
        InvalidInputError: a bad ``limit``, or a multi-label set when
            ``require_single_label`` is set.
        IngestError: the file is corrupt or not in the MedMNIST layout.
        DatasetUnavailableError: not local, and download disabled or failed.
    """
    key = name.strip().lower()
    if not key or Path(key).name != key or key.startswith("."):
        raise InvalidInputError(f"invalid dataset name {name!r}")
    if limit is not None and (isinstance(limit, bool) or int(limit) != limit or limit < 1):
        raise InvalidInputError(f"limit must be a positive integer or None, got {limit!r}")
    info = MEDMNIST_2D.get(key)
    if require_single_label and info is not None and info.multi_label:
        raise _multi_label_refused(key, info.task)
    directory = Path(data_dir) if data_dir is not None else default_data_dir()
    path = directory / f"{key}.npz"
    if path.is_file():
        logger.info("reading %s from %s", key, path)
    elif info is None:
        known = sorted(MEDMNIST_2D)
        close = difflib.get_close_matches(key, known, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise UnknownOptionError(
            f"{name!r} is not a MedMNIST 2D dataset and {path} does not exist; "
            f"choose one of {known}.{hint}"
        )
    elif not download:
        raise DatasetUnavailableError(
            f"{path} not found and download is disabled; download {info.url} and put it "
            f"there as {key}.npz (the folder MEDLOOP_DATA_DIR points to)"
        )
    else:
        _download(info.url, path, md5=info.md5, progress=progress)
    dataset = _read_npz(path, key, info, limit=limit)
    if require_single_label and dataset.multi_label:
        raise _multi_label_refused(key, f"{dataset.n_classes} binary labels per image")
    return dataset


def _multi_label_refused(name: str, what: str) -> InvalidInputError:
    return InvalidInputError(
        f"{name} is a multi-label dataset ({what}): annotation tasks are single choice, "
        "so it cannot go into a project; multi-label sets can only be trained and "
        "benchmarked (medloop bench train)"
    )


def _read_npz(
    path: Path, name: str, info: MedMNISTInfo | None, *, limit: int | None
) -> MedMNISTDataset:
    """Read and validate a MedMNIST-layout npz file."""
    arrays: dict[str, np.ndarray] = {}
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in _KEYS if k not in npz.files]
            if missing:
                raise IngestError(
                    path,
                    f"not in the MedMNIST layout: missing keys {missing} "
                    f"(found {sorted(npz.files)})",
                )
            for key in _KEYS:
                array = npz[key]
                arrays[key] = array
    except IngestError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise IngestError(path, f"not a readable npz file: {exc}") from exc

    images = {s: _check_images(path, s, arrays[f"{s.value}_images"]) for s in _SPLITS}
    train_labels = arrays[f"{Split.TRAIN.value}_labels"]
    multi_label = train_labels.ndim == 2 and train_labels.shape[1] > 1
    if info is not None and info.multi_label != multi_label:
        raise IngestError(
            path,
            f"{name} is a {info.task} dataset but train_labels has shape {train_labels.shape}",
        )
    check = _check_multilabels if multi_label else _check_labels
    labels = {s: check(path, s, arrays[f"{s.value}_labels"]) for s in _SPLITS}
    shapes = {images[s].shape[1:] for s in _SPLITS}
    if len(shapes) != 1:
        raise IngestError(path, f"splits have different image shapes {sorted(shapes)}")
    for split in _SPLITS:
        if len(images[split]) != len(labels[split]):
            raise IngestError(
                path,
                f"{split.value}: {len(images[split])} images but {len(labels[split])} labels",
            )
    n_channels = 3 if images[Split.TRAIN].ndim == 4 else 1
    widths = {labels[s].shape[1] for s in _SPLITS if multi_label}
    if len(widths) > 1:
        raise IngestError(path, f"splits have different label counts {sorted(widths)}")

    if info is not None:
        classes = list(info.classes)
        if n_channels != info.n_channels:
            raise IngestError(
                path, f"{name} should have {info.n_channels} channel(s), found {n_channels}"
            )
        if multi_label and widths != {len(classes)}:
            raise IngestError(path, f"{name} should have {len(classes)} labels, found {widths}")
    elif multi_label:
        classes = [str(i) for i in range(next(iter(widths)))]
    else:
        top = max((int(lab.max()) for lab in labels.values() if lab.size), default=0)
        classes = [str(i) for i in range(top + 1)]
    for split in _SPLITS:
        bad = labels[split][(labels[split] < 0) | (labels[split] >= len(classes))]
        if bad.size:
            raise IngestError(
                path,
                f"{split.value}_labels has label {int(bad[0])} out of range "
                f"0..{len(classes) - 1} ({len(classes)} classes)",
            )
    splits = {s: _sample(images[s], labels[s], limit=limit) for s in _SPLITS}
    logger.info("loaded %s: %s", name, {s.value: len(p) for s, p in splits.items()})
    return MedMNISTDataset(
        name=name,
        classes=classes,
        n_channels=n_channels,
        splits=splits,
        multi_label=multi_label,
    )


def _sample(images: np.ndarray, labels: np.ndarray, *, limit: int | None) -> MedMNISTSplit:
    """All rows, or a seeded random sample of ``limit`` rows kept in file order."""
    rows = np.arange(len(labels))
    if limit is not None and limit < len(labels):
        rows = np.sort(np.random.default_rng(0).choice(len(labels), size=limit, replace=False))
        return MedMNISTSplit(images=images[rows].copy(), labels=labels[rows].copy(), rows=rows)
    return MedMNISTSplit(images=images, labels=labels, rows=rows)


def _check_images(path: Path, split: Split, array: np.ndarray) -> np.ndarray:
    """Return images as contiguous uint8 (N, H, W) or (N, H, W, 3), or raise."""
    if array.ndim == 4 and array.shape[3] == 1:
        array = array[..., 0]
    if not (array.ndim == 3 or (array.ndim == 4 and array.shape[3] == 3)):
        raise IngestError(
            path,
            f"{split.value}_images must have shape (N, H, W) or (N, H, W, 3), got {array.shape}",
        )
    if array.dtype != np.uint8:
        if not np.issubdtype(array.dtype, np.integer) or (
            array.size and (array.min() < 0 or array.max() > 255)
        ):
            raise IngestError(
                path, f"{split.value}_images must be uint8 pixels, got dtype {array.dtype}"
            )
        array = array.astype(np.uint8)
    return np.ascontiguousarray(array)


def _check_labels(path: Path, split: Split, array: np.ndarray) -> np.ndarray:
    """Return single labels as int64 (N,), or raise."""
    if array.ndim == 2 and array.shape[1] > 1:
        raise IngestError(
            path,
            f"{split.value}_labels has shape {array.shape} but train_labels holds one "
            "label per image",
        )
    if not (array.ndim == 1 or (array.ndim == 2 and array.shape[1] == 1)):
        raise IngestError(
            path, f"{split.value}_labels must have shape (N, 1) or (N,), got {array.shape}"
        )
    flat = array.reshape(-1)
    if np.issubdtype(flat.dtype, np.integer) or flat.dtype == np.bool_:
        return flat.astype(np.int64)
    if (
        np.issubdtype(flat.dtype, np.floating)
        and np.all(np.isfinite(flat))
        and np.all(flat == np.round(flat))
    ):
        return flat.astype(np.int64)
    raise IngestError(
        path, f"{split.value}_labels must be integer class indices, got dtype {flat.dtype}"
    )


def _check_multilabels(path: Path, split: Split, array: np.ndarray) -> np.ndarray:
    """Return multi-label indicators as int64 (N, L) of 0/1, or raise."""
    if array.ndim != 2 or array.shape[1] < 2:
        raise IngestError(
            path,
            f"{split.value}_labels must have shape (N, L) like train_labels, got {array.shape}",
        )
    if array.size and not np.all((array == 0) | (array == 1)):
        raise IngestError(path, f"{split.value}_labels of a multi-label set must be 0 or 1")
    return array.astype(np.int64)


def _download(url: str, dest: Path, *, md5: str, progress: bool) -> None:
    """Fetch `url` to `dest` through a temporary file, checking its MD5; atomic rename."""
    hint = (
        f"If this machine is offline, download {url} elsewhere and put it at {dest} "
        "(the folder MEDLOOP_DATA_DIR points to)."
    )
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatasetUnavailableError(f"cannot create {dest.parent}: {exc}. {hint}") from exc
    logger.info("downloading %s to %s", url, dest)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            digest = _fetch(url, out, progress=progress, label=dest.name)
        if digest != md5:
            raise DatasetUnavailableError(
                f"checksum mismatch for {url}: MD5 {digest}, expected {md5}; the download "
                f"was discarded. {hint}"
            )
        os.replace(tmp, dest)
    except (urllib.error.URLError, http.client.HTTPException, TimeoutError, ConnectionError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DatasetUnavailableError(f"could not download {url}: {reason}. {hint}") from exc
    except OSError as exc:
        raise DatasetUnavailableError(f"could not download {url}: {exc}. {hint}") from exc
    finally:
        tmp.unlink(missing_ok=True)


def _fetch(url: str, out: BinaryIO, *, progress: bool, label: str) -> str:
    """Stream `url` into the binary file `out`; return the hex MD5 of what was read."""
    hasher = hashlib.md5(usedforsecurity=False)
    with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as response:
        length = response.headers.get("Content-Length") if response.headers else None
        total = int(length) if length and str(length).isdigit() else None
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            disable=not progress,
            transient=True,
        ) as bar:
            task = bar.add_task(f"download {label}", total=total)
            while chunk := response.read(_CHUNK):
                hasher.update(chunk)
                out.write(chunk)
                bar.update(task, advance=len(chunk))
    return hasher.hexdigest()
