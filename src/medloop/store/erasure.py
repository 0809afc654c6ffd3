"""Erasure at a person's request: the rows a patient's data lives in, deleted, and the
places a person's username appears, given a pseudonym. Keyword-only, session first, like
`repository`; `workflows.erasure` and `workflows.accounts` call them in one transaction.

A patient of a project is: the patient row; their clinical facts and feature values;
the recommendations made for them and the doctors' decisions on those; their images
(items, with the image and DICOM blobs the workflow deletes after the commit) and
everything on those items: tasks, answers (with their lesion boxes), consensus and
final labels, model predictions, review flags, task holds and skips. Model versions
are not deleted: those that learned from the patient are marked (`erased_patients`).

An erased patient stays erased: the ``patient.erased`` audit entries are the record of
whom a project lost consent for (`erased_pseudonyms`), and every import into the project
leaves those patients out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import String, cast, delete, exists, func, or_, select, update
from sqlalchemy.orm import Session

from medloop.store.models import (
    Answer,
    AnswerBox,
    AuditEntry,
    Item,
    ItemLabel,
    Job,
    ModelVersion,
    Patient,
    PatientFeature,
    PatientObservation,
    Prediction,
    Project,
    ProjectMember,
    Recommendation,
    ReviewFlag,
    RiskModelPatient,
    RiskModelVersion,
    Task,
    TaskHold,
    TaskSkip,
    TrainingLabel,
    TreatmentDecision,
    User,
)
from medloop.store.repository import lock_row

#: The audit action that records a patient's erasure (entity "patient", the pseudonym).
ERASED = "patient.erased"

#: The audit actions that wrote a project's data out of medloop (CSV, COCO, the labels a
#: model learned from): files nobody can erase from here.
EXPORT_ACTIONS = ("export.", "model.labels")


@dataclass(frozen=True)
class ErasedPatient:
    """What `erase_patient_rows` deleted (`rows`: what -> number of rows, in the order
    deleted), the items it deleted, the blobs those named, and the model versions marked
    as built from the patient's data: image models by version, risk models by (kind,
    version)."""

    rows: dict[str, int]
    items: list[int]
    blobs: set[str]
    image_models: list[int]
    risk_models: list[tuple[str, int]]


def erase_patient_rows(session: Session, *, patient: Patient) -> ErasedPatient:
    """Mark the model versions built from `patient`'s data (`models_built_from`), then
    delete every row of theirs (module docstring), dependents first."""
    items = select(Item.id).where(Item.patient_id == patient.id)
    item_ids = list(session.scalars(items.order_by(Item.id)))
    blobs: set[str] = set()
    for image, dicom in session.execute(
        select(Item.image_sha256, Item.dicom_sha256).where(Item.patient_id == patient.id)
    ):
        blobs |= {image} | ({dicom} if dicom else set())
    image_models, risk_models = models_built_from(session, patient=patient)
    for model, ids in ((ModelVersion, image_models), (RiskModelVersion, risk_models)):
        if ids:
            session.execute(
                update(model)
                .where(model.id.in_(ids))
                .values(erased_patients=model.erased_patients + 1),
                execution_options={"synchronize_session": False},
            )
    tasks = select(Task.id).where(Task.item_id.in_(items))
    answers = select(Answer.id).where(or_(Answer.item_id.in_(items), Answer.task_id.in_(tasks)))
    labels = select(ItemLabel.id).where(ItemLabel.item_id.in_(items))
    recommendations = select(Recommendation.id).where(Recommendation.patient_id == patient.id)
    steps: list[tuple[str, Any]] = [
        (
            "training label links",
            delete(TrainingLabel).where(TrainingLabel.item_label_id.in_(labels)),
        ),
        ("predictions", delete(Prediction).where(Prediction.item_id.in_(items))),
        ("review flags", delete(ReviewFlag).where(ReviewFlag.item_id.in_(items))),
        ("item labels", delete(ItemLabel).where(ItemLabel.item_id.in_(items))),
        ("answer boxes", delete(AnswerBox).where(AnswerBox.answer_id.in_(answers))),
        ("answers", delete(Answer).where(Answer.id.in_(answers))),
        ("task holds", delete(TaskHold).where(TaskHold.task_id.in_(tasks))),
        ("task skips", delete(TaskSkip).where(TaskSkip.task_id.in_(tasks))),
        ("tasks", delete(Task).where(Task.item_id.in_(items))),
        ("images", delete(Item).where(Item.patient_id == patient.id)),
        (
            "treatment decisions",
            delete(TreatmentDecision).where(
                TreatmentDecision.recommendation_id.in_(recommendations)
            ),
        ),
        ("recommendations", delete(Recommendation).where(Recommendation.patient_id == patient.id)),
        ("facts", delete(PatientObservation).where(PatientObservation.patient_id == patient.id)),
        ("feature values", delete(PatientFeature).where(PatientFeature.patient_id == patient.id)),
        (
            "model lineage links",
            delete(RiskModelPatient).where(RiskModelPatient.patient_id == patient.id),
        ),
        ("patient", delete(Patient).where(Patient.id == patient.id)),
    ]
    rows = {}
    for what, statement in steps:
        result: Any = session.execute(statement, execution_options={"synchronize_session": False})
        rows[what] = int(result.rowcount or 0)
    image_versions = session.scalars(
        select(ModelVersion.version)
        .where(ModelVersion.id.in_(image_models))
        .order_by(ModelVersion.version)
    )
    risk_versions = session.execute(
        select(RiskModelVersion.kind, RiskModelVersion.version)
        .where(RiskModelVersion.id.in_(risk_models))
        .order_by(RiskModelVersion.kind, RiskModelVersion.version)
    )
    return ErasedPatient(
        rows=rows,
        items=item_ids,
        blobs=blobs,
        image_models=list(image_versions),
        risk_models=[(str(kind), int(version)) for kind, version in risk_versions],
    )


def models_built_from(session: Session, *, patient: Patient) -> tuple[list[int], list[int]]:
    """Ids of the image model versions and of the risk, effects and expression model
    versions built from `patient`'s data. An image model learned from the patient when
    one of its training label rows (`TrainingLabel`) is on their images; one trained
    before those rows were kept (migration 0016), when a label on their images existed
    as it was trained. A risk model, when its lineage (`RiskModelPatient`) names them;
    one trained before lineage was kept (migration 0018), when the patient was in the
    cohort as it was trained."""
    items = select(Item.id).where(Item.patient_id == patient.id)
    labels = select(ItemLabel.id).where(ItemLabel.item_id.in_(items))
    recorded = select(TrainingLabel.model_version_id).where(TrainingLabel.item_label_id.in_(labels))
    first_label = session.scalar(
        select(func.min(ItemLabel.created_at)).where(ItemLabel.item_id.in_(items))
    )
    image = set(session.scalars(recorded.distinct()))
    if first_label is not None:
        unrecorded = select(ModelVersion.id).where(
            ModelVersion.project_id == patient.project_id,
            ModelVersion.created_at >= first_label,
            ~exists().where(TrainingLabel.model_version_id == ModelVersion.id),
        )
        image |= set(session.scalars(unrecorded))
    lineage = select(RiskModelPatient.risk_model_version_id).where(
        RiskModelPatient.patient_id == patient.id
    )
    risk = set(session.scalars(lineage))
    before_lineage = select(RiskModelVersion.id).where(
        RiskModelVersion.project_id == patient.project_id,
        RiskModelVersion.created_at >= patient.created_at,
        ~exists().where(RiskModelPatient.risk_model_version_id == RiskModelVersion.id),
    )
    risk |= set(session.scalars(before_lineage))
    return sorted(image), sorted(risk)


def erased_pseudonyms(session: Session, *, project_id: int, lock: bool = False) -> set[str]:
    """The pseudonyms of the patients erased from the project (their ``patient.erased``
    audit entries): consent withdrawn, so no import brings them back. Erasures are rare,
    so all of them are read (by the (action, id) index) and kept to the project's here.

    With `lock`, the project's row is held first until the transaction ends, as an
    erasure holds it: an erasure is then either committed, and its patient in the set,
    or waits for the caller's import to commit, and erases what it brought."""
    if lock:
        lock_row(session, Project, project_id)
    query = select(AuditEntry.entity_id, AuditEntry.detail).where(
        AuditEntry.action == ERASED, AuditEntry.entity == "patient"
    )
    return {
        str(pseudonym)
        for pseudonym, detail in session.execute(query)
        if pseudonym and (detail or {}).get("project") == project_id
    }


