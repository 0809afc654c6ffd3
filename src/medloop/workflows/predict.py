"""Predict on files outside the store: image folders and DICOM files -> a predictions CSV.

The model is a checkpoint file of a classifier or a deep ensemble (a project's model
versions, or what `medloop bench train --output` writes), a TorchScript export
(`medloop model export`), or a project name (the model version it uses). A model
version's checkpoint, named by project or by its file's path, is checked against the
sha256 recorded when it was trained before it is loaded; any other file is loaded
unverified, and the summary says so (`verified`). Inputs are
files or folders (searched recursively; hidden files skipped). PNG/JPEG files are read
as images, DICOM files (``.dcm``/``.dicom`` or the ``DICM`` preamble) through
`medloop.ingest` for their pixels only: nothing from the DICOM header reaches the
output. The CSV has ``file, label, p0..p{K-1}``; ``file`` is the path as found, so
names must not carry personal data. Files are read and predicted a batch at a time, so
memory holds one batch of pixels however many files there are. An unreadable file stops
the run with an error naming it and no CSV is written (overlays of the batches already
done stay), or, with `skip_unreadable`, is left out of the CSV and listed with its
reason in the summary.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from medloop.exceptions import IngestError, InvalidInputError, NotFoundError
from medloop.ingest import dicom_image, encode_png, load_image_file, read_dicom
from medloop.ingest.images import IMAGE_EXTENSIONS
from medloop.workflows.explain import (
    load_classifier,
    load_version,
    model_ref,
    version_of_file,
)
from medloop.workflows.workspace import Workspace

if TYPE_CHECKING:
    from medloop.config import Settings
    from medloop.learning.ensemble import Classifier
    from medloop.learning.inference import ScriptedClassifier
    from medloop.workflows.progress import Progress

logger = logging.getLogger(__name__)

DICOM_SUFFIXES = frozenset({".dcm", ".dicom"})


@dataclass(frozen=True)
class SkippedFile:
    """An input left out of the predictions, and why."""

    file: str
    reason: str


@dataclass(frozen=True)
class PredictionSummary:
    model: str
    files: int
    classes: list[str]
    output: Path
    overlays: int
    skipped: list[SkippedFile]
    #: a binary model's cut on p(class 1), chosen on validation (None: the argmax)
    threshold: float | None = None
    #: whether the model's file was checked against a sha256 recorded when it was trained
    verified: bool = False


@dataclass(frozen=True)
class LoadedModel:
    """A model ready to predict: an eager classifier or ensemble (Grad-CAM possible) or
    TorchScript; `verified` when its file matched the sha256 its training recorded (a
    model version's, trained since digests were recorded)."""

    name: str
    classes: list[str]
    classifier: Classifier | None = None
    scripted: ScriptedClassifier | None = None
    verified: bool = False

    @property
    def in_channels(self) -> int:
        if self.classifier is not None:
            return self.classifier.in_channels
        assert self.scripted is not None
        return int(self.scripted.info["in_channels"])

    @property
    def image_size(self) -> tuple[int, int] | None:
        if self.classifier is not None:
            return self.classifier.image_size
        assert self.scripted is not None
        size = self.scripted.info.get("image_size")
        return None if size is None else (int(size[0]), int(size[1]))

    def predict_proba(self, images: np.ndarray, *, batch_size: int) -> np.ndarray:
        if self.classifier is not None:
            return self.classifier.predict_proba(images, batch_size=batch_size)
        assert self.scripted is not None
        return self.scripted.predict_proba(images, batch_size=batch_size)

    @property
    def threshold(self) -> float | None:
        """The cut on p(class 1) that decides a binary model's label (None: argmax)."""
        if len(self.classes) != 2:
            return None
        if self.classifier is not None:
            return float(self.classifier.threshold)
        assert self.scripted is not None
        return float(self.scripted.info.get("threshold", 0.5))

    def decide(self, probabilities: np.ndarray) -> np.ndarray:
        if self.classifier is not None:
            return self.classifier.decide(probabilities)
        if self.threshold is not None:
            return (probabilities[:, 1] >= self.threshold).astype(np.int64)
        return probabilities.argmax(axis=1).astype(np.int64)


def needs_workspace(model: str, *, settings: Settings) -> bool:
    """Whether `load_model(model)` needs the home of `settings`: for a project's name, or
    a file in its model folder (a model version's, to be checked against its digest)."""
    path = Path(model)
    return not path.is_file() or path.resolve().is_relative_to(settings.model_dir.resolve())


def load_model(
    model: str, *, ws: Workspace | None = None, classes: Sequence[str] | None = None
) -> LoadedModel:
    """A checkpoint or TorchScript file at `model`, else the model in use of project `model`
    (needs `ws`). `classes` names the classes of a file model (default: 0..K-1). A file
    that is a model version's of `ws` is checked against its recorded sha256 first (a
    damaged one is an error); another file is loaded unverified."""
    from medloop.learning.inference import ScriptedClassifier, is_torchscript

    path = Path(model)
    if path.is_file():
        ref = None if ws is None else version_of_file(ws, checkpoint=path)
        classifier: Classifier | None = None
        scripted: ScriptedClassifier | None = None
        if ref is None and is_torchscript(path):
            scripted = ScriptedClassifier.load(path)
            n_classes = scripted.n_classes
        else:
            classifier = load_classifier(path) if ref is None else load_version(ref)
            if classifier.config.multi_label:
                raise InvalidInputError(
                    f"{path} is a multi-label model; `medloop predict` writes one class per "
                    "image (score multi-label sets with `medloop bench train --predictions`)"
                )
            n_classes = classifier.n_classes
        names = [str(c) for c in classes] if classes else [str(k) for k in range(n_classes)]
        if len(names) != n_classes:
            raise InvalidInputError(f"{path} has {n_classes} classes; --classes names {names}")
        verified = ref is not None and ref.sha256 is not None
        return LoadedModel(path.name, names, classifier, scripted, verified)
    if ws is None:
        raise NotFoundError(f"no model file {model!r} (and no workspace to look up a project)")
    if path.suffix.lower() in {".pt", ".pth", ".ts"} or len(path.parts) > 1:
        raise NotFoundError(f"no model file {model!r}")  # a path, not a project's name
    ref = model_ref(ws, project=model)
    return LoadedModel(
        f"{ref.project} v{ref.version}",
        ref.classes,
        load_version(ref),
        verified=ref.sha256 is not None,
    )


def _is_dicom(path: Path) -> bool:
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    try:
        with path.open("rb") as handle:
            head = handle.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:] == b"DICM"


