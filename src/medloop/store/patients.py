"""Repository functions for precision medicine: patient facts and features, risk model
versions, recommendations and doctors' decisions. Keyword-only, session first; patients
are addressed by pseudonym within a project."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.orm import Session

from medloop.exceptions import InvalidInputError, NotFoundError
from medloop.store import repository
from medloop.store.db import check_lengths, chunks, select_frame
from medloop.store.models import (
    Patient,
    PatientFeature,
    PatientObservation,
    Recommendation,
    RiskModelPatient,
    RiskModelVersion,
    TreatmentDecision,
    User,
)

OBSERVATION_KINDS = ("observation", "condition", "medication", "tabular")
DECISIONS = ("accept", "override")


def count_patients(session: Session, *, project_id: int) -> int:
    """Patients of the project (the rows `features_frame` has)."""
    query = select(func.count(Patient.id)).where(Patient.project_id == project_id)
    return int(session.scalar(query) or 0)


def get_patient(session: Session, *, project_id: int, pseudonym: str) -> Patient:
    patient = session.scalar(
        select(Patient).where(Patient.project_id == project_id, Patient.pseudonym == pseudonym)
    )
    if patient is None:
        raise NotFoundError(f"no patient {pseudonym!r} in this project")
    return patient


def _clean(value: Any) -> Any:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if value is pd.NA or value is pd.NaT:
        return None
    return value


def _split_value(value: Any) -> tuple[float | None, str | None]:
    value = _clean(value)
    if value is None:
        return None, None
    if isinstance(value, bool | np.bool_):
        return float(value), None
    if isinstance(value, int | float | np.integer | np.floating):
        return float(value), None
    return None, str(value)


#: What makes two stored facts one: everything a fact says but where it came from.
_FACT_KEY = ("patient_id", "kind", "code", "system", "name", "value", "value_text", "unit",
             "observed_at", "note")  # fmt: skip


def add_observations(
    session: Session, *, project_id: int, frame: pd.DataFrame, kind: str, source: str
) -> int:
    """Add long facts (columns patient, code, system, name, value, unit, time, note;
    missing columns are stored as empty) that are not stored yet: a fact the project
    holds already, the same in every column (`_FACT_KEY`) from whichever file, is not
    added again (one `frame` holds n times is stored n times in all), so an import run
    twice, or exports that overlap, store each fact once.
    Returns the number of rows added."""
    if kind not in OBSERVATION_KINDS:
        raise InvalidInputError(f"unknown observation kind {kind!r}; one of {OBSERVATION_KINDS}")
    if "patient" not in frame.columns:
        raise InvalidInputError("observations need a 'patient' column (the pseudonym)")
    ids = repository.ensure_patients(session, project_id=project_id, pseudonyms=frame["patient"])
    stored = session.execute(
        select(*(getattr(PatientObservation, c) for c in _FACT_KEY)).where(
            PatientObservation.patient_id.in_(set(ids.values())), PatientObservation.kind == kind
        )
    )
    known = Counter(tuple(row) for row in stored)
    rows = []
    for record in frame.to_dict(orient="records"):
        value, text = _split_value(record.get("value"))
        time = _clean(record.get("time", record.get("onset", record.get("start"))))
        row = {
            "patient_id": ids[str(record["patient"])],
            "kind": kind,
            "code": _clean(record.get("code")),
            "system": _clean(record.get("system")),
            "name": _clean(record.get("name")),
            "value": value,
            "value_text": text,
            "unit": _clean(record.get("unit")),
            "observed_at": None if time is None else str(time)[:40],
            "note": _clean(record.get("note")),
        }
        fact = tuple(row[c] for c in _FACT_KEY)
        if known[fact]:
            known[fact] -= 1  # stored already
        else:
            rows.append({**row, "source": source[:200]})
    if rows:
        check_lengths(PatientObservation, rows)
        session.execute(insert(PatientObservation), rows)
    return len(rows)


def observations_frame(
    session: Session,
    *,
    project_id: int,
    pseudonym: str | None = None,
    pseudonyms: Iterable[str] | None = None,
    kind: str | None = None,
) -> pd.DataFrame:
    """Stored facts as a long frame (patient is the pseudonym): of one patient, of
    `pseudonyms`, or of all, and of one `kind` or all."""
    query = (
        select(
            Patient.pseudonym,
            PatientObservation.kind,
            PatientObservation.code,
            PatientObservation.system,
            PatientObservation.name,
            PatientObservation.value,
            PatientObservation.value_text,
            PatientObservation.unit,
            PatientObservation.observed_at,
            PatientObservation.note,
        )
        .join(Patient, Patient.id == PatientObservation.patient_id)
        .where(Patient.project_id == project_id)
        .order_by(PatientObservation.id)
    )
    if pseudonym is not None:
        query = query.where(Patient.pseudonym == pseudonym)
    if pseudonyms is not None:
        query = query.where(Patient.pseudonym.in_([str(p) for p in pseudonyms]))
    if kind is not None:
        query = query.where(PatientObservation.kind == kind)
    columns = [
        "patient",
        "kind",
        "code",
        "system",
        "name",
        "value",
        "value_text",
        "unit",
        "time",
        "note",
    ]
    return select_frame(session, query, columns)


def upsert_features(
    session: Session,
    *,
    project_id: int,
    frame: pd.DataFrame,
    units: Mapping[str, str] | None = None,
) -> int:
    """Store a wide frame (index pseudonym, one column per feature) as current values,
    replacing earlier values of the same features. Returns the number of values.

    A feature has one unit in a project: a unit that differs from the one the project's
    other patients' values are in is refused (they would be mixed, 150 ages in years and
    20 in months, under one unit); a feature given no unit keeps the one it has."""
    units = dict(units or {})
    ids = repository.ensure_patients(session, project_id=project_id, pseudonyms=frame.index)
    names = [str(c) for c in frame.columns]
    if not names or frame.empty:
        return 0
    patient_ids = [ids[str(p)] for p in frame.index]
    in_project = (Patient.id == PatientFeature.patient_id) & (Patient.project_id == project_id)
    stored = session.execute(
        select(PatientFeature.name, PatientFeature.unit)
        .distinct()
        .join(Patient, in_project)
        .where(PatientFeature.name.in_(names), PatientFeature.unit.is_not(None))
    ).all()
    for name, unit in stored:
        given = units.setdefault(name, str(unit))
        if given == unit:
            continue
        holders = session.scalars(
            select(PatientFeature.patient_id)
            .join(Patient, in_project)
            .where(PatientFeature.name == name, PatientFeature.unit == unit)
        )
        if set(holders) - set(patient_ids):  # not all of them are imported again now
            raise InvalidInputError(
                f"feature {name!r} is in {unit!r} for patients already imported, and this "
                f"import gives {given!r}: convert the values (or import every patient again "
                f"with --unit {name}={given})"
            )
    session.execute(
        delete(PatientFeature).where(
            PatientFeature.patient_id.in_(patient_ids), PatientFeature.name.in_(names)
        )
    )
    rows = []
    for pseudonym, record in zip(frame.index, frame.to_dict(orient="records"), strict=True):
        for name, raw in record.items():
            value, text = _split_value(raw)
            if value is None and text is None:
                continue
            rows.append(
                {
                    "patient_id": ids[str(pseudonym)],
                    "name": str(name),
                    "value": value,
                    "value_text": text,
                    "unit": units.get(str(name)),
                }
            )
    if rows:
        check_lengths(PatientFeature, rows)
        session.execute(insert(PatientFeature), rows)
    return len(rows)


def feature_state(session: Session, *, project_id: int) -> tuple[int, int]:
    """(number, newest id) of the project's feature values: it changes whenever a value
    does, since `upsert_features` replaces values by deleting and inserting rows."""
    count, newest = session.execute(
        select(func.count(PatientFeature.id), func.max(PatientFeature.id))
        .join(Patient, Patient.id == PatientFeature.patient_id)
        .where(Patient.project_id == project_id)
    ).one()
    return int(count), int(newest or 0)


def features_frame(
    session: Session, *, project_id: int, pseudonyms: Iterable[str] | None = None
) -> pd.DataFrame:
    """Current feature values: index pseudonym (every patient of the project, or those of
    `pseudonyms` it has, a patient without any value too: their gaps count as missing),
    one column per feature (numbers as floats, text as strings; absent values NaN)."""
    patients = select(Patient.pseudonym).where(Patient.project_id == project_id)
    query = (
        select(
            Patient.pseudonym, PatientFeature.name, PatientFeature.value, PatientFeature.value_text
        )
        .join(Patient, Patient.id == PatientFeature.patient_id)
        .where(Patient.project_id == project_id)
    )
    if pseudonyms is not None:
        wanted = [str(p) for p in pseudonyms]
        patients = patients.where(Patient.pseudonym.in_(wanted))
        query = query.where(Patient.pseudonym.in_(wanted))
    index = pd.Index(sorted(session.scalars(patients)), name="patient", dtype=object)
    long = select_frame(session, query, ["patient", "name", "value", "text"])
    if long.empty:
        return pd.DataFrame(index=index)
    long["cell"] = long["value"].astype(object).where(long["value"].notna(), long["text"])
    wide = long.pivot(index="patient", columns="name", values="cell").reindex(index)
    wide.columns.name = None
    for column in wide.columns:
        numeric = pd.to_numeric(wide[column], errors="coerce")
        if numeric.notna().sum() == wide[column].notna().sum():
            wide[column] = numeric.astype(float)
    return wide


def feature_units(session: Session, *, project_id: int) -> dict[str, str]:
    """The unit of each feature of the project that was stored with one (name -> unit)."""
    query = (
        select(PatientFeature.name, PatientFeature.unit)
        .join(Patient, Patient.id == PatientFeature.patient_id)
        .where(Patient.project_id == project_id, PatientFeature.unit.is_not(None))
        .distinct()
    )
    return {str(name): str(unit) for name, unit in session.execute(query)}


# --- models, recommendations, decisions ---------------------------------------------------


def add_risk_model(
    session: Session,
    *,
    project_id: int,
    kind: str,
    method: str,
    blob_sha256: str,
    n_train: int,
    features: list[str],
    target: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    in_use_as: str | None = None,
    patients: Iterable[str] = (),
) -> RiskModelVersion:
    """Register a trained model; versions count up per (project, kind), built from the
    patients of pseudonyms `patients` (its lineage, `RiskModelPatient`). With
    `in_use_as` ("risk" or "effects"), the project uses it as that from now on."""
    latest = session.scalar(
        select(func.max(RiskModelVersion.version)).where(
            RiskModelVersion.project_id == project_id, RiskModelVersion.kind == kind
        )
    )
    model = RiskModelVersion(
        project_id=project_id,
        kind=kind,
        version=(latest or 0) + 1,
        method=method,
        blob_sha256=blob_sha256,
        n_train=n_train,
        features=features,
        target=target or {},
        metrics=metrics or {},
    )
    session.add(model)
    session.flush()
    ids = repository.known_patients(session, project_id=project_id, pseudonyms=patients)
    rows = [{"risk_model_version_id": model.id, "patient_id": i} for i in sorted(ids.values())]
    for batch in chunks(rows):
        session.execute(insert(RiskModelPatient), batch)
    if in_use_as is not None:
        use_risk_model(session, model=model, role=in_use_as)
    return model


def use_risk_model(session: Session, *, model: RiskModelVersion, role: str) -> None:
    """Make `model` the one its project uses as `role` ("risk" or "effects"), and no
    other."""
    session.flush()
    others = update(RiskModelVersion).where(
        RiskModelVersion.project_id == model.project_id,
        RiskModelVersion.in_use_as == role,
        RiskModelVersion.id != model.id,
    )
    session.execute(others.values(in_use_as=None), execution_options={"synchronize_session": False})
    this = update(RiskModelVersion).where(RiskModelVersion.id == model.id)
    session.execute(this.values(in_use_as=role), execution_options={"synchronize_session": False})
    session.expire(model, ["in_use_as"])


def risk_model_in_use(session: Session, *, project_id: int, role: str) -> RiskModelVersion | None:
    """The model the project uses as `role` ("risk" or "effects"), None before any."""
    return session.scalar(
        select(RiskModelVersion).where(
            RiskModelVersion.project_id == project_id, RiskModelVersion.in_use_as == role
        )
    )


def risk_models(session: Session, *, project_id: int) -> list[RiskModelVersion]:
    """The project's risk, effects and expression model versions, by kind and version."""
    return list(
        session.scalars(
            select(RiskModelVersion)
            .where(RiskModelVersion.project_id == project_id)
            .order_by(RiskModelVersion.kind, RiskModelVersion.version)
        )
    )


