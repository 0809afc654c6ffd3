"""The blob store checked against the database: `verify_blobs` and `collect_garbage`.

Rows name blobs by sha256 (an item's image and DICOM file, a risk model's bundle). A
blob a row names may go missing or be damaged on disk (`verify_blobs` finds them, by
the row); a blob no row names is left by an import that failed or was interrupted
between writing its blobs and committing its rows (`collect_garbage` finds them and,
asked to, deletes those unused for longer than a grace period: an import running now
writes or touches its blobs just before committing them, so they are always younger).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from medloop.exceptions import InvalidInputError
from medloop.store import repository as repo
from medloop.store.blobs import BlobFile, BlobState
from medloop.types import DEFAULT_BLOB_GRACE_HOURS
from medloop.workflows.explain import gradcam_blobs
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
class UnusedBlob:
    """A file of the store no row names: a blob, or (``sha256`` None) the temporary file
    of a write that never finished. ``deleted`` says whether this run removed it."""

    name: str
    sha256: str | None
    size: int
    age_hours: float
    deleted: bool = False


@dataclass(frozen=True)
class GcReport:
    """`files` files in the store; `unused` those no row names, of which the ones older
    than `grace_hours` may go (`deleted` of them did, freeing `deleted_bytes`)."""

    files: int
    grace_hours: float
    unused: list[UnusedBlob]
    deleted: int = 0
    deleted_bytes: int = 0

    @property
    def within_grace(self) -> int:
        return sum(u.age_hours < self.grace_hours for u in self.unused)


def collect_garbage(
    ws: Workspace,
    *,
    grace_hours: float = DEFAULT_BLOB_GRACE_HOURS,
    delete: bool = False,
    actor: str,
    progress: Progress = no_progress,
) -> GcReport:
    """List the blobs no row names (nor a Grad-CAM pointer) and, with `delete`, delete
    those unused for `grace_hours` or more; the deletion is audited under `actor` (one
    entry with the digests). A blob written or stored again since is kept (looked at
    again just before it goes)."""
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
    return GcReport(
        files=files,
        grace_hours=grace_hours,
        unused=report,
        deleted=len(gone),
        deleted_bytes=sum(u.size for u in gone),
    )


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