def find_inputs(inputs: Sequence[Path]) -> list[Path]:
    """The files to predict on: given files as they are, folders searched recursively for
    PNG/JPEG/DICOM files (hidden files and other files skipped), in a stable order."""
    if not inputs:
        raise InvalidInputError("give at least one input file or folder")
    found: list[Path] = []
    for given in map(Path, inputs):
        if given.is_file():
            found.append(given)
        elif given.is_dir():
            for path in sorted(given.rglob("*")):
                rel = path.relative_to(given)
                if any(part.startswith(".") for part in rel.parts) or not path.is_file():
                    continue
                if path.suffix.lower() in IMAGE_EXTENSIONS or _is_dicom(path):
                    found.append(path)
                else:
                    logger.info("skipping %s (not an image or DICOM file)", path)
        else:
            raise IngestError(given, "file not found")
    if not found:
        raise InvalidInputError(f"no image or DICOM files in {[str(p) for p in inputs]}")
    return found


def read_input(path: Path) -> np.ndarray:
    """The pixels of one PNG/JPEG or DICOM file (uint8); errors name the file."""
    if _is_dicom(path):
        try:
            return dicom_image(read_dicom(path))
        except IngestError:
            raise
        except InvalidInputError as exc:
            raise IngestError(path, str(exc)) from exc
    return load_image_file(path)


