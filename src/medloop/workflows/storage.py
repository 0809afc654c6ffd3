"""The stored files checked against the database: `verify_blobs`, `verify_checkpoints`
and `collect_garbage`.

Rows name blobs by sha256 (an item's image and DICOM file, a risk model's bundle). A
blob a row names may go missing or be damaged on disk (`verify_blobs` finds them, by
the row); a blob no row names is left by an import that failed or was interrupted
between writing its blobs and committing its rows (`collect_garbage` finds them and,
asked to, deletes those unused for longer than a grace period: an import running now
writes or touches its blobs just before committing them, so they are always younger).
Image models' checkpoints live in the model folder, each with the sha256 its training
recorded (`verify_checkpoints`); a training killed before storing its version leaves
its unfinished checkpoint there (`collect_garbage` deletes those past the grace period
too: a training writes its file when it ends, moments before storing it). A stored
version's file, ``<project>/v<N>.pt``, is named by no version after a crash between
renaming it and committing the version, or once the database is restored to an earlier
copy: `collect_garbage` deletes such an orphan past the grace period as well (and its
Grad-CAM pointers), never a file a version names (looked up again just before).
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from medloop.exceptions import InvalidInputError
from medloop.store import repository as repo
from medloop.store.blobs import BlobFile, BlobState
from medloop.types import DEFAULT_BLOB_GRACE_HOURS
from medloop.workflows.checkpoints import (
    DIGEST_KEY,
    CheckpointState,
    checkpoint_state,
    unfinished_checkpoints,
    version_checkpoints,
)
from medloop.workflows.explain import gradcam_blobs, gradcam_folder
from medloop.workflows.progress import Progress, no_progress
from medloop.workflows.workspace import Workspace

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BlobProblem:
    """A blob a row names that is missing or damaged: which row, and what for."""

    sha256: str
    state: str  # BlobState.MISSING or DAMAGED
    entity: str  # "item" or "risk_model"
    entity_id: int
    project: str
    role: str  # "image", "dicom" or "model"


@dataclass(frozen=True)
class VerifyReport:
    """`blobs` distinct blobs named by `references` rows' columns, checked; `problems`
    lists every naming of a missing or damaged one."""

    blobs: int
    references: int
    problems: list[BlobProblem] = field(default_factory=list)

    @property
    def missing(self) -> int:
        return len({p.sha256 for p in self.problems if p.state == BlobState.MISSING})

    @property
    def damaged(self) -> int:
        return len({p.sha256 for p in self.problems if p.state == BlobState.DAMAGED})


def verify_blobs(ws: Workspace, *, progress: Progress = no_progress) -> VerifyReport:
    """Check that every blob a row names is present and still matches its sha256 (each
    blob read once, in chunks)."""
    with ws.db.session() as s:
        references = repo.blob_references(s)
    digests = references["sha256"].unique().tolist()
    bad: dict[str, BlobState] = {}
    for done, sha in enumerate(digests, 1):
        state = ws.blobs.check(sha)
        if state is not BlobState.OK:
            bad[sha] = state
        progress("verify: checking blobs", done, len(digests))
    problems = [
        BlobProblem(
            sha256=row.sha256,
            state=bad[row.sha256].value,
            entity=row.entity,
            entity_id=int(row.entity_id),
            project=row.project,
            role=row.role,
        )
        for row in references[references["sha256"].isin(list(bad))].itertuples()
    ]
    if problems:
        logger.warning("%d of %d referenced blobs missing or damaged", len(bad), len(digests))
    return VerifyReport(blobs=len(digests), references=len(references), problems=problems)


@dataclass(frozen=True)
class CheckpointFinding:
    """A model version's checkpoint that is missing, damaged, or (trained before
    digests were recorded) unverified; `path` as its row stores it."""

    project: str
    version: int
    state: str  # a CheckpointState other than OK
    path: str


@dataclass(frozen=True)
class CheckpointReport:
    """`checkpoints` model versions' files checked; `findings` those not OK."""

    checkpoints: int
    findings: list[CheckpointFinding] = field(default_factory=list)

    @property
    def problems(self) -> list[CheckpointFinding]:
        """The missing and damaged ones (an unverified file is no problem found)."""
        return [f for f in self.findings if f.state != CheckpointState.UNVERIFIED]

    def count(self, state: CheckpointState) -> int:
        return sum(f.state == state for f in self.findings)