def blobs_named(session: Session, *, digests: set[str]) -> set[str]:
    """Those of `digests` a row names: an item's image or DICOM file, a risk model kept
    (not deleted)."""
    wanted = sorted(digests)
    if not wanted:
        return set()
    named = set(session.scalars(select(Item.image_sha256).where(Item.image_sha256.in_(wanted))))
    named |= set(session.scalars(select(Item.dicom_sha256).where(Item.dicom_sha256.in_(wanted))))
    query = select(RiskModelVersion.blob_sha256).where(
        RiskModelVersion.blob_sha256.in_(wanted), RiskModelVersion.deleted_at.is_(None)
    )
    return named | set(session.scalars(query))


def exports_since(session: Session, *, project_id: int, since: datetime) -> int:
    """How many times the project's data was written out of medloop (`EXPORT_ACTIONS`)
    at `since` or later, by the audit log."""
    models = select(cast(ModelVersion.id, String)).where(ModelVersion.project_id == project_id)
    query = select(func.count(AuditEntry.id)).where(
        AuditEntry.at >= since,
        or_(
            (AuditEntry.action.like(EXPORT_ACTIONS[0] + "%"))
            & (AuditEntry.entity == "project")
            & (AuditEntry.entity_id == str(project_id)),
            (AuditEntry.action == EXPORT_ACTIONS[1]) & AuditEntry.entity_id.in_(models),
        ),
    )
    return int(session.scalar(query) or 0)