def _overlay_name(file: str, used: set[str]) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", str(PurePosixPath(file).with_suffix(""))).strip("_")
    name, n = f"{stem or 'image'}.gradcam.png", 1
    while name in used:
        n += 1
        name = f"{stem}-{n}.gradcam.png"
    used.add(name)
    return name


def predict_files(
    inputs: Sequence[Path],
    *,
    model: LoadedModel,
    output: Path,
    overlays: Path | None = None,
    batch_size: int = 256,
    skip_unreadable: bool = False,
    progress: Progress | None = None,
) -> PredictionSummary:
    """Predict every input file, `batch_size` files at a time, and write the CSV (and
    Grad-CAM overlay PNGs if asked).

    An unreadable file raises `IngestError` naming it before the CSV is written; with
    `skip_unreadable` it is logged, left out and listed in the summary's `skipped`.
    `progress` is called with ("predicting", files done, files)."""
    from medloop.learning.data import prepare_images

    if overlays is not None and model.classifier is None:
        raise InvalidInputError("Grad-CAM overlays need a checkpoint, not a TorchScript export")
    if batch_size < 1:
        raise InvalidInputError(f"batch_size must be at least 1; got {batch_size}")
    files = find_inputs(inputs)
    frames: list[pd.DataFrame] = []
    skipped: list[SkippedFile] = []
    used_names: set[str] = set()
    written = 0
    for start in range(0, len(files), batch_size):
        batch: list[Path] = []
        pixels: list[np.ndarray] = []
        for path in files[start : start + batch_size]:
            try:
                pixels.append(read_input(path))
            except IngestError as exc:
                if not skip_unreadable:
                    raise
                logger.warning("skipping unreadable %s: %s", path, exc.reason)
                skipped.append(SkippedFile(path.as_posix(), exc.reason))
                continue
            batch.append(path)
        if batch:
            images = prepare_images(
                pixels, in_channels=model.in_channels, image_size=model.image_size
            )
            proba = model.predict_proba(images, batch_size=batch_size)
            labels = model.decide(proba)
            frames.append(_rows(batch, proba, labels, model.classes))
            if overlays is not None:
                assert model.classifier is not None
                written += _write_overlays(
                    batch, pixels, images, labels, model.classifier, overlays, used_names
                )
        if progress is not None:
            progress("predicting", min(start + batch_size, len(files)), len(files))
    if not frames:
        raise InvalidInputError(
            f"none of the {len(files)} input files could be read (first: "
            f"{skipped[0].file}: {skipped[0].reason})"
        )
    frame = pd.concat(frames, ignore_index=True)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(output, index=False, float_format="%.6f")
    logger.info("predicted %d files with %s (%d skipped)", len(frame), model.name, len(skipped))
    return PredictionSummary(
        model=model.name,
        files=len(frame),
        classes=model.classes,
        output=output,
        overlays=written,
        skipped=skipped,
        threshold=model.threshold,
        verified=model.verified,
    )


def _rows(
    files: list[Path], proba: np.ndarray, labels: np.ndarray, classes: list[str]
) -> pd.DataFrame:
    """Rows of the predictions CSV: file, label, p0..p{K-1}."""
    frame = pd.DataFrame(proba, columns=[f"p{k}" for k in range(proba.shape[1])])
    frame.insert(0, "label", [classes[int(k)] for k in labels])
    frame.insert(0, "file", [p.as_posix() for p in files])
    return frame


def _write_overlays(
    files: list[Path],
    pixels: list[np.ndarray],
    images: np.ndarray,
    labels: np.ndarray,
    classifier: Classifier,
    folder: Path,
    used: set[str],
) -> int:
    """A Grad-CAM overlay PNG per file: the predicted class's map over the file's pixels."""
    from medloop.learning.explain import gradcam, overlay, resize_heatmap

    folder.mkdir(parents=True, exist_ok=True)
    heat = gradcam(classifier, images, classes=labels.tolist())
    for file, image, heatmap in zip(files, pixels, heat, strict=True):
        target = folder / _overlay_name(file.as_posix(), used)
        target.write_bytes(encode_png(overlay(image, resize_heatmap(heatmap, image.shape[:2]))))
    return len(files)