def find_risk_model(
    session: Session, *, project_id: int, kind: str, version: int
) -> RiskModelVersion | None:
    """The project's model of `kind` numbered `version`, None when there is none."""
    return session.scalar(
        select(RiskModelVersion).where(
            RiskModelVersion.project_id == project_id,
            RiskModelVersion.kind == kind,
            RiskModelVersion.version == version,
        )
    )


def find_latest_risk_model(
    session: Session, *, project_id: int, kind: str
) -> RiskModelVersion | None:
    """The project's newest model of `kind` kept (not deleted), None before one is
    trained."""
    return session.scalar(
        select(RiskModelVersion)
        .where(
            RiskModelVersion.project_id == project_id,
            RiskModelVersion.kind == kind,
            RiskModelVersion.deleted_at.is_(None),
        )
        .order_by(RiskModelVersion.version.desc())
        .limit(1)
    )


def latest_risk_model(session: Session, *, project_id: int, kind: str) -> RiskModelVersion:
    """The project's newest model of `kind`; NotFoundError before one is trained."""
    model = find_latest_risk_model(session, project_id=project_id, kind=kind)
    if model is None:
        raise NotFoundError(f"no {kind} model trained for this project yet")
    return model


def add_recommendation(
    session: Session,
    *,
    patient_id: int,
    recommendation: str,
    risk_model_id: int | None = None,
    effect_model_id: int | None = None,
    risk: float | None = None,
    benefit: float | None = None,
    benefit_lower: float | None = None,
    benefit_upper: float | None = None,
    detail: dict[str, Any] | None = None,
) -> Recommendation:
    rec = Recommendation(
        patient_id=patient_id,
        recommendation=recommendation,
        risk_model_id=risk_model_id,
        effect_model_id=effect_model_id,
        risk=risk,
        benefit=benefit,
        benefit_lower=benefit_lower,
        benefit_upper=benefit_upper,
        detail=detail or {},
    )
    session.add(rec)
    session.flush()
    return rec


