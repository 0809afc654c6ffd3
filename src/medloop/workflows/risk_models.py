"""A cohort's risk and treatment-effect model versions: which are in use, since when.

A cohort uses one model for its patients' risk (a survival model or an outcome
classifier) and one for their benefit of treatment (`precision.IN_USE_AS`). A newly
trained version is put in use (`precision.train_risk`, `train_risk_classifier`,
`train_effects`); `use_risk_model` puts an earlier one back (a rollback), audited as
``risk_model.use``. Both audit entries name the version, so `risk_model_history` tells
which was in use at any moment. `delete_risk_model` removes a version's pickled model
(which keeps per-patient rows), audited as ``risk.delete``; its row stays (`versions`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from medloop.exceptions import ConflictError, InvalidInputError, NotFoundError
from medloop.store import erasure
from medloop.store import patients as prepo
from medloop.store import repository as repo
from medloop.store.models import Project, RiskModelVersion
from medloop.workflows.precision import EXPRESSION, IN_USE_AS, _project
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

#: The audit actions that put a risk or effects model version in use.
IN_USE_ACTIONS = ("train_risk", "train_effects", "risk_model.use")


@dataclass(frozen=True)
class RiskModelRow:
    """A risk, effects or expression model version as `medloop risk list` shows it;
    `in_use_as` says what the cohort uses it for ("risk", "effects"; None: nothing)."""

    kind: str
    version: int
    method: str
    in_use_as: str | None
    created_at: datetime
    n_train: int
    features: int
    metrics: dict[str, Any]
    #: patients erased since whose data it was built from (`workflows.erasure`)
    erased_patients: int = 0
    #: when its pickled model was deleted (`delete_risk_model`; None: kept)
    deleted_at: datetime | None = None


def list_risk_models(ws: Workspace, *, project: str) -> list[RiskModelRow]:
    """Every model version of the cohort, by kind and version, marking those in use
    (`metrics` without the calibration points)."""
    with ws.db.session() as s:
        record = _project(s, project, create=False)
        versions = prepo.risk_models(s, project_id=record.id)
    return [
        RiskModelRow(
            kind=v.kind,
            version=v.version,
            method=v.method,
            in_use_as=v.in_use_as,
            created_at=v.created_at,
            n_train=v.n_train,
            features=len(v.features or []),
            metrics={k: m for k, m in (v.metrics or {}).items() if k != "calibration"},
            erased_patients=v.erased_patients,
            deleted_at=v.deleted_at,
        )
        for v in versions
    ]


def use_risk_model(
    ws: Workspace, *, project: str, kind: str, version: int, actor: str
) -> tuple[str, int] | None:
    """Put the cohort's `kind` model version `version` in use (e.g. back to an earlier
    one after a bad retraining): patient pages, `recommend` and `risk predict` use it
    from now on; audited under `actor`. Returns the (kind, version) it replaces as what
    the cohort uses it for (None: none)."""
    if kind not in IN_USE_AS:
        raise InvalidInputError(f"a {kind!r} model is not put in use; kinds: {sorted(IN_USE_AS)}")
    role = IN_USE_AS[kind]
    with ws.db.writing() as s:
        record = _project(s, project, create=False)
        repo.lock_row(s, Project, record.id)  # two switches at once take turns
        chosen = _chosen(s, project=record, kind=kind, version=version)
        check_kept(chosen, name=_name(chosen, project), listing=f"medloop risk list -p {project}")
        before = prepo.risk_model_in_use(s, project_id=record.id, role=role)
        previous = None if before is None else (before.kind, before.version)
        switched = put_in_use(
            s,
            chosen=chosen,
            before=before,
            switch=lambda model: prepo.use_risk_model(s, model=model, role=role),
            actor=actor,
            action="risk_model.use",
            detail={
                "project": record.id,
                "kind": kind,
                "version": version,
                "as": role,
                "previous": None if previous is None else list(previous),
            },
        )
        if not switched:
            return previous
    logger.info(
        "%s model v%d of cohort %d in use as %s (was %s)", kind, version, record.id, role, previous
    )
    return previous


def _chosen(s: Session, *, project: Project, kind: str, version: int) -> RiskModelVersion:
    """The cohort's `kind` model version `version`; NotFoundError listing the others."""
    chosen = prepo.find_risk_model(s, project_id=project.id, kind=kind, version=version)
    if chosen is None:
        numbers = [v.version for v in prepo.risk_models(s, project_id=project.id) if v.kind == kind]
        raise NotFoundError(
            f"cohort {project.name!r} has no {kind} model version {version}; versions: {numbers}"
        )
    return chosen


