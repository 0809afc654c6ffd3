"""Model checkpoints, checked: training records the sha256 of each model version's file
(in the version's metrics, as ``checkpoint_sha256``); the file is checked against it
before the model is loaded and by `medloop store verify`. Versions trained before the
digest was recorded are "unverified": only whether their file is there can be told.

A training writes its checkpoint as ``<project>/training-<hex>.pt`` (through a
``.tmp`` file) until its version is stored (`loop.train`); a training killed meanwhile
leaves it behind, for `medloop store gc` (`unfinished_checkpoints`). Stored, it is
``<project>/v<N>.pt`` (`version_checkpoints`): renamed just before its version's row is
committed, so a crash in between, or a database restored to an earlier copy, leaves a
file no version names, for `medloop store gc` too.
"""

from __future__ import annotations

import functools
import hashlib
import re
from enum import StrEnum
from pathlib import Path

from medloop.exceptions import ConflictError, NotFoundError

#: The key of a model version's metrics that holds its checkpoint's sha256.
DIGEST_KEY = "checkpoint_sha256"
#: The names a training gives its checkpoint until its version is stored.
UNFINISHED = ("training-*.pt", "training-*.pt.tmp")
#: The name of a stored model version's checkpoint in its project's folder.
STORED = re.compile(r"v[0-9]+\.pt")


class CheckpointState(StrEnum):
    OK = "ok"
    MISSING = "missing"
    DAMAGED = "damaged"
    UNVERIFIED = "unverified"  # there, but trained before digests were recorded


def file_sha256(path: Path) -> str:
    """The sha256 of the file at `path` (read in chunks)."""
    with Path(path).open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


@functools.lru_cache(maxsize=64)
def _digest_of(path: str, _modified_ns: int, _size: int) -> str:
    return file_sha256(Path(path))


def checkpoint_state(path: Path, sha256: str | None, *, cached: bool = False) -> CheckpointState:
    """Whether the checkpoint at `path` is there and matches `sha256` (None: unverified).
    `cached` reuses the digest of a file unchanged (same time and size) since read."""
    try:
        if sha256 is None:
            return CheckpointState.UNVERIFIED if path.is_file() else CheckpointState.MISSING
        if cached:
            stat = path.stat()
            found = _digest_of(str(path.resolve()), stat.st_mtime_ns, stat.st_size)
        else:
            found = file_sha256(path)
    except (FileNotFoundError, IsADirectoryError):
        return CheckpointState.MISSING
    return CheckpointState.OK if found == sha256 else CheckpointState.DAMAGED


def checked_checkpoint(path: Path, *, sha256: str | None, project: str, version: int) -> Path:
    """`path`, the checkpoint of model version `version` of `project`, once checked
    against its recorded `sha256`: a missing or damaged file is a clear error that says
    what to do, never a model loaded half or wrong."""
    state = checkpoint_state(path, sha256, cached=True)
    remedy = (
        "restore it from a backup (medloop store backup), or put another version in use: "
        f"medloop model use -p {project} VERSION (medloop model list -p {project} lists them)"
    )
    where = f"model version {version} of project {project!r}"
    if state is CheckpointState.MISSING:
        raise NotFoundError(f"the checkpoint of {where} is missing ({path}); {remedy}")
    if state is CheckpointState.DAMAGED:
        raise ConflictError(
            f"the checkpoint of {where} is damaged ({path} no longer matches the sha256 "
            f"recorded when it was trained); {remedy}"
        )
    return path


def unfinished_checkpoints(model_dir: Path) -> list[Path]:
    """The checkpoint files of trainings not (yet) stored, in every project's folder."""
    if not model_dir.is_dir():
        return []
    found = {path for pattern in UNFINISHED for path in model_dir.glob(f"*/{pattern}")}
    return sorted(path for path in found if path.is_file())


def version_checkpoints(model_dir: Path) -> list[Path]:
    """The checkpoint files named as stored versions' (``<project>/v<N>.pt``), in every
    project's folder, whether a version names them or not."""
    if not model_dir.is_dir():
        return []
    found = model_dir.glob("*/v*.pt")
    return sorted(path for path in found if STORED.fullmatch(path.name) and path.is_file())