def get_recommendation(
    session: Session, *, recommendation_id: int, lock: bool = False
) -> Recommendation:
    """The recommendation; with `lock`, its row stays locked until the transaction ends,
    so that doctors deciding on it take turns (`repository.lock_row`)."""
    if lock:
        repository.lock_row(session, Recommendation, recommendation_id)
    rec = session.get(Recommendation, recommendation_id)
    if rec is None:
        raise NotFoundError(f"no recommendation {recommendation_id}")
    return rec


def decision_on(
    session: Session, *, recommendation_id: int
) -> tuple[TreatmentDecision, str] | None:
    """The decision taken on a recommendation, with its doctor's username, if any."""
    row = session.execute(
        select(TreatmentDecision, User.username)
        .join(User, User.id == TreatmentDecision.doctor_id)
        .where(TreatmentDecision.recommendation_id == recommendation_id)
        .order_by(TreatmentDecision.id)
        .limit(1)
    ).first()
    return None if row is None else (row[0], row[1])


def latest_recommendation(session: Session, *, patient_id: int) -> Recommendation | None:
    return session.scalar(
        select(Recommendation)
        .where(Recommendation.patient_id == patient_id)
        .order_by(Recommendation.id.desc())
        .limit(1)
    )


def patient_summaries(
    session: Session, *, project_id: int, pseudonyms: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """Per pseudonym (in one pass, not three queries a patient): the latest
    recommendation's text, risk, benefit, when it was computed (`recommended_at`), what
    it was computed from (`risk_model_id`, `effect_model_id` and `inputs`, the patient's
    values the models read, None where it kept none; all None without a
    recommendation) and the decision count. Unknown pseudonyms are left out."""
    wanted = [str(p) for p in pseudonyms]
    if not wanted:
        return {}
    ids = {
        pseudonym: patient
        for pseudonym, patient in session.execute(
            select(Patient.pseudonym, Patient.id).where(
                Patient.project_id == project_id, Patient.pseudonym.in_(wanted)
            )
        )
    }
    latest = (
        select(func.max(Recommendation.id))
        .where(Recommendation.patient_id.in_(list(ids.values())))
        .group_by(Recommendation.patient_id)
    )
    shown = (
        Recommendation.recommendation,
        Recommendation.risk,
        Recommendation.benefit,
        Recommendation.created_at.label("recommended_at"),
        Recommendation.risk_model_id,
        Recommendation.effect_model_id,
        # the inputs only: the whole detail holds curves and drivers too
        Recommendation.detail["inputs"].label("inputs"),
    )
    names = [column.key for column in shown]
    recommendations = {
        patient: dict(zip(names, values, strict=True))
        for patient, *values in session.execute(
            select(Recommendation.patient_id, *shown).where(Recommendation.id.in_(latest))
        )
    }
    decisions = {
        patient: count
        for patient, count in session.execute(
            select(Recommendation.patient_id, func.count(TreatmentDecision.id))
            .join(TreatmentDecision, TreatmentDecision.recommendation_id == Recommendation.id)
            .where(Recommendation.patient_id.in_(list(ids.values())))
            .group_by(Recommendation.patient_id)
        )
    }
    summaries = {}
    nothing = dict.fromkeys(names)
    for pseudonym, patient in ids.items():
        summaries[pseudonym] = {
            **recommendations.get(patient, nothing),
            "decisions": int(decisions.get(patient, 0)),
        }
    return summaries


def add_decision(
    session: Session,
    *,
    recommendation_id: int,
    doctor_id: int,
    decision: str,
    treatment: str,
    reason: str | None = None,
) -> TreatmentDecision:
    """Record a doctor's accept/override; an override needs a reason."""
    if decision not in DECISIONS:
        raise InvalidInputError(f"decision must be one of {DECISIONS}, not {decision!r}")
    if decision == "override" and not (reason and reason.strip()):
        raise InvalidInputError("an override needs a reason")
    get_recommendation(session, recommendation_id=recommendation_id)
    values = {
        "recommendation_id": recommendation_id,
        "doctor_id": doctor_id,
        "decision": decision,
        "treatment": treatment,
        "reason": reason.strip() if reason else None,
    }
    check_lengths(TreatmentDecision, [values])
    row = TreatmentDecision(**values)
    session.add(row)
    session.flush()
    return row


def decisions_frame(session: Session, *, patient_id: int) -> pd.DataFrame:
    """A patient's decisions, oldest first, each with the deciding doctor's username and
    when the recommendation decided on was computed (`recommended_at`)."""
    query = (
        select(
            TreatmentDecision.id,
            TreatmentDecision.recommendation_id,
            User.username,
            TreatmentDecision.decision,
            TreatmentDecision.treatment,
            TreatmentDecision.reason,
            TreatmentDecision.created_at,
            Recommendation.created_at,
        )
        .join(Recommendation, Recommendation.id == TreatmentDecision.recommendation_id)
        .join(User, User.id == TreatmentDecision.doctor_id)
        .where(Recommendation.patient_id == patient_id)
        .order_by(TreatmentDecision.id)
    )
    columns = [
        "id",
        "recommendation",
        "doctor",
        "decision",
        "treatment",
        "reason",
        "at",
        "recommended_at",
    ]
    return select_frame(session, query, columns)
