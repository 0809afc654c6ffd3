"""A project's model versions: which one is in use, since when, and what it learned from.

A newly trained version is put in use (`loop.train`); `use_model` puts an earlier one
back (a rollback), audited as ``model.use``. Both audit entries name the version, so
`model_history` tells which version was in use at any moment (the one a doctor saw
suggest a diagnosis), and `training_labels` lists the label rows it trained on.
`delete_model` removes a version's checkpoint (e.g. one trained on the images of
patients erased since), audited as ``model.delete``; its row stays (`versions`).
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass
from datetime import datetime

import pandas as pd
from sqlalchemy.orm import Session

from medloop.exceptions import NotFoundError
from medloop.store import repository as repo
from medloop.store.models import ModelVersion, Project
from medloop.workflows.erasure import delete_files
from medloop.workflows.explain import gradcam_folder
from medloop.workflows.versions import (
    Deletion,
    check_deletable,
    check_kept,
    in_use_periods,
    mark_deleted,
    put_in_use,
)
from medloop.workflows.workspace import Workspace

logger = logging.getLogger(__name__)

#: The audit actions that put a model version in use.
IN_USE_ACTIONS = ("model.train", "model.use")


def chosen_version(
    session: Session, *, project: Project, version: int | None, deleted: bool = False
) -> ModelVersion:
    """The project's model version `version`, or (None) the one in use; a deleted one
    (its checkpoint gone) is refused unless `deleted` (its rows are wanted, not its file)."""
    if version is None:
        chosen = repo.current_model_version(session, project_id=project.id)
        if chosen is None:
            raise NotFoundError(f"project {project.name!r} has no trained model yet")
        return chosen
    chosen = repo.find_model_version(session, project_id=project.id, version=version)
    if chosen is None:
        numbers = [v.version for v in repo.model_versions(session, project_id=project.id)]
        raise NotFoundError(
            f"project {project.name!r} has no model version {version}; versions: {numbers}"
        )
    if not deleted:
        check_kept(
            chosen,
            name=f"model version {version} of {project.name!r}",
            listing=f"medloop model list -p {project.name}",
        )
    return chosen


@dataclass(frozen=True)
class ModelRow:
    """A model version as `medloop model list` shows it."""

    version: int
    in_use: bool
    created_at: datetime
    round: int
    n_train: int
    val_auc: float | None
    test_auc: float | None
    seed: int | None
    labels_digest: str | None
    training_labels: int
    #: patients erased since whose images it learned from (`workflows.erasure`)
    erased_patients: int = 0
    #: when its checkpoint was deleted (`delete_model`; None: kept)
    deleted_at: datetime | None = None


def list_models(ws: Workspace, *, project: str) -> list[ModelRow]:
    """Every model version of the project, oldest first, marking the one in use."""
    with ws.db.session() as s:
        record = repo.get_project(s, name=project)
        versions = repo.model_versions(s, project_id=record.id)
        counts = repo.training_label_counts(s, project_id=record.id)
    return [
        ModelRow(
            version=v.version,
            in_use=bool(v.in_use),
            created_at=v.created_at,
            round=v.round,
            n_train=v.n_train,
            val_auc=v.metrics.get("val_auc"),
            test_auc=v.metrics.get("test_auc"),
            seed=v.metrics.get("seed"),
            labels_digest=v.metrics.get("labels_digest"),
            training_labels=counts.get(v.id, 0),
            erased_patients=v.erased_patients,
            deleted_at=v.deleted_at,
        )
        for v in versions
    ]


def use_model(ws: Workspace, *, project: str, version: int, actor: str) -> int | None:
    """Put model version `version` in use (e.g. back to an earlier one after a bad
    retraining), audited under `actor`; returns the version in use before (None: none)."""
    with ws.db.writing() as s:
        record = repo.get_project(s, name=project)
        repo.lock_row(s, Project, record.id)  # two switches at once take turns
        chosen = chosen_version(s, project=record, version=version)
        before = repo.current_model_version(s, project_id=record.id)
        previous = None if before is None else before.version
        switched = put_in_use(
            s,
            chosen=chosen,
            before=before,
            switch=lambda model: repo.use_model_version(s, model_version=model),
            actor=actor,
            action="model.use",
            detail={"project": record.id, "version": version, "previous": previous},
        )
        if not switched:
            return previous
    logger.info("model version %d of project %d in use (was %s)", version, record.id, previous)
    return previous


def delete_model(
    ws: Workspace, *, project: str, version: int, actor: str, dry_run: bool = True
) -> Deletion:
    """Delete model version `version` of `project`: its checkpoint, its Grad-CAM pointers
    (``vN.gradcam/``) with the overlays no other pointer names, and its predictions. Its
    row stays, marked deleted, audited under `actor` as ``model.delete``. The version in
    use is refused (ConflictError naming the one to put in use instead). With `dry_run`
    (the default) nothing changes: the result says what would go."""
    started = time.time()
    with ws.db.writing() as s:
        record = repo.get_project(s, name=project)
        repo.lock_row(s, Project, record.id)  # not while it is put in use
        chosen = chosen_version(s, project=record, version=version, deleted=True)
        kept = [
            v.version
            for v in repo.model_versions(s, project_id=record.id)
            if v.deleted_at is None and v.id != chosen.id
        ]
        check_deletable(
            chosen,
            name=f"model version {version} of {project!r}",
            listing=f"medloop model list -p {project}",
            in_use="" if chosen.in_use else None,
            instead=f"medloop model use -p {project} {kept[-1]}" if kept else None,
            train=f"medloop train -p {project}",
        )
        checkpoint = ws.checkpoint(chosen.checkpoint_path)
        folder = gradcam_folder(checkpoint)
        pointers = sorted(folder.glob("*.sha256")) if folder.is_dir() else []
        overlays = {p.read_text().strip() for p in pointers}
        files = [p for p in (checkpoint, folder) if p.exists()]
        predictions = repo.delete_predictions(s, model_version_id=chosen.id)
        if dry_run:
            s.rollback()
        else:
            mark_deleted(
                s,
                chosen=chosen,
                actor=actor,
                action="model.delete",
                detail={
                    "project": record.id,
                    "version": version,
                    "predictions": predictions,
                    "overlays": len(overlays),
                },
            )
    if not dry_run:
        checkpoint.unlink(missing_ok=True)
        delete_files(ws, overlays, pointers, unused_since=started)
        shutil.rmtree(folder, ignore_errors=True)
        logger.info("model version %d of project %d deleted", version, record.id)
    model_dir = ws.settings.model_dir
    return Deletion(
        project=project,
        version=f"v{version}",
        deleted=not dry_run,
        files=[p.relative_to(model_dir).as_posix() for p in files],
        rows={"predictions": predictions},
        blobs=len(overlays),
    )


@dataclass(frozen=True)
class InUse:
    """A period in which a model version was in use (`until` None: it still is)."""

    version: int
    since: datetime
    until: datetime | None
    by: str
    action: str


def model_history(ws: Workspace, *, project: str) -> list[InUse]:
    """When each model version was put in use, and by whom, oldest first: from the
    audit log's ``model.train`` and ``model.use`` entries (each names the version)."""
    with ws.db.session() as s:
        record = repo.get_project(s, name=project)
        periods = in_use_periods(
            s,
            table=ModelVersion,
            project_id=record.id,
            actions=IN_USE_ACTIONS,
            columns=[ModelVersion.version],
        )
    return [InUse(p.values[0], p.since, p.until, p.by, p.action) for p in periods]


def model_in_use_at(ws: Workspace, *, project: str, at: datetime) -> int | None:
    """The model version in use at `at` (None: no model was yet)."""
    found = [p for p in model_history(ws, project=project) if p.since <= at]
    return found[-1].version if found else None


def training_labels(
    ws: Workspace, *, project: str, version: int | None = None, actor: str
) -> pd.DataFrame:
    """The label rows model version `version` (default: the one in use) learned from and
    was chosen on: one per item, with its class name, who or what gave it and when; the
    read is audited under `actor`. Empty for versions trained before they were recorded
    (migration 0016)."""
    with ws.db.session() as s:
        record = repo.get_project(s, name=project)
        chosen = chosen_version(s, project=record, version=version, deleted=True)
        frame = repo.training_labels_frame(s, model_version_id=chosen.id)
        repo.audit(
            s,
            actor=actor,
            action="model.labels",
            entity="model_version",
            entity_id=chosen.id,
            detail={"project": record.id, "version": chosen.version, "labels": len(frame)},
        )
    classes = [str(c) for c in record.classes]
    frame.insert(
        frame.columns.get_loc("label") + 1, "class", frame["label"].map(classes.__getitem__)
    )
    return frame
