"""SQLAlchemy models: the tables every stage reads and writes.

Labels are stored as integer class indices into `Project.classes`. Patients carry only
pseudonymous ids. The audit log is append-only (database triggers refuse UPDATE and
DELETE; see the first migration).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
    func,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A moment in UTC, read back with its time zone from every database: SQLite keeps
    no zone, so without this a job's `created_at` came back "12:00" from SQLite and
    "12:00+00:00" from PostgreSQL (and from the object just written)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Project(Base):
    __tablename__ = "projects"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    classes: Mapped[list[Any]] = mapped_column(JSON)
    n_channels: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Patient(Base):
    __tablename__ = "patients"
    __table_args__ = (UniqueConstraint("project_id", "pseudonym"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    pseudonym: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Item(Base):
    """One de-identified image. `reference_label` is the dataset's own label, used only
    to simulate annotators and to score; it is never shown to annotators."""

    __tablename__ = "items"
    __table_args__ = (UniqueConstraint("project_id", "source_ref"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    patient_id: Mapped[int | None] = mapped_column(ForeignKey("patients.id"), index=True)
    source_ref: Mapped[str] = mapped_column(String(500))
    image_sha256: Mapped[str] = mapped_column(String(64), index=True)
    dicom_sha256: Mapped[str | None] = mapped_column(String(64))
    split: Mapped[str] = mapped_column(String(10), index=True)
    reference_label: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class User(Base):
    """A person's account or a simulated one. A disabled account cannot sign in; its
    tokens carry `token_epoch` and stop working once it is raised (migration 0013)."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(100), unique=True)
    role: Mapped[str] = mapped_column(String(20))
    password_hash: Mapped[str | None] = mapped_column(String(255))
    is_simulated: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    is_disabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    token_epoch: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class ProjectMember(Base):
    """A person named on a project (migration 0014). A project with members is
    restricted: only they and the admins reach it; one without members is open to every
    account of the right role (`store.members`)."""

    __tablename__ = "project_members"

    project_id: Mapped[int] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


# dr_house and DR_HOUSE would be two doctors nobody tells apart (migration 0011).
Index("uq_users_lower_username", func.lower(User.username), unique=True)


class Task(Base):
    """A request for `required_answers` answers on one item (kind label or review).

    `answer_count` is how many answers it has (kept by `repository.add_answers`)."""

    __tablename__ = "tasks"

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"), index=True)
    kind: Mapped[str] = mapped_column(String(10), default="label")
    round: Mapped[int] = mapped_column(Integer, default=0)
    required_answers: Mapped[int] = mapped_column(Integer, default=3)
    is_gold: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(10), default="open")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    answer_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    answers: Mapped[list[Answer]] = relationship(back_populates="task")


# The order open tasks are handed out in (migration 0006): most answers first, then id.
Index(
    "ix_tasks_queue",
    Task.project_id,
    Task.status,
    Task.kind,
    Task.is_gold,
    Task.answer_count.desc(),
    Task.id,
)