def _name(version: RiskModelVersion, project: str) -> str:
    return f"{version.kind} model v{version.version} of {project!r}"


def delete_risk_model(
    ws: Workspace, *, project: str, kind: str, version: int, actor: str, dry_run: bool = True
) -> Deletion:
    """Delete the cohort's `kind` model version `version`: its pickled model (which keeps
    per-patient rows, e.g. those of patients erased since) leaves the blob store. Its row
    stays, marked deleted, with its lineage, the recommendations that name it and its
    periods in use; audited under `actor` as ``risk.delete``. Refused for a version in
    use (ConflictError naming one to put in use instead) and for the expression
    transform the cohort's gene features are scaled by. With `dry_run` (the default)
    nothing changes: the result says what would go."""
    started = time.time()
    with ws.db.writing() as s:
        record = _project(s, project, create=False)
        repo.lock_row(s, Project, record.id)  # not while it is put in use
        chosen = _chosen(s, project=record, kind=kind, version=version)
        others = [
            v
            for v in prepo.risk_models(s, project_id=record.id)
            if v.deleted_at is None and v.id != chosen.id
        ]
        name, listing = _name(chosen, project), f"medloop risk list -p {project}"
        newer = [v for v in others if v.kind == kind and v.version > version]
        if kind == EXPRESSION and not newer:
            check_kept(chosen, name=name, listing=listing)
            raise ConflictError(
                f"{name} is the transform the cohort's gene features are scaled by (every "
                "expression import uses it); it keeps no patient's rows, and is not deleted"
            )
        role = chosen.in_use_as
        instead = max(
            (v for v in others if role is not None and IN_USE_AS.get(v.kind) == role),
            key=lambda v: v.created_at,
            default=None,
        )
        check_deletable(
            chosen,
            name=name,
            listing=listing,
            in_use=None if role is None else f" as the cohort's {role} model",
            instead=None
            if instead is None
            else f"medloop risk use -p {project} {instead.kind} {instead.version}",
            train=f"medloop risk train -p {project}",
        )
        blob = chosen.blob_sha256
        mark_deleted(
            s,
            chosen=chosen,
            actor=actor,
            action="risk.delete",
            detail={"project": record.id, "kind": kind, "version": version},
        )
        shared = bool(erasure.blobs_named(s, digests={blob}))
        if dry_run:
            s.rollback()
    removed = not shared and (dry_run or ws.blobs.discard(blob, unused_since=started))
    if not dry_run:
        logger.info("%s model v%d of cohort %d deleted", kind, version, record.id)
    return Deletion(
        project=project,
        version=f"{kind} v{version}",
        deleted=not dry_run,
        blobs=int(removed),
    )


@dataclass(frozen=True)
class RiskInUse:
    """A period in which a model version was in use as `role` (`until` None: it still
    is)."""

    role: str
    kind: str
    version: int
    since: datetime
    until: datetime | None
    by: str
    action: str


def risk_model_history(ws: Workspace, *, project: str) -> list[RiskInUse]:
    """When each model version was put in use, and by whom, oldest first: from the audit
    log's ``train_risk``, ``train_effects`` and ``risk_model.use`` entries (each names
    the version)."""
    with ws.db.session() as s:
        record = _project(s, project, create=False)
        periods = in_use_periods(
            s,
            table=RiskModelVersion,
            project_id=record.id,
            actions=IN_USE_ACTIONS,
            columns=[RiskModelVersion.kind, RiskModelVersion.version],
            where=[RiskModelVersion.kind.in_(list(IN_USE_AS))],
            slot=lambda values: IN_USE_AS[values[0]],
        )
    rows = []
    for p in periods:
        kind, version = p.values
        rows.append(RiskInUse(IN_USE_AS[kind], kind, version, p.since, p.until, p.by, p.action))
    return rows