def verify_checkpoints(ws: Workspace, *, progress: Progress = no_progress) -> CheckpointReport:
    """Check every model version's checkpoint against the sha256 recorded when it was
    trained (each read whole, in chunks); versions trained before that are unverified."""
    with ws.db.session() as s:
        stored = repo.model_checkpoints(s)
    findings = []
    for done, (project, version, path, metrics) in enumerate(stored, 1):
        state = checkpoint_state(ws.checkpoint(path), metrics.get(DIGEST_KEY))
        if state is not CheckpointState.OK:
            findings.append(CheckpointFinding(project, version, state.value, path))
        progress("verify: checking model checkpoints", done, len(stored))
    report = CheckpointReport(checkpoints=len(stored), findings=findings)
    if report.problems:
        logger.warning(
            "%d of %d model checkpoints missing or damaged", len(report.problems), len(stored)
        )
    return report


@dataclass(frozen=True)
class UnusedBlob:
    """A file of the store no row names: a blob, or (``sha256`` None) the temporary file
    of a write that never finished. ``deleted`` says whether this run removed it."""

    name: str
    sha256: str | None
    size: int
    age_hours: float
    deleted: bool = False


@dataclass(frozen=True)
class CheckpointFile:
    """A checkpoint file of the model folder no version names: a training's not stored
    (killed, or still under way: ``<project>/training-<hex>.pt``), or an orphan
    (``<project>/v<N>.pt``). `name` is its path under the model folder."""

    name: str
    size: int
    age_hours: float
    deleted: bool = False


@dataclass(frozen=True)
class GcReport:
    """`files` files in the store; `unused` those no row names, of which the ones older
    than `grace_hours` may go (`deleted` of them did, freeing `deleted_bytes`); the same
    for the model folder's `unfinished` checkpoints (`deleted_checkpoints`,
    `deleted_checkpoint_bytes`) and its `orphans` (`deleted_orphans`,
    `deleted_orphan_bytes`)."""

    files: int
    grace_hours: float
    unused: list[UnusedBlob]
    deleted: int = 0
    deleted_bytes: int = 0
    unfinished: list[CheckpointFile] = field(default_factory=list)
    deleted_checkpoints: int = 0
    deleted_checkpoint_bytes: int = 0
    orphans: list[CheckpointFile] = field(default_factory=list)
    deleted_orphans: int = 0
    deleted_orphan_bytes: int = 0

    @property
    def within_grace(self) -> int:
        return sum(u.age_hours < self.grace_hours for u in self.unused)

    @property
    def checkpoints_within_grace(self) -> int:
        return sum(u.age_hours < self.grace_hours for u in self.unfinished)

    @property
    def orphans_within_grace(self) -> int:
        return sum(u.age_hours < self.grace_hours for u in self.orphans)


def collect_garbage(
    ws: Workspace,
    *,
    grace_hours: float = DEFAULT_BLOB_GRACE_HOURS,
    delete: bool = False,
    actor: str,
    progress: Progress = no_progress,
) -> GcReport:
    """List the blobs no row names (nor a Grad-CAM pointer), the checkpoints of
    trainings never stored and the version checkpoints no version names and, with
    `delete`, delete those unused for `grace_hours` or more (a training under way wrote
    its file moments ago); each deletion is audited under `actor` (one entry with the
    digests, one with the unfinished checkpoints, one with the orphans). A file written,
    stored or named by a version again since is kept (looked at again just before it
    goes)."""
    if not grace_hours >= 0:
        raise InvalidInputError(f"the grace period must be 0 hours or more, got {grace_hours}")
    with ws.db.session() as s:
        named = set(repo.blob_references(s)["sha256"])
    named |= gradcam_blobs(ws)  # read before the files: a blob named later is young
    now = time.time()
    cutoff = now - grace_hours * 3600
    folders = ws.blobs.folders()
    files = 0
    unused: list[BlobFile] = []
    for done, folder in enumerate(folders, 1):
        for blob in ws.blobs.files(folder):
            files += 1
            if blob.sha256 not in named:
                unused.append(blob)
        progress("gc: listing blobs", done, len(folders))
    removed: set[Path] = set()
    if delete:
        old = [b for b in unused if b.modified < cutoff]
        removed = _delete(
            ws, old, cutoff=cutoff, grace_hours=grace_hours, actor=actor, progress=progress
        )
    report = [
        UnusedBlob(
            name=b.path.name,
            sha256=b.sha256,
            size=b.size,
            age_hours=max(0.0, (now - b.modified) / 3600),
            deleted=b.path in removed,
        )
        for b in sorted(unused, key=lambda b: b.path.name)
    ]
    gone = [u for u in report if u.deleted]
    model_dir = ws.settings.model_dir
    unfinished = _checkpoint_files(
        ws,
        unfinished_checkpoints(model_dir),
        now=now,
        cutoff=cutoff,
        grace_hours=grace_hours,
        delete=delete,
        actor=actor,
        entity="checkpoints",
    )
    # read before the files: a version stored later renamed a file written moments ago
    registered = _registered_checkpoints(ws)
    orphans = _checkpoint_files(
        ws,
        [p for p in version_checkpoints(model_dir) if _name(p, model_dir) not in registered],
        now=now,
        cutoff=cutoff,
        grace_hours=grace_hours,
        delete=delete,
        actor=actor,
        entity="orphan_checkpoints",
    )
    dropped = [u for u in unfinished if u.deleted]
    gone_orphans = [u for u in orphans if u.deleted]
    return GcReport(
        files=files,
        grace_hours=grace_hours,
        unused=report,
        deleted=len(gone),
        deleted_bytes=sum(u.size for u in gone),
        unfinished=unfinished,
        deleted_checkpoints=len(dropped),
        deleted_checkpoint_bytes=sum(u.size for u in dropped),
        orphans=orphans,
        deleted_orphans=len(gone_orphans),
        deleted_orphan_bytes=sum(u.size for u in gone_orphans),
    )


