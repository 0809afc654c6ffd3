"""What image models (`workflows.models`) and a cohort's risk and effects models
(`workflows.risk_models`) share: a version put in use, audited, and the history of it.

Each table has one version in use at a time, per slot (an image project's model; a
cohort's risk model and its effects model). Training puts its new version in use and a
rollback an earlier one; both audit entries name the version's row, so the audit log
tells which version was in use at any moment (`in_use_periods`).

A version not in use can be deleted (`check_deletable`, `mark_deleted`): its file goes
(a checkpoint, a pickled bundle that keeps per-patient rows), its row stays, marked
`deleted_at`, since answers, labels, recommendations, lineage and the audit log name it
and its periods in use stay part of the history. A deleted version is never put in use
again (`check_kept`) and its number is never given again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, String, cast, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from medloop.exceptions import ConflictError
from medloop.store import repository as repo
from medloop.store.models import AuditEntry, ModelVersion, RiskModelVersion, utcnow

Version = TypeVar("Version", ModelVersion, RiskModelVersion)

#: The audit log's entity of each table's rows.
ENTITY: dict[type, str] = {ModelVersion: "model_version", RiskModelVersion: "risk_model"}


def put_in_use(
    session: Session,
    *,
    chosen: Version,
    before: Version | None,
    switch: Callable[[Version], None],
    actor: str,
    action: str,
    detail: dict[str, Any],
) -> bool:
    """Put `chosen` in use (`switch`) in place of `before`, audited as `action` under
    `actor` with `detail`; False (nothing done) where `chosen` is in use already. The
    caller locks the project's row first, so two switches at once take turns, and
    refuses a deleted version (`check_kept`)."""
    if before is not None and before.id == chosen.id:
        return False
    switch(chosen)
    repo.audit(
        session,
        actor=actor,
        action=action,
        entity=ENTITY[type(chosen)],
        entity_id=chosen.id,
        detail=detail,
    )
    return True


@dataclass(frozen=True)
class Period:
    """A period in which a version was in use (`until` None: it still is): put in use
    by `by` through the audited `action`; `values` are the version's columns asked for."""

    since: datetime
    until: datetime | None
    by: str
    action: str
    values: tuple[Any, ...]


def in_use_periods(
    session: Session,
    *,
    table: type[ModelVersion] | type[RiskModelVersion],
    project_id: int,
    actions: Sequence[str],
    columns: Sequence[InstrumentedAttribute[Any]],
    where: Sequence[ColumnElement[bool]] = (),
    slot: Callable[[tuple[Any, ...]], object] = lambda _: None,
) -> list[Period]:
    """When each of the project's versions in `table` was put in use, oldest first, from
    the audit log's `actions` entries on them (with the version's `columns`). A period
    lasts until the next one of the same `slot` (of the columns' values) begins."""
    rows = session.execute(
        select(AuditEntry.at, AuditEntry.actor, AuditEntry.action, *columns)
        .join(table, AuditEntry.entity_id == cast(table.id, String))
        .where(
            AuditEntry.action.in_(actions),
            AuditEntry.entity == ENTITY[table],
            table.project_id == project_id,
            *where,
        )
        .order_by(AuditEntry.id)
    ).all()
    periods: list[Period] = []
    next_start: dict[object, datetime] = {}  # by slot, walking back from the newest
    for at, actor, action, *values in reversed(rows):
        own = slot(tuple(values))
        periods.append(Period(at, next_start.get(own), actor, action, tuple(values)))
        next_start[own] = at
    return periods[::-1]


def check_kept(chosen: ModelVersion | RiskModelVersion, *, name: str, listing: str) -> None:
    """Refuse `chosen` (`name`: "model version 3 of 'chest'") once deleted: its file is
    gone; `listing` is the command that lists the versions kept."""
    if chosen.deleted_at is not None:
        raise ConflictError(
            f"{name} was deleted on {chosen.deleted_at:%Y-%m-%d %H:%M} UTC (its file is "
            f"gone); choose a version kept ({listing})"
        )


def check_deletable(
    chosen: ModelVersion | RiskModelVersion,
    *,
    name: str,
    listing: str,
    in_use: str | None,
    instead: str | None,
    train: str,
) -> None:
    """Refuse to delete `chosen` (`name`) when it is deleted already or in use
    (`in_use`: what it is in use as, "" for the project's one model; None: not in use),
    naming the command that puts `instead` in use first or, with none kept, the one that
    trains a new version (`train`)."""
    check_kept(chosen, name=name, listing=listing)
    if in_use is None:
        return
    remedy = (
        f"put another version in use first ({instead})"
        if instead
        else f"no other version is kept: train a new one first ({train})"
    )
    raise ConflictError(f"{name} is in use{in_use}; {remedy}, then delete it")


@dataclass(frozen=True)
class Deletion:
    """What deleting a model version removes (`deleted` False: a dry run, nothing
    removed): `files` (under the home's model folder), `rows` (what -> how many) and
    `blobs`, the files of the blob store that go with it (Grad-CAM overlays, a pickled
    model; one another row or pointer names stays). The version's row stays, marked
    deleted (module docstring)."""

    project: str
    version: str
    deleted: bool
    files: list[str] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)
    blobs: int = 0


def mark_deleted(
    session: Session,
    *,
    chosen: ModelVersion | RiskModelVersion,
    actor: str,
    action: str,
    detail: dict[str, Any],
) -> None:
    """Mark `chosen` deleted now, audited as `action` under `actor` with `detail`; the
    caller locks the project's row first and removes the file once committed."""
    chosen.deleted_at = utcnow()
    repo.audit(
        session,
        actor=actor,
        action=action,
        entity=ENTITY[type(chosen)],
        entity_id=chosen.id,
        detail=detail,
    )
