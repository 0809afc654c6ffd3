"""Erasing a patient at their request (GDPR art. 17, or a research consent withdrawn):
`erase_patient` (`medloop patients erase`). A lay annotator who leaves is erased by
`accounts.erase_user`.

What goes is listed in `store.erasure`: the patient's rows, in one transaction, then
the image, DICOM and Grad-CAM overlay files no other row names. A dry run does all of
it inside the transaction and rolls it back, so it reports exactly what would go. Model
versions that learned from the patient are kept but marked (`erased_patients`, shown by
`model list`, `risk list` and to doctors): retrain them. What medloop cannot reach is
reported, not pretended away: exports written since the patient's data arrived, the same
pseudonym in other projects, and backups. The audit entry ``patient.erased`` keeps the
pseudonym (already in earlier entries), counts, the reason and who asked; no other data.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.orm import Session

from medloop.exceptions import InvalidInputError, NotFoundError
from medloop.ingest import pseudonymize
from medloop.store import erasure
from medloop.store import patients as prepo
from medloop.store import repository as repo
from medloop.store.models import Patient, Project
from medloop.workflows.explain import gradcam_blobs, gradcam_pointers
from medloop.workflows.workspace import Workspace

logger = logging.getLogger(__name__)

#: The longest reason kept with an erasure.
MAX_REASON = 500


@dataclass(frozen=True)
class PatientErasure:
    """What erasing a patient removes (`erased` False: a dry run, nothing removed).

    `rows`: what -> number of rows; `blobs`: the files of their images (and Grad-CAM
    overlays) no other row names, deleted after the commit (`blobs_kept`: of those, the
    ones stored again meanwhile, left for `medloop store gc`); `shared_blobs`: files
    other rows name too, kept. `image_models` (versions) and `risk_models` ("survival
    v2") are the model versions marked as built from the patient's data; `exports` counts
    the exports of the project since the patient's data arrived; `other_projects` hold
    the same pseudonym."""

    project: str
    pseudonym: str
    erased: bool
    rows: dict[str, int]
    blobs: int
    shared_blobs: int
    image_models: list[int] = field(default_factory=list)
    risk_models: list[str] = field(default_factory=list)
    exports: int = 0
    other_projects: list[str] = field(default_factory=list)
    blobs_kept: int = 0


def erase_patient(
    ws: Workspace,
    *,
    project: str,
    patient: str,
    reason: str,
    actor: str,
    dry_run: bool = True,
) -> PatientErasure:
    """Erase `patient` (their pseudonym or raw id) from `project`: every row of theirs
    in one transaction, audited as ``patient.erased`` under `actor` with `reason`, then
    their files no other row names. With `dry_run` (the default) nothing changes: the
    result says what would go. NotFoundError for a patient the project does not hold."""
    text = reason.strip()
    if not text:
        raise InvalidInputError("give the reason for the erasure (e.g. 'consent withdrawn')")
    if len(text) > MAX_REASON:
        raise InvalidInputError(f"the reason must be at most {MAX_REASON} characters")
    started = time.time()
    with ws.db.session() as s:
        record = repo.get_project(s, name=project)
        project_id = record.id
        repo.lock_row(s, Project, project_id)  # one erasure or model switch at a time
        found = _patient(s, ws, record, patient)
        pseudonym, since = found.pseudonym, found.created_at
        exports = erasure.exports_since(s, project_id=project_id, since=since)
        others = erasure.projects_with_pseudonym(s, pseudonym=pseudonym, other_than=project_id)
        versions = repo.model_versions(s, project_id=project_id)
        checkpoints = [ws.checkpoint(v.checkpoint_path) for v in versions]
        gone = erasure.erase_patient_rows(s, patient=found)
        pointers = [p for c in checkpoints for p in gradcam_pointers(c, item_ids=gone.items)]
        overlays = {p.read_text().strip() for p in pointers}
        shared = erasure.blobs_named(s, digests=gone.blobs)
        risk_models = [f"{kind} v{version}" for kind, version in gone.risk_models]
        blobs = (gone.blobs - shared) | overlays
        if dry_run:
            s.rollback()
        else:
            repo.audit(
                s,
                actor=actor,
                action=erasure.ERASED,
                entity="patient",
                entity_id=pseudonym,
                detail={
                    "project": project_id,
                    "reason": text,
                    "rows": {k: n for k, n in gone.rows.items() if n},
                    "blobs": len(blobs),
                    "image_models": gone.image_models,
                    "risk_models": risk_models,
                },
            )
    kept = 0 if dry_run else delete_files(ws, blobs, pointers, unused_since=started)
    result = PatientErasure(
        project=project,
        pseudonym=pseudonym,
        erased=not dry_run,
        rows=gone.rows,
        blobs=len(blobs),
        shared_blobs=len(gone.blobs & shared),
        image_models=gone.image_models,
        risk_models=risk_models,
        exports=exports,
        other_projects=others,
        blobs_kept=kept,
    )
    if not dry_run:
        logger.info(
            "erased a patient of project %d: %d rows, %d files; %d models marked",
            project_id,
            sum(gone.rows.values()),
            len(blobs) - kept,
            len(gone.image_models) + len(gone.risk_models),
        )
    return result


def _patient(s: Session, ws: Workspace, project: Project, patient: str) -> Patient:
    """The project's patient `patient`, given by pseudonym or raw id."""
    for candidate in (patient, pseudonymize(patient, key=ws.settings.resolved_secret_key)):
        try:
            return prepo.get_patient(s, project_id=project.id, pseudonym=candidate)
        except NotFoundError:
            continue
    raise NotFoundError(
        f"no patient {patient!r} in project {project.name!r} (give the pseudonym or the id "
        "it was imported under); nothing was erased"
    )


def delete_files(
    ws: Workspace, blobs: set[str], pointers: list[Path], *, unused_since: float
) -> int:
    """Delete the Grad-CAM `pointers`, then those of `blobs` no row or other pointer
    names now and nobody stored again since `unused_since`; returns how many were kept.
    (Also what `models.delete_model` removes a deleted version's overlays with.)"""
    for pointer in pointers:
        pointer.unlink(missing_ok=True)
    with ws.db.session() as s:
        named = erasure.blobs_named(s, digests=blobs)
    named |= gradcam_blobs(ws) & blobs
    kept = len(named)
    for sha in sorted(blobs - named):
        if not ws.blobs.discard(sha, unused_since=unused_since) and ws.blobs.exists(sha):
            kept += 1
    if kept:
        logger.warning("%d files to delete are named again; kept", kept)
    return kept