def _registered_checkpoints(ws: Workspace) -> set[str]:
    """The checkpoint files model versions name, as ``<project>/<file>`` under the model
    folder (`Workspace.checkpoint` reads a row's file there)."""
    with ws.db.session() as s:
        stored = repo.model_checkpoints(s)
    return {Path(*Path(path).parts[-2:]).as_posix() for _, _, path, _ in stored}


def _name(path: Path, model_dir: Path) -> str:
    return path.relative_to(model_dir).as_posix()


def _checkpoint_files(
    ws: Workspace,
    paths: list[Path],
    *,
    now: float,
    cutoff: float,
    grace_hours: float,
    delete: bool,
    actor: str,
    entity: str,
) -> list[CheckpointFile]:
    """The model folder's checkpoint files `paths` that no version names; with `delete`,
    those not written since `cutoff` deleted (looked at again just before), with their
    Grad-CAM pointers, audited under `actor` as `entity`."""
    model_dir = ws.settings.model_dir
    found: list[CheckpointFile] = []
    try:
        for path in paths:
            try:
                stat = path.stat()
                deleted = delete and stat.st_mtime < cutoff and _unlink_if_older(path, cutoff)
            except FileNotFoundError:  # stored (renamed) or deleted meanwhile
                continue
            if deleted:
                shutil.rmtree(gradcam_folder(path), ignore_errors=True)
            age = max(0.0, (now - stat.st_mtime) / 3600)
            found.append(CheckpointFile(_name(path, model_dir), stat.st_size, age, deleted))
    finally:  # what went is audited, even when a deletion fails part way
        gone = [u for u in found if u.deleted]
        if gone:
            with ws.db.session() as s:
                repo.audit(
                    s,
                    actor=actor,
                    action="store.gc",
                    entity=entity,
                    detail={
                        "deleted": len(gone),
                        "bytes": sum(u.size for u in gone),
                        "grace_hours": grace_hours,
                        "files": [u.name for u in gone],
                    },
                )
            logger.info("deleted %d checkpoint files (%s)", len(gone), entity)
    return found


def _unlink_if_older(path: Path, cutoff: float) -> bool:
    """Delete `path` unless written at `cutoff` or later, looked at again now."""
    if path.stat().st_mtime >= cutoff:
        return False
    path.unlink()
    return True


def _delete(
    ws: Workspace,
    old: list[BlobFile],
    *,
    cutoff: float,
    grace_hours: float,
    actor: str,
    progress: Progress,
) -> set[Path]:
    """Delete the `old` unused files still unused since `cutoff`; audit what went, even
    when a deletion fails part way. Returns the paths of the files deleted."""
    removed: list[BlobFile] = []
    try:
        for done, blob in enumerate(old, 1):
            if ws.blobs.remove(blob, unused_since=cutoff):
                removed.append(blob)
            progress("gc: deleting unused blobs", done, len(old))
    finally:
        if removed:
            with ws.db.session() as s:
                repo.audit(
                    s,
                    actor=actor,
                    action="store.gc",
                    entity="blobs",
                    detail={
                        "deleted": len(removed),
                        "bytes": sum(b.size for b in removed),
                        "grace_hours": grace_hours,
                        "sha256": sorted(b.sha256 for b in removed if b.sha256),
                        "unfinished_writes": sum(b.sha256 is None for b in removed),
                    },
                )
            logger.info("deleted %d unused blobs", len(removed))
    return {b.path for b in removed}