class ModelVersion(Base):
    """A trained image model of a project. `in_use` is True on the one version the
    project uses (review queue, task order, `predict PROJECT`) and NULL on the others
    (migration 0016): a newly trained version becomes current, and `medloop model use`
    makes an earlier one current again. The unique (project_id, in_use) pair keeps one
    version in use per project (NULLs never clash). `erased_patients` counts the patients
    erased since whose images or labels it learned from (migration 0018): retrain it.
    `deleted_at` is when `medloop model delete` removed its checkpoint (migration 0019):
    the row stays, named by answers, labels and the audit log."""

    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("project_id", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    network: Mapped[str] = mapped_column(String(50))
    checkpoint_path: Mapped[str] = mapped_column(String(500))
    n_train: Mapped[int] = mapped_column(Integer)
    round: Mapped[int] = mapped_column(Integer, default=0)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    in_use: Mapped[bool | None] = mapped_column(Boolean)
    erased_patients: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


Index("uq_model_versions_in_use", ModelVersion.project_id, ModelVersion.in_use, unique=True)


class TrainingLabel(Base):
    """A label row a model version learned from or was chosen on (migration 0016): the
    consensus or final label of each training item, and the final labels of validation
    items, as they were when it trained. Labels are appended, never changed, so these
    rows say which labels, by whom and how, trained a version long after newer ones came."""

    __tablename__ = "model_training_labels"

    model_version_id: Mapped[int] = mapped_column(
        ForeignKey("model_versions.id", ondelete="CASCADE"), primary_key=True
    )
    item_label_id: Mapped[int] = mapped_column(
        ForeignKey("item_labels.id", ondelete="CASCADE"), primary_key=True
    )


class Answer(Base):
    """One label given by one person (or model) for one task. Never edited."""

    __tablename__ = "answers"
    __table_args__ = (UniqueConstraint("task_id", "worker_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id"), index=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"), index=True)
    worker_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    label: Mapped[int] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(String(10))
    model_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    task: Mapped[Task] = relationship(back_populates="answers")


class ItemLabel(Base):
    """A consensus (from aggregation) or final (doctor-signed or gold) label, with provenance.

    Rows are appended; the newest row per (item, kind) is the current one.
    """

    __tablename__ = "item_labels"
    __table_args__ = (Index("ix_item_labels_item_kind", "item_id", "kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"))
    kind: Mapped[str] = mapped_column(String(10))
    label: Mapped[int] = mapped_column(Integer)
    confidence: Mapped[float | None] = mapped_column(Float)
    probabilities: Mapped[list[Any] | None] = mapped_column(JSON)
    source: Mapped[str] = mapped_column(String(10))
    method: Mapped[str] = mapped_column(String(50))
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    answer_id: Mapped[int | None] = mapped_column(ForeignKey("answers.id"))
    model_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"))
    round: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Prediction(Base):
    """A model version's class probabilities for one item."""

    __tablename__ = "predictions"
    __table_args__ = (UniqueConstraint("model_version_id", "item_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    model_version_id: Mapped[int] = mapped_column(
        ForeignKey("model_versions.id", ondelete="CASCADE")
    )
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"), index=True)
    label: Mapped[int] = mapped_column(Integer)
    probabilities: Mapped[list[Any]] = mapped_column(JSON)


class AuditEntry(Base):
    """Append-only record of who did what, when. Carries ids, never personal data.

    The database refuses every UPDATE and DELETE but one: an `actor` replaced by the
    pseudonym of a person erased (``erased-<hex>``, nothing else changed; migration 0018).

    The audit page finds people and actions by the start of their name in any case
    (`repository.audit_entries`): indexes on the lower-cased names serve it (migration
    0015), `text_pattern_ops` on PostgreSQL so that a LIKE 'prefix%' can use them
    whatever the database's collation; (action, id) serves exact look-ups of an action.
    """

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_action_id", "action", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(50))
    entity: Mapped[str] = mapped_column(String(50))
    entity_id: Mapped[str | None] = mapped_column(String(100))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


Index(
    "ix_audit_log_lower_actor_id",
    func.lower(AuditEntry.actor).label("lower_actor"),
    AuditEntry.id,
    postgresql_ops={"lower_actor": "text_pattern_ops"},
)
Index(
    "ix_audit_log_lower_action_id",
    func.lower(AuditEntry.action).label("lower_action"),
    AuditEntry.id,
    postgresql_ops={"lower_action": "text_pattern_ops"},
)


# --- precision medicine (migration 0002) -------------------------------------------------


class PatientObservation(Base):
    """One clinical fact about a patient (observation, condition, medication or a
    tabular value), under the patient's pseudonym. Free text is scrubbed before it lands."""

    __tablename__ = "patient_observations"
    __table_args__ = (Index("ix_patient_observations_patient_code", "patient_id", "code"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(20))
    code: Mapped[str | None] = mapped_column(String(100))
    system: Mapped[str | None] = mapped_column(String(200))
    name: Mapped[str | None] = mapped_column(String(200))
    value: Mapped[float | None] = mapped_column(Float)
    value_text: Mapped[str | None] = mapped_column(Text)  # free text (migration 0012)
    unit: Mapped[str | None] = mapped_column(String(50))
    observed_at: Mapped[str | None] = mapped_column(String(40))
    note: Mapped[str | None] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class PatientFeature(Base):
    """The current value of one feature for one patient (the model-ready table)."""

    __tablename__ = "patient_features"
    __table_args__ = (UniqueConstraint("patient_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    value: Mapped[float | None] = mapped_column(Float)
    value_text: Mapped[str | None] = mapped_column(String(500))
    unit: Mapped[str | None] = mapped_column(String(50))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class RiskModelVersion(Base):
    """A trained precision model (survival, classification or treatment effects; or a
    gene-expression transform). `in_use_as` names what a cohort uses it for: "risk" (its
    one survival model or outcome classifier) or "effects"; NULL on the others
    (migration 0017). A newly trained one is put in use, `medloop risk use` puts an
    earlier one back; the unique (project_id, in_use_as) pair keeps one of each.
    `erased_patients` counts the patients erased since whose data it was built from or
    keeps (`RiskModelPatient`; migration 0018): retrain it. `deleted_at` is when
    `medloop risk delete` removed its blob (migration 0019): the row stays, named by
    recommendations, lineage and the audit log."""

    __tablename__ = "risk_model_versions"
    __table_args__ = (UniqueConstraint("project_id", "kind", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(20))
    version: Mapped[int] = mapped_column(Integer)
    method: Mapped[str] = mapped_column(String(50))
    target: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    features: Mapped[list[Any]] = mapped_column(JSON, default=list)
    blob_sha256: Mapped[str] = mapped_column(String(64))
    n_train: Mapped[int] = mapped_column(Integer)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    in_use_as: Mapped[str | None] = mapped_column(String(20))
    erased_patients: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


Index(
    "uq_risk_model_versions_in_use",
    RiskModelVersion.project_id,
    RiskModelVersion.in_use_as,
    unique=True,
)


class RiskModelPatient(Base):
    """A patient a risk, effects or expression model version was built from: one of its
    training rows, or one it keeps a risk interval for (migration 0018). Versions trained
    before have none."""

    __tablename__ = "risk_model_patients"

    risk_model_version_id: Mapped[int] = mapped_column(
        ForeignKey("risk_model_versions.id", ondelete="CASCADE"), primary_key=True
    )
    patient_id: Mapped[int] = mapped_column(
        ForeignKey("patients.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class Recommendation(Base):
    """What the models propose for one patient: risk, benefit with interval, drivers."""

    __tablename__ = "recommendations"

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(
        ForeignKey("patients.id", ondelete="CASCADE"), index=True
    )
    risk_model_id: Mapped[int | None] = mapped_column(ForeignKey("risk_model_versions.id"))
    effect_model_id: Mapped[int | None] = mapped_column(ForeignKey("risk_model_versions.id"))
    risk: Mapped[float | None] = mapped_column(Float)
    benefit: Mapped[float | None] = mapped_column(Float)
    benefit_lower: Mapped[float | None] = mapped_column(Float)
    benefit_upper: Mapped[float | None] = mapped_column(Float)
    recommendation: Mapped[str] = mapped_column(String(50))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class TreatmentDecision(Base):
    """A doctor's decision on a recommendation: accept, or override with a reason."""

    __tablename__ = "treatment_decisions"

    id: Mapped[int] = mapped_column(primary_key=True)
    recommendation_id: Mapped[int] = mapped_column(
        ForeignKey("recommendations.id", ondelete="CASCADE"), index=True
    )
    doctor_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    decision: Mapped[str] = mapped_column(String(10))
    treatment: Mapped[str] = mapped_column(String(100))
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


# --- web (migration 0003) ----------------------------------------------------------------


class AnswerBox(Base):
    """A lesion box drawn with an answer: [x, y, width, height] as fractions of the image."""

    __tablename__ = "answer_boxes"

    id: Mapped[int] = mapped_column(primary_key=True)
    answer_id: Mapped[int] = mapped_column(ForeignKey("answers.id", ondelete="CASCADE"), index=True)
    x: Mapped[float] = mapped_column(Float)
    y: Mapped[float] = mapped_column(Float)
    width: Mapped[float] = mapped_column(Float)
    height: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


# --- background jobs (migration 0004) ----------------------------------------------------


class Job(Base):
    """A piece of background work (e.g. retraining a project's model) and its state.

    `active` is True while the job is queued or running and NULL afterwards; a unique
    index on it lets the database itself refuse a second active job (NULLs never clash,
    on SQLite and PostgreSQL alike).
    """

    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    project_id: Mapped[int | None] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    status: Mapped[str] = mapped_column(String(20), index=True)
    active: Mapped[bool | None] = mapped_column(Boolean, unique=True)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    message: Mapped[str] = mapped_column(String(200), default="")
    requested_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    error: Mapped[str | None] = mapped_column(String(1000))
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)


# --- review flags (migration 0005) -------------------------------------------------------


class ReviewFlag(Base):
    """A doctor's flag on an item in review (e.g. needs a second opinion), with a reason.

    Never a label. `open` is True until the flag is resolved (the item gets its final
    label) and NULL afterwards; the unique (item_id, open) pair keeps one open flag per
    item (NULLs never clash, on SQLite and PostgreSQL alike). The audit log records who
    flagged and resolved what; this table makes the current state cheap to query.
    """

    __tablename__ = "review_flags"
    __table_args__ = (UniqueConstraint("item_id", "open"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"), index=True)
    reason: Mapped[str] = mapped_column(String(200))
    flagged_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    open: Mapped[bool | None] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    resolved_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


# --- the annotators' queue across server processes (migration 0007) ----------------------


class TaskHold(Base):
    """The task a person was handed last and has not answered or skipped yet (at most one
    per person): the only task they may answer. It keeps a place on the task for them
    until `expires_at` (Unix seconds); after that others may take the place, and they may
    still answer while the task is open. Kept in the database so that every server
    process sees every hold."""

    __tablename__ = "task_holds"

    worker_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"), index=True)
    expires_at: Mapped[float] = mapped_column(Float)


class LoginFailure(Base):
    """A failed sign-in, kept in the database so that every server process counts it and
    a restart does not lift a lock-out. `key` is a keyed digest of (username, client),
    never the name or the address; `failed_at` is in Unix seconds."""

    __tablename__ = "login_failures"
    __table_args__ = (Index("ix_login_failures_key_failed_at", "key", "failed_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(64))
    failed_at: Mapped[float] = mapped_column(Float, index=True)


class RevokedToken(Base):
    """A signed token ended before its expiry (a session signed out): `digest` is a keyed
    digest of the token's signature, never the token; the row can go once `expires_at`
    (Unix seconds, the token's own expiry) has passed."""

    __tablename__ = "revoked_tokens"

    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[float] = mapped_column(Float, index=True)


class TaskSkip(Base):
    """A task a person skipped or was unsure about: it is not offered to them again."""

    __tablename__ = "task_skips"

    worker_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    task_id: Mapped[int] = mapped_column(
        ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True
    )
    reason: Mapped[str] = mapped_column(String(10))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