def projects_with_pseudonym(session: Session, *, pseudonym: str, other_than: int) -> list[str]:
    """The names of the projects but `other_than` that hold a patient `pseudonym` (the
    same person: pseudonyms are keyed the same in every project)."""
    query = (
        select(Project.name)
        .join(Patient, Patient.project_id == Project.id)
        .where(Patient.pseudonym == pseudonym, Project.id != other_than)
        .order_by(Project.name)
    )
    return list(session.scalars(query))


@dataclass(frozen=True)
class RenamedUser:
    """Where `pseudonymise_user` put the pseudonym (`audit_entries`, `jobs`), what it
    removed (`memberships`, `holds`, `skips`), and the `answers` the account keeps."""

    audit_entries: int
    jobs: int
    memberships: int
    holds: int
    skips: int
    answers: int


def pseudonymise_user(session: Session, *, user: User, pseudonym: str) -> RenamedUser:
    """Give `user` the name `pseudonym` everywhere it is named (the account, the audit
    log's actor, the jobs it asked for), and take the account off its projects, its held
    task and its skips; its answers stay, under the account, for aggregation."""
    old = user.username.lower()
    counts = []
    for statement in (
        update(AuditEntry).where(func.lower(AuditEntry.actor) == old).values(actor=pseudonym),
        update(Job).where(func.lower(Job.requested_by) == old).values(requested_by=pseudonym),
        delete(ProjectMember).where(ProjectMember.user_id == user.id),
        delete(TaskHold).where(TaskHold.worker_id == user.id),
        delete(TaskSkip).where(TaskSkip.worker_id == user.id),
    ):
        result: Any = session.execute(statement, execution_options={"synchronize_session": False})
        counts.append(int(result.rowcount or 0))
    answers = session.scalar(select(func.count(Answer.id)).where(Answer.worker_id == user.id))
    user.username = pseudonym
    session.flush()
    audit_entries, jobs, memberships, holds, skips = counts
    return RenamedUser(audit_entries, jobs, memberships, holds, skips, int(answers or 0))
