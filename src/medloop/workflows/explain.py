"""Explanations for doctors: a Grad-CAM overlay of an item under a project's model.

The overlay PNG is computed once per (model version, item, class) and kept as a blob;
a small pointer file next to the model's checkpoint (`v3.gradcam/<item>-<class>.sha256`)
remembers which blob, so the review page can ask for it again for free.
"""

from __future__ import annotations

import functools
import logging
import os
import tempfile
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from medloop.exceptions import InvalidInputError, NotFoundError
from medloop.ingest import decode_png
from medloop.store import repository as repo
from medloop.store.models import Project
from medloop.workflows.checkpoints import DIGEST_KEY, checked_checkpoint
from medloop.workflows.workspace import Workspace

if TYPE_CHECKING:
    from medloop.learning.ensemble import Classifier

logger = logging.getLogger(__name__)

#: The folder beside a checkpoint (``v3.pt`` -> ``v3.gradcam/``) holding pointers to its
#: Grad-CAM overlays, one file per item and class, each naming a blob.
_GRADCAM_SUFFIX = ".gradcam"


@dataclass(frozen=True)
class ModelRef:
    """A stored model version of a project: where its checkpoint is, and its classes."""

    project: str
    version: int
    checkpoint: Path
    classes: list[str]
    sha256: str | None = None  # recorded when it was trained (None: before that was)


def model_ref(ws: Workspace, *, project: str, version: int | None = None) -> ModelRef:
    """The project's model version `version` (default: the one in use)."""
    from medloop.workflows.models import chosen_version

    with ws.db.session() as s:
        record = repo.get_project(s, name=project)
        chosen = chosen_version(s, project=record, version=version)
        classes = [str(c) for c in record.classes]
    return ModelRef(
        project=project,
        version=chosen.version,
        checkpoint=ws.checkpoint(chosen.checkpoint_path),
        classes=classes,
        sha256=chosen.metrics.get(DIGEST_KEY),
    )


def version_of_file(ws: Workspace, *, checkpoint: Path) -> ModelRef | None:
    """The model version whose checkpoint is the file at `checkpoint` (None: no version
    of this home names it)."""
    target = Path(checkpoint).resolve()
    with ws.db.session() as s:
        stored = repo.model_checkpoints(s)
    for project, version, path, _ in stored:
        if ws.checkpoint(path).resolve() == target:
            return model_ref(ws, project=project, version=version)
    return None


@functools.lru_cache(maxsize=4)
def _load(path: str, _modified_ns: int) -> Classifier:
    from medloop.learning.ensemble import load_checkpoint

    return load_checkpoint(Path(path))


def load_classifier(checkpoint: Path) -> Classifier:
    """A checkpoint's classifier or deep ensemble, cached in memory while the file is
    unchanged."""
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise NotFoundError(f"the model checkpoint {checkpoint} is missing")
    return _load(str(checkpoint.resolve()), checkpoint.stat().st_mtime_ns)


def load_version(ref: ModelRef) -> Classifier:
    """The classifier of a project's model version, its checkpoint checked first
    against the digest recorded when it was trained (`checkpoints.checked_checkpoint`)."""
    path = checked_checkpoint(
        ref.checkpoint, sha256=ref.sha256, project=ref.project, version=ref.version
    )
    return load_classifier(path)


def gradcam_folder(checkpoint: Path) -> Path:
    """The folder of pointers to the Grad-CAM overlays of the model at `checkpoint`."""
    return checkpoint.with_suffix(_GRADCAM_SUFFIX)


def gradcam_blobs(ws: Workspace) -> set[str]:
    """The blobs the Grad-CAM overlays kept beside the models' checkpoints point at (a
    cache no row names: `medloop store gc` keeps them while their pointer is there)."""
    model_dir = ws.settings.model_dir
    if not model_dir.is_dir():
        return set()
    return {p.read_text().strip() for p in model_dir.glob(f"**/*{_GRADCAM_SUFFIX}/*.sha256")}


def gradcam_pointers(checkpoint: Path, *, item_ids: Collection[int]) -> list[Path]:
    """The pointers kept beside a model version's `checkpoint` to Grad-CAM overlays of
    the items `item_ids` (each overlay shows its item's image)."""
    folder = Path(checkpoint).with_suffix(_GRADCAM_SUFFIX)
    if not folder.is_dir():
        return []
    wanted = {str(i) for i in item_ids}
    return sorted(p for p in folder.glob("*.sha256") if p.name.split("-", 1)[0] in wanted)


def _write_pointer(path: Path, sha256: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(fd, "w") as handle:
        handle.write(sha256)
    os.replace(tmp, path)


def gradcam_overlay(
    ws: Workspace, *, item_id: int, label: str | None = None, actor: str | None = None
) -> bytes:
    """PNG of the item's image with the Grad-CAM heat map of the project's model in use.

    `label` names the class to explain (default: the class the model predicts); the read
    is audited under `actor` (it shows the image). Raises `NotFoundError` for an unknown
    item or a project without a model.
    """
    from medloop.learning.data import prepare_images
    from medloop.learning.explain import gradcam, overlay_png

    with ws.db.session() as s:
        item = repo.get_item(s, item_id=item_id)
        project = s.get(Project, item.project_id)
        assert project is not None
        name, image_sha = project.name, item.image_sha256
    ref = model_ref(ws, project=name)
    if label is not None and label not in ref.classes:
        raise InvalidInputError(f"{label!r} is not a class of {name!r}; classes: {ref.classes}")
    if actor is not None:
        with ws.db.session() as s:
            detail = {"label": label} if label is not None else None
            repo.audit(
                s, actor=actor, action="item.gradcam", entity="item", entity_id=item_id,
                detail=detail,
            )  # fmt: skip
    target = "predicted" if label is None else str(ref.classes.index(label))
    pointer = gradcam_folder(ref.checkpoint) / f"{item_id}-{target}.sha256"
    if pointer.is_file():
        sha = pointer.read_text().strip()
        if ws.blobs.exists(sha):
            return ws.blobs.get(sha)
    model = load_version(ref)
    image = decode_png(ws.blobs.get(image_sha))
    prepared = prepare_images([image], in_channels=model.in_channels, image_size=None)
    classes = None if label is None else [ref.classes.index(label)]
    heat = gradcam(model, prepared, classes=classes)[0]
    png = overlay_png(prepared[0], heat)
    _write_pointer(pointer, ws.blobs.put(png))
    logger.info("grad-cam overlay for item %d under %s v%d", item_id, name, ref.version)
    return png
