"""Precision-medicine workflows: patients in, risk and treatment models trained, a
recommendation per patient, and the doctor's decision recorded in the audit log.

A precision cohort is a project (classes "no event", "event"); patients live under keyed
pseudonyms. Models are pickled into the blob store and registered as versions. A
recommendation is what the models propose; only a doctor's accept/override decides.
"""

from __future__ import annotations

import io
import logging
import pickle
from collections.abc import Collection, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import pandas as pd
from sqlalchemy.orm import Session

from medloop.exceptions import ConflictError, IngestError, InvalidInputError, NotFoundError
from medloop.ingest import pseudonymize
from medloop.precision import (
    CLEAR_BENEFIT,
    CLEAR_HARM,
    NO_CLEAR_BENEFIT,
    SPREAD_SUFFIX,
    CsvDialect,
    Feature,
    FeatureTable,
    GeneExpression,
    LinearSurrogate,
    PatientRecords,
    RiskClassifier,
    SurvivalModel,
    TreatmentEffects,
    bootstrap_band,
    bootstrap_risk_interval,
    cross_validate_risk,
    cross_validate_survival,
    observations_to_wide,
    read_expression,
    read_fhir_bundle,
    read_ids,
    read_table,
    safe_harbor_ages,
    survival_plot,
    survival_target,
)
from medloop.precision.effects import event_free_by
from medloop.precision.genes import PREFIX as GENE_PREFIX
from medloop.precision.heterogeneity import heterogeneity_test
from medloop.precision.intervals import REFITS, check_refits
from medloop.precision.records import OBSERVATION_COLUMNS
from medloop.precision.samplesize import check_events, events_warning
from medloop.precision.survival import followup_horizon
from medloop.store import erasure
from medloop.store import patients as prepo
from medloop.store import repository as repo
from medloop.store.models import Patient, Project, Recommendation, RiskModelVersion
from medloop.types import Role
from medloop.workflows.dashboard import as_json
from medloop.workflows.progress import Progress, no_progress
from medloop.workflows.workspace import Workspace, date_shift_key

logger = logging.getLogger(__name__)

SYSTEM = "system"
MODEL_ACTOR = "model"
SURVIVAL, EFFECTS, EXPRESSION = "survival", "effects", "expression"
CLASSIFICATION = "classification"
#: The kinds of model that give a patient's risk, the one a cohort uses first.
RISK_KINDS = (SURVIVAL, CLASSIFICATION)
#: What a cohort uses each kind of model as (`RiskModelVersion.in_use_as`): one model
#: of `RISK_KINDS` gives its patients their risk, one effects model their benefit.
RISK = "risk"
IN_USE_AS = {SURVIVAL: RISK, CLASSIFICATION: RISK, EFFECTS: EFFECTS}


def _project(s: Any, name: str, *, create: bool) -> Project:
    """The patient cohort `name` (created if asked); an image project of that name is
    refused, so patients and images never share a project."""
    try:
        project = repo.get_project(s, name=name)
    except NotFoundError:
        if not create:
            raise
        return repo.create_project(s, name=name, classes=repo.COHORT_CLASSES, n_channels=1)
    if not repo.is_cohort(project):
        raise InvalidInputError(
            f"project {name!r} holds images to label, not patients; give a cohort's name"
        )
    return project


# --- import ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PatientImport:
    """What an import stored: `observations` facts added (`known` more were stored
    already, by an earlier import of the file or of an overlapping one) and
    `feature_values`; `skipped` counts the resources that state no fact, by why
    ("Observation entered-in-error": 1); `erased` the patients left out as erased."""

    project: str
    patients: int
    observations: int
    feature_values: int
    source: str
    known: int = 0
    skipped: Mapping[str, int] = field(default_factory=dict)
    #: patients erased from the cohort (consent withdrawn) the source still holds: left
    #: out, nothing of theirs stored (`erasure.erased_pseudonyms`)
    erased: int = 0


def import_patients_table(
    ws: Workspace,
    *,
    project: str,
    path: Path,
    id_column: str,
    columns: Mapping[str, str] | None = None,
    text_columns: Sequence[str] = (),
    drop_columns: Sequence[str] = (),
    units: Mapping[str, str] | None = None,
    dialect: CsvDialect = CsvDialect(),
) -> PatientImport:
    """Import a CSV/Parquet table (one row per patient, a CSV file in its `dialect`) as
    features; scrubbed text columns are also kept as notes (each once, however often the
    table is imported). Raw ids are pseudonymised and never stored; a column that looks
    like an identifier is refused unless dropped, mapped or kept as scrubbed text
    (`records.read_table`). Patients erased from the cohort are left out (`erased`)."""
    frame = read_table(
        path,
        key=ws.settings.resolved_secret_key,
        id_column=id_column,
        columns=columns,
        text_columns=text_columns,
        drop_columns=drop_columns,
        dialect=dialect,
    )
    frame = safe_harbor_ages(frame, units)
    text_targets = [dict(columns or {}).get(c, c) for c in text_columns]
    source = ws.file_ref("file", path.name)
    with ws.db.session() as s:
        record = _project(s, project, create=True)
        erased = erasure.erased_pseudonyms(s, project_id=record.id, lock=True)
        given_rows = len(frame)
        frame = _consented(frame, erased)
        # text columns are notes, never features: an earlier import's raw value goes too
        features = frame.assign(**{column: np.nan for column in text_targets})
        values = prepo.upsert_features(s, project_id=record.id, frame=features, units=units)
        notes = given = 0
        for column in text_targets:
            long = frame[column].dropna().rename("note").reset_index()
            long["name"] = column
            given += len(long)
            notes += prepo.add_observations(
                s,
                project_id=record.id,
                frame=long,
                kind="tabular",
                source=source,
            )
        repo.audit(
            s,
            actor=SYSTEM,
            action="import_patients",
            entity="project",
            entity_id=record.id,
            detail={
                "patients": len(frame),
                "values": values,
                "notes": notes,
                "source": source,
                **_erased_detail(given_rows - len(frame)),
            },
        )
    return PatientImport(
        project,
        len(frame),
        notes,
        values,
        path.name,
        known=given - notes,
        erased=given_rows - len(frame),
    )


def _consented(frame: pd.DataFrame, erased: Collection[str]) -> pd.DataFrame:
    """`frame` without the rows of `erased` patients (their consent was withdrawn): by
    its index of pseudonyms (named "patient"), else its "patient" column."""
    if not erased:
        return frame
    by_index = frame.index.name == "patient"
    patients = frame.index.to_series() if by_index else frame["patient"]
    return frame[~patients.astype(str).isin(erased).to_numpy()]


def _erased_detail(left_out: int) -> dict[str, int]:
    """An import's audit detail on the erased patients it left out (none: nothing)."""
    return {"erased_patients_skipped": left_out} if left_out else {}


def _common_units(observations: pd.DataFrame, stored: Mapping[str, str]) -> dict[str, str]:
    """Per observation code, the unit the project holds it in (`stored`), else the unit
    most of its values come in: values in another unit are converted to it (or the
    import refused), so one feature never holds g/dL beside g/L. Ties go to the unit seen
    first."""
    given = observations.dropna(subset=["unit"])
    units = {
        str(code): str(units.value_counts(sort=False).idxmax())
        for code, units in given.groupby("code", sort=False)["unit"]
    }
    return {code: stored.get(code, unit) for code, unit in units.items()}


def _stored_facts(
    ws: Workspace, project: str, patients: pd.Index
) -> tuple[dict[str, str], pd.DataFrame, pd.DataFrame]:
    """The cohort's feature units, and the observations (value: the number, else the
    text) and conditions it holds of `patients`: all empty before the cohort exists."""
    with ws.db.session() as s:
        try:
            project_id = _project(s, project, create=False).id
        except NotFoundError:
            return (
                {},
                pd.DataFrame(columns=OBSERVATION_COLUMNS),
                pd.DataFrame(columns=["patient", "code"]),
            )
        units = prepo.feature_units(s, project_id=project_id)
        facts = {
            kind: prepo.observations_frame(s, project_id=project_id, pseudonyms=patients, kind=kind)
            for kind in ("observation", "condition")
        }
    observations = facts["observation"]
    value = observations["value"].astype(object)
    value = value.where(value.notna(), observations["value_text"])
    return units, observations.assign(value=value), facts["condition"][["patient", "code"]]


def import_fhir_bundle(ws: Workspace, *, project: str, path: Path) -> PatientImport:
    """Import a FHIR R4 bundle: facts as observations (each once, however often the
    bundle is imported), their times moved by each patient's keyed date shift
    (`date_shift_key`; the same in every import); demographics, latest numeric
    observation per code (among the facts stored before and the bundle's) and condition
    flags (`condition:<code>` = 1) as features. Resources that state no fact (withdrawn
    or cancelled results, refuted conditions) are left out and counted, and so are the
    patients erased from the cohort (`erased`: nothing of theirs is stored)."""
    records = read_fhir_bundle(
        path, key=ws.settings.resolved_secret_key, date_key=date_shift_key(ws.settings)
    )
    in_bundle = set(records.patients["patient"])
    records = _consented_records(records, _erased(ws, project))
    features = records.patients.set_index("patient")[["sex", "birth_year"]]
    stored, observations, conditions = _stored_facts(ws, project, features.index)
    # features from the stored facts and the bundle's together: a bundle of new results
    # only must not leave a patient's earlier ones missing, nor their conditions 0
    observations = pd.concat([observations, records.observations], ignore_index=True)
    conditions = pd.concat([conditions, records.conditions[["patient", "code"]]])
    units = _common_units(observations, stored)
    try:
        wide = observations_to_wide(observations, units=units)
    except InvalidInputError as error:  # a code in units that do not convert
        raise IngestError(path, str(error)) from error
    flags = pd.DataFrame(index=features.index)
    for code in records.conditions["code"].dropna().unique():
        has = set(conditions.loc[conditions["code"] == code, "patient"])
        flags[f"condition:{code}"] = [1.0 if p in has else 0.0 for p in flags.index]
    features = features.join(wide, how="left").join(flags, how="left")
    source = ws.file_ref("file", path.name)
    with ws.db.session() as s:
        record = _project(s, project, create=True)
        # erased while the bundle was read: theirs go too (each row is one patient's)
        erased = erasure.erased_pseudonyms(s, project_id=record.id, lock=True)
        records = _consented_records(records, erased)
        features = _consented(features, erased)
        repo.ensure_patients(s, project_id=record.id, pseudonyms=features.index)
        n = given = 0
        for kind, frame in (
            ("observation", records.observations),
            ("condition", records.conditions),
            ("medication", records.medications),
        ):
            given += len(frame)
            n += prepo.add_observations(
                s,
                project_id=record.id,
                frame=frame,
                kind=kind,
                source=source,
            )
        values = prepo.upsert_features(s, project_id=record.id, frame=features, units=units)
        repo.audit(
            s,
            actor=SYSTEM,
            action="import_fhir",
            entity="project",
            entity_id=record.id,
            detail={
                "patients": len(features),
                "facts": n,
                "skipped": records.skipped,
                "source": source,
                **_erased_detail(len(in_bundle) - len(features)),
            },
        )
    return PatientImport(
        project,
        len(features),
        n,
        values,
        path.name,
        known=given - n,
        skipped=records.skipped,
        erased=len(in_bundle) - len(features),
    )


def _erased(ws: Workspace, project: str) -> set[str]:
    """The patients erased from cohort `project` (none before it exists)."""
    with ws.db.session() as s:
        try:
            record = _project(s, project, create=False)
        except NotFoundError:
            return set()
        return erasure.erased_pseudonyms(s, project_id=record.id)


def _consented_records(records: PatientRecords, erased: Collection[str]) -> PatientRecords:
    """`records` without the patients, facts and medications of `erased` patients."""
    return replace(
        records,
        patients=_consented(records.patients, erased),
        observations=_consented(records.observations, erased),
        conditions=_consented(records.conditions, erased),
        medications=_consented(records.medications, erased),
    )


def import_expression(
    ws: Workspace,
    *,
    project: str,
    path: Path,
    id_column: str,
    top_genes: int | None = None,
    log_transform: bool = True,
    min_present: float = 0.5,
    refit: bool = False,
) -> PatientImport:
    """Import a gene-expression matrix (one row per patient, keyed by the same raw ids as
    the clinical data, which must be imported first) as standardised `gene:<name>`
    features (`precision.genes`).

    The first import fits the transform (log, gene filter, top-variance genes,
    standardisation) and registers it as an "expression" model version; later imports
    into the project reuse it so new patients land on the same scale (`refit` fits anew,
    with the given options). Rows of patients erased from the cohort are left out
    (`erased`), before any fit."""
    matrix = read_expression(path, key=ws.settings.resolved_secret_key, id_column=id_column)
    given_rows = len(matrix)
    with ws.db.session() as s:
        record = _project(s, project, create=True)
        matrix = _consented(matrix, erasure.erased_pseudonyms(s, project_id=record.id))
        known = repo.known_patients(s, project_id=record.id, pseudonyms=matrix.index)
        _refuse_strangers(path, project, matrix.index, known)
        stored = prepo.find_latest_risk_model(s, project_id=record.id, kind=EXPRESSION)
        blob = None if stored is None or refit else stored.blob_sha256
    genes: GeneExpression = (
        _load(ws, blob)
        if blob
        else GeneExpression(
            log_transform=log_transform, top_genes=top_genes, min_present=min_present
        ).fit(matrix)
    )
    X = genes.transform(matrix)
    with ws.db.session() as s:
        # erased while the transform was fitted: their rows go too
        X = _consented(X, erasure.erased_pseudonyms(s, project_id=record.id, lock=True))
        if blob is None:
            version = prepo.add_risk_model(
                s,
                project_id=record.id,
                kind=EXPRESSION,
                method="log2(x+1), z-score" if genes.log_transform else "z-score",
                blob_sha256=_save(ws, genes),
                n_train=len(matrix),
                features=list(X.columns),
                target={"top_genes": top_genes, "min_present": min_present},
                patients=X.index,
            )
            logger.info("expression transform version %d: %d genes", version.version, X.shape[1])
        values = prepo.upsert_features(
            s, project_id=record.id, frame=X, units={c: genes.unit for c in X.columns}
        )
        repo.audit(
            s,
            actor=SYSTEM,
            action="import_expression",
            entity="project",
            entity_id=record.id,
            detail={
                "patients": len(X),
                "genes": X.shape[1],
                "genes_in_file": matrix.shape[1],
                "values": values,
                "source": ws.file_ref("file", path.name),
                **_erased_detail(given_rows - len(X)),
            },
        )
    return PatientImport(project, len(X), 0, values, path.name, erased=given_rows - len(X))


def check_expression_rows(
    ws: Workspace,
    *,
    project: str,
    path: Path,
    id_column: str,
    table: Path | None = None,
    table_id_column: str | None = None,
    table_dialect: CsvDialect = CsvDialect(),
) -> None:
    """Refuse an expression matrix with rows for patients who are neither in the cohort
    nor in the clinical `table` about to be imported with it (nor erased from the cohort:
    their rows are left out): checked before that import, so a refused matrix leaves
    nothing half imported."""
    key = ws.settings.resolved_secret_key
    rows = read_ids(path, key=key, id_column=id_column)  # the ids only: checks stay cheap
    coming = set()
    if table is not None and table_id_column is not None:
        coming = set(read_ids(table, key=key, id_column=table_id_column, dialect=table_dialect))
    with ws.db.session() as s:
        try:
            record = _project(s, project, create=False)
            known = set(repo.known_patients(s, project_id=record.id, pseudonyms=rows))
            known |= erasure.erased_pseudonyms(s, project_id=record.id)
        except NotFoundError:
            known = set()
    _refuse_strangers(path, project, rows, known | coming)


def _refuse_strangers(path: Path, project: str, rows: pd.Index, known: Collection[str]) -> None:
    """A matrix row for nobody in the cohort would add a patient with genes only."""
    strangers = [i for i, p in enumerate(rows) if p not in known]
    if strangers:
        raise IngestError(
            path,
            f"{len(strangers)} row(s) name patients who are not in {project!r} (the first is "
            f"row {strangers[0] + 1} after the header); import their clinical data first",
        )


def expression_features(ws: Workspace, *, project: str) -> pd.DataFrame:
    """The project's documented gene features (`GeneExpression.describe()`)."""
    with ws.db.session() as s:
        record = _project(s, project, create=False)
        stored = prepo.latest_risk_model(s, project_id=record.id, kind=EXPRESSION)
    genes: GeneExpression = _load(ws, stored.blob_sha256)
    return genes.describe()


# --- models ------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainedModel:
    kind: str
    version: int
    method: str
    n_train: int
    features: list[str]
    metrics: dict[str, float] = field(default_factory=dict)
    #: how `metrics` were measured, e.g. "out of fold, over 5 stratified folds"
    evaluation: str = ""
    #: why the model's figures are rough (too few events per model column), if they are
    warning: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _feature_table(
    frame: pd.DataFrame, exclude: Sequence[str], *, units: Mapping[str, str] | None = None
) -> FeatureTable:
    """Every column of `frame` but `exclude` as a documented feature: genomic for `gene:`
    columns, else clinical; numeric or categorical; with its unit from `units`."""
    specs = []
    for column in frame.columns:
        if column in exclude:
            continue
        numeric = pd.api.types.is_numeric_dtype(frame[column])
        group = "genomic" if str(column).startswith(GENE_PREFIX) else "clinical"
        kind = "numeric" if numeric else "categorical"
        unit = (units or {}).get(str(column))
        specs.append(Feature(str(column), group=group, kind=kind, unit=unit))
    if not specs:
        raise InvalidInputError("no feature columns left to train on")
    return FeatureTable(specs)


def _curve_times(model: SurvivalModel, horizon: float) -> np.ndarray:
    """Where a patient's survival curve is shown: 30 quantiles of the event times up to
    the 90th, plus the risk horizon."""
    grid = np.quantile(model.event_times_, np.linspace(0, 0.9, 30))
    return np.unique(np.append(grid, horizon))


def _outcome_columns(frame: pd.DataFrame, *names: str) -> None:
    missing = [n for n in names if n not in frame.columns]
    if missing:
        raise InvalidInputError(
            f"feature table has no column(s) {missing}; known: {sorted(frame.columns)}"
        )


def _save(ws: Workspace, obj: Any) -> str:
    buffer = io.BytesIO()
    pickle.dump(obj, buffer, protocol=pickle.HIGHEST_PROTOCOL)
    return ws.blobs.put(buffer.getvalue())


def _load(ws: Workspace, sha256: str) -> Any:
    """A model bundle from our own blob store (written by `_save`: trusted content),
    unpickled once while it is among the workspace's recently used (a sha256 always
    names the same bytes; callers only read the bundle)."""
    return ws.recent(("model bundle", sha256), lambda: pickle.loads(ws.blobs.get(sha256)))


def train_risk(
    ws: Workspace,
    *,
    project: str,
    time_column: str,
    event_column: str,
    exclude: Sequence[str] = (),
    method: str = "ensemble",
    n_splits: int = 5,
    n_bootstrap: int = REFITS,
    seed: int = 0,
    progress: Progress = no_progress,
) -> TrainedModel:
    """Train a survival model on the stored features: metrics out of fold over `n_splits`
    folds stratified on the event (C-index, mean time-dependent AUC, IBS, each with its
    spread across folds; the stored version also keeps the calibration at the horizon,
    the median time on record, of every patient's out-of-fold prediction), then refit on
    everyone with follow-up and register it. `n_bootstrap` refits on resamples give every
    patient of the cohort, followed up or not, a 95% band of the survival curve (and of
    the risk); patients added after training get none until the next training. Refused
    with fewer than 10 events; trained with a warning, kept with the model and shown with
    its every output, below 10 events per model column (`precision.samplesize`).
    `progress` counts the fits ("risk model: ...", n_splits + 1 + n_bootstrap in all)."""
    model = SurvivalModel(method, seed=seed)  # refuses an unknown method before any work
    check_refits(n_bootstrap, none_allowed=True)  # and too few refits for a 95% band
    with ws.db.session() as s:
        record = _project(s, project, create=False)
        cohort = prepo.features_frame(s, project_id=record.id)
    _outcome_columns(cohort, time_column, event_column)
    frame = cohort.dropna(subset=[time_column, event_column])
    y = survival_target(frame[time_column], frame[event_column].astype(int))
    events = int(y["event"].sum())
    check_events(events=events, where=f"cohort {project!r}")
    drop = [time_column, event_column, *exclude]
    # The table learns fill values and categories, never the outcome: fitted on everyone.
    table = _feature_table(frame, drop).fit(frame)
    X_all = table.transform(frame)
    warning = events_warning(events=events, parameters=X_all.shape[1])
    horizon = followup_horizon(y["time"])
    fits = n_splits + 1 + n_bootstrap
    stage = "risk model: cross-validation, then the final fit"
    progress(stage, 0, fits)
    evaluation = cross_validate_survival(
        model,
        X_all,
        y,
        horizon=horizon,
        n_splits=n_splits,
        seed=seed,
        progress=lambda done, _total: progress(stage, done, fits),
    )
    calibration = evaluation.pop("calibration")
    metrics = {k: float(v) for k, v in evaluation.items()}
    final = model.fit(X_all, y)
    bands = "risk model: bootstrap refits for the risk bands"
    if n_bootstrap:
        progress(bands, n_splits + 1, fits)
    bundle: dict[str, Any] = {
        "table": table,
        "model": final,
        "horizon": horizon,
        "mean": X_all.mean(),  # the average patient, for the drivers
    }
    bundle["times"] = _curve_times(final, horizon)
    if n_bootstrap:
        X_cohort = table.transform(cohort)
        bundle["interval_rows"] = _row_digests(X_cohort)
        bundle["band"] = bootstrap_band(  # for everyone, patients without follow-up too
            X_all,
            y,
            X_cohort,
            bundle["times"],
            method=method,
            n_bootstrap=n_bootstrap,
            seed=seed,
            n_jobs=ws.settings.jobs,
            progress=lambda done, _total: progress(bands, n_splits + 1 + done, fits),
        )
    return _register_risk_model(
        ws,
        project_id=record.id,
        kind=SURVIVAL,
        method=method,
        bundle=bundle,
        n_train=len(frame),
        features=table.columns_,
        patients=[*frame.index, *(cohort.index if n_bootstrap else [])],
        target={
            "time": time_column,
            "event": event_column,
            "horizon": horizon,
            "folds": n_splits,
            **({"warning": warning} if warning else {}),
        },
        metrics=metrics,
        calibration=calibration.to_dict(orient="records"),
    )


def _register_risk_model(
    ws: Workspace,
    *,
    project_id: int,
    kind: str,
    method: str,
    bundle: dict[str, Any],
    n_train: int,
    features: list[str],
    patients: Sequence[str],
    target: dict[str, Any],
    metrics: dict[str, float],
    calibration: Any,
) -> TrainedModel:
    """Save a trained risk model's bundle, register it as the cohort's newest version of
    `kind`, the one it uses from now on (its figures stored with their `calibration`),
    built from `patients` (its training rows and those it keeps an interval for), and
    audit the training."""
    blob = _save(ws, bundle)
    with ws.db.session() as s:
        version = prepo.add_risk_model(
            s,
            project_id=project_id,
            kind=kind,
            method=method,
            blob_sha256=blob,
            n_train=n_train,
            features=features,
            target=target,
            metrics={**metrics, "calibration": calibration},
            in_use_as=IN_USE_AS[kind],
            patients=patients,
        )
        repo.audit(
            s,
            actor=SYSTEM,
            action="train_risk",
            entity="risk_model",
            entity_id=version.id,
            detail={"kind": kind, "version": version.version, **metrics},
        )
        return TrainedModel(
            kind,
            version.version,
            method,
            n_train,
            features,
            metrics,
            _evaluation(target),
            target.get("warning"),
        )


def train_risk_classifier(
    ws: Workspace,
    *,
    project: str,
    outcome_column: str,
    exclude: Sequence[str] = (),
    method: str = "logistic",
    calibration: str = "sigmoid",
    n_splits: int = 5,
    n_bootstrap: int = REFITS,
    seed: int = 0,
    progress: Progress = no_progress,
) -> TrainedModel:
    """Train a calibrated classifier of a 0/1 outcome with no follow-up time (logistic
    regression, or gradient boosting with `method="gbm"`; `RiskClassifier`) on the stored
    features, for cohorts without time-to-event data. Logistic is the default by
    measurement: on ACTG 320's event it is level with or better than boosting on AUC,
    Brier score and log loss, at a twentieth of the time (benchmarks/README.md). Metrics
    are out-of-fold over `n_splits` stratified folds (AUC, Brier score, log loss; the
    stored version also keeps the calibration curve); then it is refitted on everyone and
    registered. `n_bootstrap` refits on resamples give every patient of the cohort, outcome
    known or not, a 95% interval of the risk (patients added later get none until the
    next training). Refused with fewer than 10 patients of the rarer outcome, warned below
    10 per model column (`precision.samplesize`).
    `progress` counts the fits ("risk classifier: ...", n_splits + 1 + n_bootstrap)."""
    model = RiskClassifier(method, calibration=calibration, seed=seed)  # options checked here
    check_refits(n_bootstrap, none_allowed=True)
    with ws.db.session() as s:
        record = _project(s, project, create=False)
        cohort = prepo.features_frame(s, project_id=record.id)
    _outcome_columns(cohort, outcome_column)
    frame = cohort.dropna(subset=[outcome_column])
    outcome = frame[outcome_column]
    if not outcome.isin([0, 1]).all() or outcome.nunique() < 2:
        raise InvalidInputError(
            f"outcome column {outcome_column!r} must be 0/1 with both values present; "
            f"got {sorted(outcome.unique().tolist())[:5]}"
        )
    rarer = int(outcome.value_counts().min())  # a 0/1 outcome's events: the rarer value
    check_events(events=rarer, what="patients with the rarer outcome", where=f"cohort {project!r}")
    table = _feature_table(frame, [outcome_column, *exclude]).fit(frame)
    X, y = table.transform(frame), outcome.astype(int).to_numpy()
    warning = events_warning(
        events=rarer, parameters=X.shape[1], what="patients with the rarer outcome"
    )
    fits = n_splits + 1 + n_bootstrap
    stage = "risk classifier: cross-validation, then the final fit"
    progress(stage, 0, fits)
    _, evaluation = cross_validate_risk(
        model,
        X,
        y,
        n_splits=n_splits,
        seed=seed,
        progress=lambda done, _total: progress(stage, done, fits),
    )
    model.fit(X, y)
    bundle: dict[str, Any] = {
        "table": table,
        "model": model,
        "mean": X.mean(),  # the average patient, for the drivers
    }
    intervals = "risk classifier: bootstrap refits for the risk intervals"
    if n_bootstrap:
        progress(intervals, n_splits + 1, fits)
        X_cohort = table.transform(cohort)
        bundle["interval_rows"] = _row_digests(X_cohort)
        bundle["interval"] = bootstrap_risk_interval(  # for everyone, outcome unknown too
            model,
            X,
            y,
            X_cohort,
            n_bootstrap=n_bootstrap,
            seed=seed,
            n_jobs=ws.settings.jobs,
            progress=lambda done, _total: progress(intervals, n_splits + 1 + done, fits),
        )
    metrics = {k: float(evaluation[k]) for k in ("auc", "brier", "log_loss")}
    metrics["prevalence"] = float(y.mean())
    return _register_risk_model(
        ws,
        project_id=record.id,
        kind=CLASSIFICATION,
        method=method,
        bundle=bundle,
        n_train=len(frame),
        features=table.columns_,
        patients=[*frame.index, *(cohort.index if n_bootstrap else [])],
        target={
            "outcome": outcome_column,
            "calibration": calibration,
            "folds": n_splits,
            **({"warning": warning} if warning else {}),
        },
        metrics=metrics,
        calibration=evaluation["calibration"],
    )


def train_effects(
    ws: Workspace,
    *,
    project: str,
    treatment_column: str,
    event_column: str,
    time_column: str | None = None,
    horizon: float | None = None,
    exclude: Sequence[str] = (),
    learner: str = "t",
    base: str = "gbm",
    n_bootstrap: int = REFITS,
    seed: int = 0,
    treated: str = "treat",
    control: str = "no treatment",
    progress: Progress = no_progress,
) -> TrainedModel:
    """Train a treatment-effect model on randomised data; `treatment_column` is 0/1.

    With a follow-up `time_column` the outcome is "event-free by `horizon`" (default:
    the horizon of the survival model the cohort uses, where it has the same time and
    event, else the same rule, the median time on record), patients censored before it
    left out and the others weighted by the inverse probability of censoring within
    their arm (`event_free_by`); without one, "free of the event during follow-up" (a 0/1
    outcome). Refused with fewer than 10 patients of either outcome in either arm; trained
    with a warning below 10 per model column (`precision.samplesize`). The best linear
    predictor test (`precision.heterogeneity`, 5 folds) then says whether the effects
    differ between patients at all; it is kept with the model, and where it finds no
    evidence the patients' drivers are not shown. `progress` counts the fits ("effects
    model: ...", 1 + n_bootstrap + 5)."""
    check_refits(n_bootstrap, none_allowed=True)
    with ws.db.session() as s:
        record = _project(s, project, create=False)
        frame = prepo.features_frame(s, project_id=record.id)
        risk = current_risk_model(s, project_id=record.id)
    columns = [treatment_column, event_column, *([time_column] if time_column else [])]
    _outcome_columns(frame, *columns)
    if horizon is not None and time_column is None:
        raise InvalidInputError("a horizon needs the follow-up time column (time_column)")
    cohort, frame = frame, frame.dropna(subset=columns)
    table = _feature_table(frame, [*columns, *exclude]).fit(frame)
    target: dict[str, Any] = {"treatment": treatment_column, "event": event_column}
    weight = None
    if time_column is None:
        outcome = 1.0 - frame[event_column].astype(float).to_numpy()
    else:
        if horizon is None:
            horizon = _default_horizon(risk, cohort, time=time_column, event=event_column)
        time, event = frame[time_column].to_numpy(float), frame[event_column].to_numpy()
        outcome, weight = event_free_by(
            time, event, frame[treatment_column].to_numpy(), horizon=horizon
        )
        known = ~np.isnan(outcome)
        target.update(
            {"time": time_column, "horizon": horizon, "censored_before": int((~known).sum())}
        )
        frame, outcome, weight = frame[known], outcome[known], weight[known]
    arm = frame[treatment_column].to_numpy()
    # each arm's model learns from its rarer outcome (events, or the event-free)
    rarer = min(int(((arm == a) & (outcome == o)).sum()) for a in (0, 1) for o in (0.0, 1.0))
    what = "patients with the rarer outcome in one arm"
    check_events(events=rarer, what=what, where=f"cohort {project!r}")
    X = table.transform(frame)
    warning = events_warning(events=rarer, parameters=X.shape[1], what=what)
    stage = "effects model: fit and bootstrap refits, then the heterogeneity test"
    folds = 5
    progress(stage, 0, 1 + n_bootstrap + folds)
    model = TreatmentEffects(
        learner, base, n_bootstrap=n_bootstrap, seed=seed, n_jobs=ws.settings.jobs
    ).fit(
        X,
        arm,
        outcome,
        sample_weight=weight,
        progress=lambda done, _total: progress(stage, done, 1 + n_bootstrap + folds),
    )
    # Do the effects differ between patients beyond noise? Else the drivers are not shown.
    heterogeneity = heterogeneity_test(
        model,
        X,
        arm,
        outcome,
        sample_weight=weight,
        n_splits=folds,
        seed=seed,
        progress=lambda done, _total: progress(
            stage, 1 + n_bootstrap + done, 1 + n_bootstrap + folds
        ),
    )
    target["heterogeneity"] = heterogeneity.as_dict()
    if warning:
        target["warning"] = warning
    blob = _save(ws, {"table": table, "model": model, "treated": treated, "control": control})
    with ws.db.session() as s:
        version = prepo.add_risk_model(
            s,
            project_id=record.id,
            kind=EFFECTS,
            method=f"{learner}-learner/{base}",
            blob_sha256=blob,
            n_train=len(frame),
            features=table.columns_,
            target={**target, "treated": treated, "control": control},
            in_use_as=IN_USE_AS[EFFECTS],
            patients=frame.index,
        )
        repo.audit(
            s,
            actor=SYSTEM,
            action="train_effects",
            entity="risk_model",
            entity_id=version.id,
            detail={"kind": EFFECTS, "version": version.version},
        )
        return TrainedModel(
            EFFECTS,
            version.version,
            version.method,
            len(frame),
            table.columns_,
            metrics={
                "average_effect": heterogeneity.average_effect,
                "average_effect_se": heterogeneity.average_effect_se,
                "heterogeneity_slope": heterogeneity.slope,
                "heterogeneity_p": heterogeneity.p_value,
            },
            evaluation=f"heterogeneity: best linear predictor test, {folds} folds",
            warning=warning,
        )


def _default_horizon(
    risk: RiskModelVersion | None, cohort: pd.DataFrame, *, time: str, event: str
) -> float:
    """An effects model's horizon by default: that of the cohort's risk model in use
    (`current_risk_model`: not its newest, which may have been rolled back) where that
    is a survival model of the same time and event (so that a patient's page speaks of
    one time), else the same rule (`followup_horizon`) on the patients such a model
    learns from."""
    stated = {} if risk is None else (risk.target or {})  # a classifier's: no time
    if (stated.get("time"), stated.get("event")) == (time, event) and "horizon" in stated:
        return float(stated["horizon"])
    return followup_horizon(cohort.dropna(subset=[time, event])[time])


def predict_risk(
    ws: Workspace, *, project: str, patients: Sequence[str] | None = None
) -> pd.DataFrame:
    """Per patient (index pseudonym; `patients` by pseudonym or raw id, all by default),
    from the cohort's risk model (`current_risk_model`):
    `risk`, as on the patient page: P(event by `horizon`, the survival model's horizon,
    in `time_unit` when the time column has one), or a classifier's P(`outcome` = 1)
    (no horizon); `risk_lower` and `risk_upper`, its 95% bootstrap interval (missing for
    a patient the model was trained without, or a model trained without bootstrap
    refits); `risk_score`, the ranking score (a survival model's expected time lost
    over the event times, higher meaning an earlier event, what the C-index ranks; a
    classifier's risk); `model_kind` and `model_version`."""
    if patients is not None:
        patients = [resolve_patient(ws, project=project, patient=p) for p in patients]
    with ws.db.session() as s:
        record = _project(s, project, create=False)
        version = current_risk_model(s, project_id=record.id)
        if version is None:
            raise NotFoundError(f"train a risk model for {project!r} first (medloop risk train)")
        frame = prepo.features_frame(s, project_id=record.id, pseudonyms=patients)
        units = prepo.feature_units(s, project_id=record.id)
    return _risk_table(ws, version, frame, units)


def current_risk_model(s: Session, *, project_id: int) -> RiskModelVersion | None:
    """The model that gives a cohort's patients their risk, a survival model or an
    outcome classifier: the one in use (the one trained last, unless `medloop risk use`
    put another back), which `risk predict`, `risk evaluate` and the pages show; None
    before any."""
    return prepo.risk_model_in_use(s, project_id=project_id, role=RISK)


def _current_models(s: Session, *, project_id: int) -> dict[str, RiskModelVersion]:
    """The cohort's models in use, by kind: its risk model (`current_risk_model`) and its
    treatment-effect model in use, each where there is one."""
    models = {}
    risk = current_risk_model(s, project_id=project_id)
    if risk is not None:
        models[risk.kind] = risk
    effects = prepo.risk_model_in_use(s, project_id=project_id, role=EFFECTS)
    if effects is not None:
        models[EFFECTS] = effects
    return models


def _risk_table(
    ws: Workspace, version: RiskModelVersion, frame: pd.DataFrame, units: dict[str, str]
) -> pd.DataFrame:
    """`predict_risk`'s table for the patients of a feature frame already read."""
    bundle = _load(ws, version.blob_sha256)
    table: FeatureTable = bundle["table"]
    out = _risk_frame(bundle, version, table.transform(frame), units)
    notes = table.notes(frame)
    out["notes"] = ["; ".join(notes.get(patient, [])) or None for patient in out.index]
    return out


def _risk_frame(
    bundle: Mapping[str, Any], version: RiskModelVersion, X: pd.DataFrame, units: dict[str, str]
) -> pd.DataFrame:
    """`_risk_table` from a loaded model bundle and its feature matrix."""
    target = version.target or {}
    if version.kind == CLASSIFICATION:
        classifier: RiskClassifier = bundle["model"]
        out = pd.DataFrame({"risk": classifier.predict_proba(X)})
        interval = bundle.get("interval", pd.DataFrame(columns=["lower", "upper"]))
        out["outcome"] = str(target["outcome"])
        out["horizon"] = None
        out["time_unit"] = None
        out["risk_score"] = out["risk"]
    else:
        model: SurvivalModel = bundle["model"]
        horizon = bundle["horizon"]
        out = pd.DataFrame({"risk": 1.0 - model.predict_survival(X, [horizon]).iloc[:, 0]})
        interval = _band_at(bundle, horizon)
        out["outcome"] = str(target.get("event"))
        out["horizon"] = float(horizon)
        out["time_unit"] = units.get(str(target.get("time")))
        out["risk_score"] = model.predict_risk(X)
    interval = interval.reindex(out.index)
    interval.loc[_interval_changed(bundle, X).to_numpy()] = np.nan
    out.insert(1, "risk_lower", interval["lower"].astype(float))
    out.insert(2, "risk_upper", interval["upper"].astype(float))
    out["model_kind"] = version.kind
    out["model_version"] = version.version
    out["model_warning"] = target.get("warning")
    return out


def _row_digests(X: pd.DataFrame) -> pd.Series:
    """One digest per patient (index kept) of their feature row, as text: an interval
    computed for a row holds for that row only."""
    digests = pd.util.hash_pandas_object(X.round(9), index=False)
    # text: a 64-bit number would pass through a float (and round) where reindexing
    # leaves a gap
    return pd.Series([f"{d:016x}" for d in digests], index=X.index, dtype=object)


def _interval_changed(bundle: Mapping[str, Any], X: pd.DataFrame) -> pd.Series:
    """Per patient of `X`: True where the model kept an interval for them but their
    features have changed since (a corrected record), so that interval is not theirs now.
    False for models trained before the rows were kept."""
    kept: pd.Series | None = bundle.get("interval_rows")
    if kept is None:
        return pd.Series(False, index=X.index)
    before = kept.reindex(X.index)
    return before.notna() & (before != _row_digests(X))


def _band_at(bundle: Mapping[str, Any], horizon: float) -> pd.DataFrame:
    """A survival bundle's 95% bootstrap interval of the risk by `horizon` (columns lower,
    upper; indexed by the patients it was trained on; empty without a band)."""
    band = bundle.get("band")
    if band is None:
        return pd.DataFrame(columns=["lower", "upper"])
    low, high = band
    at = int(np.searchsorted(np.asarray(low.columns, dtype=float), horizon))
    return pd.DataFrame({"lower": 1.0 - high.iloc[:, at], "upper": 1.0 - low.iloc[:, at]})


def _log_hazard(survival: np.ndarray) -> np.ndarray:
    """log(-log S): the log cumulative hazard, where a Cox model is linear."""
    return np.asarray(np.log(-np.log(np.clip(survival, 1e-6, 1 - 1e-6))))


def _log_odds(risk: np.ndarray) -> np.ndarray:
    """log(p / (1 - p)): where a logistic model is linear."""
    p = np.clip(risk, 1e-6, 1 - 1e-6)
    return np.asarray(np.log(p / (1 - p)))


def _risk_drivers(
    bundle: Mapping[str, Any], X: pd.DataFrame, frame: pd.DataFrame
) -> list[dict[str, Any]]:
    """The clinical variables that move one patient's risk most from the average
    patient's, each as the model itself answers: its risk with the patient's values
    against its risk with that variable (all its columns: categories, missing flag) at
    the cohort's mean, on the scale where Cox and logistic models are linear (the log
    cumulative hazard by the horizon, or the log odds). `factor` (e to the
    `contribution`) multiplies the hazard ("scale" hazard) or the odds. A linear
    surrogate of the model, used before, extrapolated without bound (x233,894 for a
    2,100 mm tumour the model itself put at x2.1); bundles kept from then still use it.
    [] for a model trained before drivers were kept."""
    mean: pd.Series | None = bundle.get("mean")
    scale = "hazard" if "horizon" in bundle else "odds"
    if mean is None:
        surrogate: LinearSurrogate | None = bundle.get("drivers")
        if surrogate is None:
            return []
        drivers = surrogate.drivers(X).drop(columns="patient")
        drivers["factor"] = np.exp(drivers["contribution"])
        drivers["scale"] = scale
        return list(drivers.to_dict(orient="records"))
    table: FeatureTable = bundle["table"]
    groups = {
        f.name: [
            c for c in X.columns if c == f.name or c.startswith((f"{f.name}=", f"{f.name}_missing"))
        ]
        for f in table.features
    }
    groups = {name: columns for name, columns in groups.items() if columns}
    patient = X.iloc[[0]]
    variants = [patient] + [
        patient.assign(**mean[columns].to_dict()) for columns in groups.values()
    ]
    matrix = pd.concat(variants, ignore_index=True)
    model = bundle["model"]
    if scale == "hazard":
        survival = model.predict_survival(matrix, [float(bundle["horizon"])]).iloc[:, 0]
        scores = _log_hazard(survival.to_numpy(dtype=float))
    else:
        scores = _log_odds(np.asarray(model.predict_proba(matrix), dtype=float))
    contributions = scores[0] - scores[1:]
    raw = frame.iloc[0]
    drivers = []
    for rank, i in enumerate(np.argsort(-np.abs(contributions), kind="stable")[:3], start=1):
        name = list(groups)[i]
        value = raw.get(name)
        drivers.append(
            {
                "rank": rank,
                "feature": name,
                "value": None if pd.isna(value) else as_json(value),
                "contribution": float(contributions[i]),
                "factor": float(np.exp(contributions[i])),
                "scale": scale,
            }
        )
    return drivers


# --- recommendations and decisions -------------------------------------------------------


@dataclass
class RecommendationView:
    """What a doctor sees for one patient (ids and numbers, no personal data).

    `risk` is P(event by the survival model's horizon, the median time on record), or, for a
    cohort with an outcome classifier instead, P(`outcome` = 1), with its bootstrap
    interval (`risk_interval_missing` says why there is none); `risk_drivers` the
    features that move it most from the average patient's;
    `benefit` the estimated gain in P(`effect_outcome`) from treatment, with its interval,
    `effect_outcome` saying what the effects model predicts ("event-free by 1084 days",
    by its `effect_horizon`, or "free of the event during follow-up" without follow-up
    time); `option_estimates` one row per option: expected P(`effect_outcome`) with its
    interval, and the benefit over the reference option (the control) with its interval
    and verdict ("no clear benefit" when the interval covers zero); `feature_notes` what
    to know about the values the models saw (missing ones filled in, numbers outside the
    range they learnt from); `model_warnings` why a model's figures are rough (too few
    events per model column); `heterogeneity` the effects model's test of whether the
    effect differs between patients at all (`precision.heterogeneity`), said in
    `heterogeneity_note`: where it finds no evidence, `drivers` is empty, since the
    differences they would explain are noise, and the average effect over the cohort
    (`average_effect`: its `benefit` with the 95% interval `lower` to `upper`, and its
    `verdict`) leads and gives the `recommendation`
    (`effect_basis` "average"; the patient's own `benefit` is secondary); where it finds
    some, the patient's own estimate leads (`effect_basis` "patient").
    `computed_at` is when it was computed (UTC), `models` the models it used."""

    recommendation_id: int
    patient: str
    recommendation: str
    suggested_treatment: str | None
    risk: float | None = None
    risk_lower: float | None = None
    risk_upper: float | None = None
    risk_interval_missing: str | None = None
    horizon: float | None = None
    time_unit: str | None = None
    outcome: str | None = None
    survival: dict[str, list[float]] = field(default_factory=dict)
    risk_drivers: list[dict[str, Any]] = field(default_factory=list)
    benefit: float | None = None
    benefit_lower: float | None = None
    benefit_upper: float | None = None
    effect_outcome: str | None = None
    effect_horizon: float | None = None
    drivers: list[dict[str, Any]] = field(default_factory=list)
    options: list[str] = field(default_factory=list)
    option_estimates: list[dict[str, Any]] = field(default_factory=list)
    feature_notes: list[str] = field(default_factory=list)
    model_warnings: list[str] = field(default_factory=list)
    heterogeneity: dict[str, Any] | None = None
    heterogeneity_note: str | None = None
    computed_at: datetime | None = None
    models: list[str] = field(default_factory=list)
    effect_basis: str | None = None
    average_effect: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def resolve_patient(ws: Workspace, *, project: str, patient: str) -> str:
    """The pseudonym for `patient`, given either the pseudonym or the raw id."""
    with ws.db.session() as s:
        record = _project(s, project, create=False)
        for candidate in (patient, pseudonymize(patient, key=ws.settings.resolved_secret_key)):
            try:
                prepo.get_patient(s, project_id=record.id, pseudonym=candidate)
                return candidate
            except NotFoundError:
                continue
    raise NotFoundError(f"no patient {patient!r} in project {project!r}")


def recommend(ws: Workspace, *, project: str, patient: str) -> RecommendationView:
    """Risk (a survival curve, or an outcome classifier's probability when the cohort has
    no survival model) and the estimated benefit of treatment with its interval and
    drivers for one patient; stored as a recommendation awaiting a doctor's decision."""
    pseudonym = resolve_patient(ws, project=project, patient=patient)
    with ws.db.session() as s:
        record = _project(s, project, create=False)
        patient_row = prepo.get_patient(s, project_id=record.id, pseudonym=pseudonym)
        frame = prepo.features_frame(s, project_id=record.id, pseudonyms=[pseudonym])
        units = prepo.feature_units(s, project_id=record.id)
        versions = _current_models(s, project_id=record.id)
    risk_version = _risk_model(versions)
    if not versions:
        raise NotFoundError(f"train a risk or treatment model for {project!r} first")
    detail: dict[str, Any] = {}
    risk = benefit = lower = upper = horizon = None
    risk_interval: list[float] = []
    text, suggested, drivers, options = "risk only (no treatment model)", None, [], []
    risk_drivers: list[dict[str, Any]] = []
    estimates: list[dict[str, Any]] = []
    survival: dict[str, list[float]] = {}
    notes: list[str] = []
    warnings: list[str] = []
    inputs: list[str] = []  # the patient's columns the models read
    if risk_version is not None:
        bundle = _load(ws, risk_version.blob_sha256)
        inputs += [f.name for f in bundle["table"].features]
        notes += bundle["table"].notes(frame).get(pseudonym, [])
        X = bundle["table"].transform(frame)
        row = _risk_frame(bundle, risk_version, X, units).iloc[0]
        risk = float(row["risk"])
        if not pd.isna(row["risk_lower"]):
            risk_interval = [float(row["risk_lower"]), float(row["risk_upper"])]
        else:
            changed = bool(_interval_changed(bundle, X).iloc[0])
            detail["risk_interval_missing"] = _missing_interval(bundle, risk_version, changed)
        risk_drivers = _risk_drivers(bundle, X, frame)
        detail["risk_interval"] = risk_interval
        warnings += _warning(risk_version)
        if risk_version.kind == SURVIVAL:
            horizon = float(bundle["horizon"])
            survival = _survival_curve(bundle, X, pseudonym)
            detail["risk_horizon"] = horizon
            detail["time_unit"] = row["time_unit"]
            detail["survival_model_version"] = risk_version.version
        else:
            detail["risk_outcome"] = str(row["outcome"])
            detail["classifier_version"] = risk_version.version
    if EFFECTS in versions:
        bundle = _load(ws, versions[EFFECTS].blob_sha256)
        inputs += [f.name for f in bundle["table"].features if f.name not in inputs]
        notes += [n for n in bundle["table"].notes(frame).get(pseudonym, []) if n not in notes]
        X = bundle["table"].transform(frame)
        effects: TreatmentEffects = bundle["model"]
        row = effects.estimate(X).iloc[0]
        benefit = float(row["benefit"])
        lower, upper = _or_none(row["lower"]), _or_none(row["upper"])
        text = str(row["recommendation"])
        treated, control = bundle["treated"], bundle["control"]
        options = [treated, control]
        warnings += _warning(versions[EFFECTS])
        heterogeneity = (versions[EFFECTS].target or {}).get("heterogeneity")
        detail["effect_basis"] = "patient"
        if heterogeneity is not None:  # models trained before 2026-12-07 were not tested
            detail["heterogeneity"] = heterogeneity
            detail["heterogeneity_note"] = _heterogeneity_note(heterogeneity)
            if not heterogeneity["evidence"]:
                # the patient's own estimate differs from the average by noise only: the
                # average effect is the better estimate for them, and gives the verdict
                detail["effect_basis"] = "average"
                detail["average_effect"] = _average_effect(heterogeneity)
                text = detail["average_effect"]["verdict"]
        suggested = {CLEAR_BENEFIT: treated, CLEAR_HARM: control}.get(text)
        shown = heterogeneity is None or heterogeneity["evidence"]  # else noise, not drivers
        if shown and hasattr(effects, "mean_"):  # models before 2026-12-07 kept no means
            drivers = effects.drivers(X).drop(columns="patient").to_dict(orient="records")
        estimates = _option_estimates(effects, X, row, treated=treated, control=control)
        detail["effects_model_version"] = versions[EFFECTS].version
        detail.update(_effect_outcome(versions[EFFECTS], units))
    detail.update(
        {
            "survival": survival,
            "risk_drivers": risk_drivers,
            "drivers": drivers,
            "options": options,
            "option_estimates": estimates,
            "suggested": suggested,
            "feature_notes": notes,
            "model_warnings": warnings,
            # what the models read of the patient, to tell later whether it still holds
            "inputs": _input_values(_first_values(frame), inputs),
        }
    )
    with ws.db.session() as s:
        rec = prepo.add_recommendation(
            s,
            patient_id=patient_row.id,
            recommendation=text,
            risk_model_id=None if risk_version is None else risk_version.id,
            effect_model_id=versions[EFFECTS].id if EFFECTS in versions else None,
            risk=risk,
            benefit=benefit,
            benefit_lower=lower,
            benefit_upper=upper,
            detail=detail,
        )
        repo.audit(
            s,
            actor=MODEL_ACTOR,
            action="recommend",
            entity="patient",
            entity_id=pseudonym,
            detail={"recommendation": rec.id, "text": text},
        )
        rec_id, computed_at = rec.id, rec.created_at
    return RecommendationView(
        recommendation_id=rec_id,
        patient=pseudonym,
        recommendation=text,
        suggested_treatment=suggested,
        computed_at=computed_at,
        models=[_model_label(v) for v in versions.values()],
        risk=risk,
        risk_lower=risk_interval[0] if risk_interval else None,
        risk_upper=risk_interval[1] if risk_interval else None,
        risk_interval_missing=detail.get("risk_interval_missing"),
        horizon=horizon,
        time_unit=detail.get("time_unit"),
        outcome=detail.get("risk_outcome"),
        survival=survival,
        risk_drivers=risk_drivers,
        benefit=benefit,
        benefit_lower=lower,
        benefit_upper=upper,
        effect_outcome=detail.get("effect_outcome"),
        effect_horizon=detail.get("effect_horizon"),
        drivers=drivers,
        options=options,
        option_estimates=estimates,
        feature_notes=notes,
        model_warnings=warnings,
        heterogeneity=detail.get("heterogeneity"),
        heterogeneity_note=detail.get("heterogeneity_note"),
        effect_basis=detail.get("effect_basis"),
        average_effect=detail.get("average_effect"),
    )


def _warning(version: RiskModelVersion) -> list[str]:
    """A model's stored warning (too few events per column) and whether it was built
    from the data of patients erased since, as a list, named by model."""
    warning = (version.target or {}).get("warning")
    said = [warning] if warning else []
    said += [erased_warning(version.erased_patients)] if version.erased_patients else []
    return [f"{version.kind} model v{version.version}: {w}" for w in said]


def erased_warning(patients: int) -> str:
    """What a doctor is told of a model built from the data of `patients` patients who
    were erased since (`workflows.erasure`)."""
    whose = "a patient" if patients == 1 else f"{patients} patients"
    return (
        f"it was trained on the data of {whose} erased since (consent withdrawn); "
        "ask for it to be retrained"
    )


def _heterogeneity_note(test: Mapping[str, Any]) -> str:
    """What the heterogeneity test says, for a doctor: whether the effect differs between
    patients, and where not, the average effect that applies to everyone."""
    p = float(test["p_value"])
    if test["evidence"]:
        return (
            f"the effect differs between patients (p = {p:.2g}, test of the model's predicted "
            "differences): the drivers say what moves it for this patient"
        )
    average = _average_effect(test)
    return (
        f"no evidence that the effect differs between patients (p = {p:.2g}); the average "
        f"effect applies: {100 * average['benefit']:+.1f} points (95% CI "
        f"{100 * average['lower']:+.1f} to {100 * average['upper']:+.1f})"
    )


def _average_effect(test: Mapping[str, Any]) -> dict[str, Any]:
    """The heterogeneity test's average effect of treatment (`benefit`) with its 95%
    normal interval (`lower`, `upper`) and the `verdict` that interval gives, by the rule
    a patient's own interval follows."""
    average, se = float(test["average_effect"]), float(test["average_effect_se"])
    lower, upper = average - 1.96 * se, average + 1.96 * se
    verdict = CLEAR_BENEFIT if lower > 0 else CLEAR_HARM if upper < 0 else NO_CLEAR_BENEFIT
    return {"benefit": average, "lower": lower, "upper": upper, "verdict": verdict}


def _model_label(version: RiskModelVersion) -> str:
    """A model as a recommendation names it: "survival model v2 (cox)"."""
    return f"{version.kind} model v{version.version} ({version.method})"


def _feature_values(frame: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Per patient of `frame` (`features_frame`), their features by name as JSON values
    (None where missing), converted for all of them at once."""
    cells = frame.to_numpy(dtype=object)
    cells[pd.isna(cells)] = None
    names = [str(c) for c in frame.columns]
    return {
        str(p): dict(zip(names, as_json(list(row)), strict=True))
        for p, row in zip(frame.index, cells, strict=True)
    }


def _first_values(frame: pd.DataFrame) -> dict[str, Any]:
    """`_feature_values` of a one-patient `frame`; {} without features."""
    return next(iter(_feature_values(frame).values()), {})


def _input_values(values: Mapping[str, Any], columns: Sequence[str]) -> dict[str, Any]:
    """A patient's `values` (`_feature_values`) of `columns`, None where missing: what a
    recommendation read of them."""
    return {c: values.get(c) for c in columns}


def _changes_since(
    *,
    risk_model_id: int | None,
    effect_model_id: int | None,
    inputs: Mapping[str, Any] | None,
    models: Mapping[str, RiskModelVersion],
    values: Mapping[str, Any],
) -> list[str]:
    """Why a stored recommendation no longer holds, [] while it does: the cohort's
    current `models` (`_current_models`) are not those it was computed with
    (`risk_model_id`, `effect_model_id`: retrained, rolled back, or one trained since),
    or the patient's values the models read (`inputs`, as the recommendation kept them;
    `values`: the patient's current `_feature_values`) have changed. A
    recommendation stored before it kept those values (`inputs` None) cannot be checked
    and counts as outdated. No model is scored and nothing is read from the database,
    so a page of patients is checked at once (`list_patients`)."""
    reasons = []
    current = {"risk": _risk_model(models), "treatment-effect": models.get(EFFECTS)}
    used = {"risk": risk_model_id, "treatment-effect": effect_model_id}
    for role, now in current.items():
        if (None if now is None else now.id) == used[role]:
            continue
        if used[role] is None and now is not None:
            reasons.append(f"a {role} model was trained since ({_model_label(now)})")
        elif now is None:
            reasons.append(f"the {role} model it used is no longer in use")
        else:
            reasons.append(f"the {role} model is now {_model_label(now)}")
    if inputs is None:
        reasons.append("it was computed before medloop kept the patient's values it used")
    else:
        changed = [name for name, value in inputs.items() if values.get(name) != value]
        if changed:
            reasons.append(f"the patient's data changed since ({', '.join(changed)})")
    return reasons


def _changes_since_stored(
    rec: Recommendation, *, models: Mapping[str, RiskModelVersion], frame: pd.DataFrame
) -> list[str]:
    """`_changes_since` of a stored recommendation `rec` (`frame`: its patient's
    features, `features_frame`)."""
    return _changes_since(
        risk_model_id=rec.risk_model_id,
        effect_model_id=rec.effect_model_id,
        inputs=rec.detail.get("inputs"),
        models=models,
        values=_first_values(frame),
    )


def _missing_interval(
    bundle: Mapping[str, Any], version: RiskModelVersion, changed: bool = False
) -> str:
    """Why a patient's risk comes without an interval, said so a doctor knows what to do."""
    if changed:
        return (
            f"the patient's record changed after risk model v{version.version} was trained; "
            "retrain it for an interval"
        )
    if "band" in bundle or "interval" in bundle:
        return (
            f"the patient was added after risk model v{version.version} was trained; "
            "retrain it for an interval"
        )
    return f"risk model v{version.version} was trained without bootstrap refits"


def _survival_curve(
    bundle: Mapping[str, Any], X: pd.DataFrame, pseudonym: str
) -> dict[str, list[float]]:
    """One patient's predicted survival curve (time, survival) from a survival bundle,
    with its 95% bootstrap band (lower, upper) where the model kept one for them."""
    model: SurvivalModel = bundle["model"]
    times = bundle.get("times")
    times = _curve_times(model, float(bundle["horizon"])) if times is None else times
    curve = model.predict_survival(X, times).iloc[0]
    survival = {"time": [float(t) for t in times], "survival": curve.round(4).tolist()}
    band = bundle.get("band")
    current = not _interval_changed(bundle, X).iloc[0]
    if band is not None and current and pseudonym in band[0].index:
        survival["lower"] = band[0].loc[pseudonym].round(4).tolist()
        survival["upper"] = band[1].loc[pseudonym].round(4).tolist()
    return survival


def _or_none(value: Any) -> float | None:
    """An interval's end, or None where the model kept no interval (NaN)."""
    number = float(value)
    return None if np.isnan(number) else number


def _effect_outcome(version: RiskModelVersion, units: Mapping[str, str]) -> dict[str, Any]:
    """What an effects model predicts the probability of, said as the risk is ("event-free
    by 1084 days"), with its horizon and time unit; "free of the event during follow-up"
    for a model without a horizon (no follow-up time, or trained before there was one)."""
    target = version.target or {}
    if target.get("horizon") is None:
        return {"effect_outcome": "free of the event during follow-up", "effect_horizon": None}
    horizon, unit = float(target["horizon"]), units.get(str(target.get("time")))
    return {
        "effect_outcome": f"event-free by {horizon:g} {unit or 'time units'}",
        "effect_horizon": horizon,
        "effect_time_unit": unit,
    }


def _option_estimates(
    effects: TreatmentEffects, X: pd.DataFrame, row: pd.Series, *, treated: str, control: str
) -> list[dict[str, Any]]:
    """Per option: expected outcome (P(event-free by the horizon), or free of the event
    during follow-up) with its interval, and the benefit over the control with its
    interval and verdict (the control is the reference)."""
    arms = effects.potential_outcomes(X).iloc[0]
    out = []
    for option, arm in ((treated, "treated"), (control, "control")):
        reference = arm == "control"
        out.append(
            {
                "option": option,
                "event_free": float(arms[arm]),
                "event_free_lower": _or_none(arms[f"{arm}_lower"]),
                "event_free_upper": _or_none(arms[f"{arm}_upper"]),
                "benefit": 0.0 if reference else float(row["benefit"]),
                "benefit_lower": 0.0 if reference else _or_none(row["lower"]),
                "benefit_upper": 0.0 if reference else _or_none(row["upper"]),
                "verdict": "reference" if reference else str(row["recommendation"]),
            }
        )
    return out


@dataclass(frozen=True)
class Decision:
    decision_id: int
    recommendation_id: int
    doctor: str
    decision: str
    treatment: str
    reason: str | None


def decide(
    ws: Workspace,
    *,
    recommendation_id: int,
    doctor: str,
    decision: str,
    treatment: str | None = None,
    reason: str | None = None,
    patient: str | None = None,
) -> Decision:
    """A doctor accepts the suggestion or overrides it (with a reason); audited.

    Accepting "no clear benefit" needs the chosen `treatment`; an override needs both
    `treatment` and `reason`. Only an existing user with the doctor role may decide. With
    `patient` (a pseudonym), the recommendation must be that patient's. A recommendation
    is decided once (ConflictError after that, also when two doctors decide at the same
    moment): to decide again, compute a new one.

    An outdated recommendation (`_changes_since`: a model retrained or the patient's
    values changed since it was computed) cannot be accepted, nor its suggestion chosen
    (ConflictError: recompute it). It can still be overridden with a reason, as the
    doctor's own choice against it, and the audit entry says it was outdated and why.
    """
    with ws.db.writing() as s:
        rec = prepo.get_recommendation(s, recommendation_id=recommendation_id, lock=True)
        owner = s.get(Patient, rec.patient_id)
        if owner is None:
            raise NotFoundError(f"no patient for recommendation {recommendation_id}")
        if patient is not None and owner.pseudonym != patient:
            raise InvalidInputError(
                f"recommendation {recommendation_id} is not about patient {patient!r}"
            )
        user = repo.get_user_in_role(s, username=doctor, roles=[Role.DOCTOR])
        taken = prepo.decision_on(s, recommendation_id=recommendation_id)
        if taken is not None:
            row, by = taken
            raise ConflictError(
                f"recommendation {recommendation_id} was already decided ({row.decision}: "
                f"{row.treatment}, by {by}); compute a new recommendation to decide again"
            )
        frame = prepo.features_frame(s, project_id=owner.project_id, pseudonyms=[owner.pseudonym])
        models = _current_models(s, project_id=owner.project_id)
        outdated = _changes_since_stored(rec, models=models, frame=frame)
        if outdated and (decision == "accept" or treatment == rec.detail.get("suggested")):
            raise ConflictError(
                f"recommendation {recommendation_id} is outdated: {'; '.join(outdated)}. "
                "Recompute it before accepting (an override with a reason is still possible)"
            )
        options = list(rec.detail.get("options") or [])
        if not options:
            raise InvalidInputError(
                "this cohort has no treatment-effect model, so there is no treatment to accept "
                "or override (train one: medloop risk train --treatment COLUMN)"
            )
        suggested = rec.detail.get("suggested")
        if decision == "accept":
            if suggested is not None and treatment not in (None, suggested):
                raise InvalidInputError(
                    f"the suggestion is {suggested!r}; choosing {treatment!r} is an override"
                )
            treatment = treatment or suggested
            if treatment is None:
                raise InvalidInputError(
                    f"{rec.recommendation}: choose the treatment, {' or '.join(options)}"
                )
        elif not treatment:
            raise InvalidInputError("an override names the treatment chosen instead")
        elif treatment == suggested:
            raise InvalidInputError(
                f"{treatment!r} is what the model suggests: accept it rather than override"
            )
        if treatment not in options:
            raise InvalidInputError(f"treatment {treatment!r} is not one of {options}")
        row = prepo.add_decision(
            s,
            recommendation_id=recommendation_id,
            doctor_id=user.id,
            decision=decision,
            treatment=treatment,
            reason=reason,
        )
        repo.audit(
            s,
            actor=doctor,
            action=f"treatment_{decision}",
            entity="recommendation",
            entity_id=recommendation_id,
            detail={
                "decision": row.id,
                "treatment": treatment,
                "reason": row.reason,
                "suggested": suggested,
                **({"outdated": outdated} if outdated else {}),
            },
        )
        return Decision(row.id, recommendation_id, doctor, decision, treatment, row.reason)


def patient_record(ws: Workspace, *, project: str, patient: str) -> dict[str, Any]:
    """Everything a doctor's patient page shows: current features, the outcome and
    treatment on record (the current models' time, event and treatment columns, kept
    apart from the features they do not use), stored facts (notes already scrubbed), the
    latest recommendation (with when it was `computed_at`, the `models` it used, and why
    it is `outdated`: [] while it holds, `_changes_since`), every decision (with when its
    recommendation was computed), and `trained_on`: whom the models learnt from
    (`_trained_on`; the recommendation's models, else the current ones). Ids only."""
    pseudonym = resolve_patient(ws, project=project, patient=patient)
    with ws.db.session() as s:
        record = _project(s, project, create=False)
        row = prepo.get_patient(s, project_id=record.id, pseudonym=pseudonym)
        features = prepo.features_frame(s, project_id=record.id, pseudonyms=[pseudonym])
        units = prepo.feature_units(s, project_id=record.id)
        facts = prepo.observations_frame(s, project_id=record.id, pseudonym=pseudonym)
        latest = prepo.latest_recommendation(s, patient_id=row.id)
        decisions = prepo.decisions_frame(s, patient_id=row.id)
        models = _current_models(s, project_id=record.id)
        targets = list(_target_roles(models))
        used = list(models.values())
        recommendation = None
        if latest is not None:
            ids = (latest.risk_model_id, latest.effect_model_id)
            used = [v for v in (s.get(RiskModelVersion, i) for i in ids if i) if v is not None]
            detail = {k: v for k, v in latest.detail.items() if k != "inputs"}
            recommendation = {
                "recommendation_id": latest.id,
                "recommendation": latest.recommendation,
                "risk": latest.risk,
                "benefit": latest.benefit,
                "benefit_lower": latest.benefit_lower,
                "benefit_upper": latest.benefit_upper,
                **detail,
                "computed_at": latest.created_at,
                "models": [_model_label(v) for v in used],
                "outdated": _changes_since_stored(latest, models=models, frame=features),
            }
    values = features.iloc[0].dropna().to_dict() if len(features) else {}
    return {
        "patient": pseudonym,
        "features": {k: v for k, v in values.items() if k not in targets},
        "outcome": {k: values[k] for k in targets if k in values},
        "units": {name: units[name] for name in values if name in units},
        "facts": _records(facts.drop(columns="patient")),
        "recommendation": recommendation,
        "decisions": _records(decisions),
        "trained_on": [_trained_on(ws, version, units) for version in used],
    }


def _trained_on(
    ws: Workspace, version: RiskModelVersion, units: Mapping[str, str]
) -> dict[str, Any]:
    """Whom a model learnt from, for a doctor to judge whether a patient resembles them:
    the `model`, when it was trained (`trained_at`, UTC), its number of `patients`, the
    `ranges` of its clinical numbers (lowest and highest value seen, with the unit), the
    `categories` of its clinical categories, how many `genes` it read, and all that said
    in words (`values`: "age 21 to 80 years (with an en dash), ..."). A deleted model
    (`risk_models.delete_risk_model`: its file is gone) says so instead of its ranges."""
    known = {"model": _model_label(version), "trained_at": version.created_at}
    if version.deleted_at is not None:
        return {
            **known,
            "patients": version.n_train,
            "ranges": [],
            "categories": {},
            "genes": 0,
            "values": f"its file was deleted on {version.deleted_at:%Y-%m-%d}, and with it "
            "the ranges it learnt from",
        }
    table: FeatureTable = _load(ws, version.blob_sha256)["table"]
    clinical = [f for f in table.features if f.group != "genomic"]
    seen = getattr(table, "ranges_", {})
    ranges = [
        {
            "feature": f.name,
            "low": seen[f.name][0],
            "high": seen[f.name][1],
            "unit": f.unit or units.get(f.name),
        }
        for f in clinical
        if f.name in seen
    ]
    categories = {f.name: table.categories_[f.name] for f in clinical if f.kind != "numeric"}
    genes = len(table.features) - len(clinical)
    said = [
        f"{r['feature']} {r['low']:g}\u2013{r['high']:g}" + (f" {r['unit']}" if r["unit"] else "")
        for r in ranges
    ]
    said += [f"{name} {'/'.join(map(str, values))}" for name, values in categories.items()]
    said += [f"{genes} gene expression features"] if genes else []
    return {
        **known,
        "patients": version.n_train,
        "ranges": ranges,
        "categories": categories,
        "genes": genes,
        "values": ", ".join(said),
    }


def _risk_model(models: Mapping[str, RiskModelVersion]) -> RiskModelVersion | None:
    """The risk model among a cohort's `_current_models`, if it has one."""
    return next((models[kind] for kind in RISK_KINDS if kind in models), None)


def _target_roles(models: Mapping[str, RiskModelVersion]) -> dict[str, str]:
    """Column -> its role ("time", "event", "outcome" or "treatment") for the cohort's
    current `models` (`_current_models`): what they learn from as outcome or treatment,
    not as features."""
    keys = {
        SURVIVAL: ("time", "event"),
        CLASSIFICATION: ("outcome",),
        EFFECTS: ("treatment", "event", "time"),
    }
    roles: dict[str, str] = {}
    for kind, version in models.items():
        target = version.target or {}
        for key in keys[kind]:
            if target.get(key):
                roles.setdefault(str(target[key]), key)
    return roles


def describe_features(ws: Workspace, *, project: str) -> pd.DataFrame:
    """The cohort's documented feature table (`FeatureTable.describe()` of every stored
    column, index feature): `group`, `kind`, `unit`, `role` (feature, or time / event /
    outcome / treatment for the current models), `patients` with a value and the
    `missing` share, the `median` of a number (what fills its gaps, with a
    `<name>_missing` indicator) or the `values` of a category (most common first), and
    `models`: the current models that use it as a feature. Empty without features."""
    with ws.db.session() as s:
        record = _project(s, project, create=False)
        frame = prepo.features_frame(s, project_id=record.id)
        units = prepo.feature_units(s, project_id=record.id)
        models = _current_models(s, project_id=record.id)
    if frame.columns.empty:
        return pd.DataFrame()
    table = _feature_table(frame, (), units=units).fit(frame)
    doc = table.describe().set_index("name").rename_axis("feature")
    doc = doc[["group", "kind", "unit"]].assign(median=doc["fill_value"])
    roles = _target_roles(models)
    doc["role"] = [roles.get(str(c), "feature") for c in doc.index]
    doc["patients"] = frame.notna().sum()
    doc["missing"] = pd.Series(table.missing_rate_).round(4)
    doc["values"] = pd.Series(
        {c: ", ".join(map(str, frame[c].value_counts().index[:5])) for c in table.categories_},
        dtype=object,
    )
    doc["models"] = [
        ", ".join(
            f"{m.kind} v{m.version}"
            for m in models.values()
            if any(f in (c, f"{c}_missing") or str(f).startswith(f"{c}=") for f in m.features)
        )
        for c in doc.index
    ]
    return doc[
        ["group", "kind", "unit", "role", "patients", "missing", "median", "values", "models"]
    ]


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as dicts with missing values as None (JSON has no NaN)."""
    return list(frame.astype(object).where(frame.notna(), None).to_dict(orient="records"))


# --- what the doctor's pages read (every read is audited) --------------------------------


def cohort_overview(ws: Workspace) -> list[dict[str, Any]]:
    """Per cohort: its name, how many patients it has, its risk model
    (`current_risk_model`: "v2 ensemble" for a survival model, "v1 gbm classifier of
    relapse" for an outcome classifier) and its treatment-effect model in use; None
    before one is trained."""
    rows = []
    with ws.db.session() as s:
        for project in repo.list_projects(s):
            if not repo.is_cohort(project):
                continue
            models = _current_models(s, project_id=project.id)
            risk, effects = _risk_model(models), models.get(EFFECTS)
            rows.append(
                {
                    "project": project.name,
                    "patients": prepo.count_patients(s, project_id=project.id),
                    "risk_model": None if risk is None else _model_name(risk),
                    "effects_model": None if effects is None else _model_name(effects),
                }
            )
    return rows


def risk_model_card(ws: Workspace, *, project: str) -> dict[str, Any]:
    """The cohort's risk model (`current_risk_model`) as a doctor should judge it: `name`,
    `kind`, `n_train`, `evaluation` (how it was measured) with its `metrics` and their
    `spread` (standard deviation across folds, where the model kept one), and
    `calibration`: predicted against observed risk per group of patients (a survival
    model: out-of-fold risk by its horizon per fifth of predicted risk, observed by
    Kaplan-Meier; a classifier: out of fold, per tenth of predicted risk). NotFoundError
    before a risk model."""
    with ws.db.session() as s:
        record = _project(s, project, create=False)
        version = current_risk_model(s, project_id=record.id)
        if version is None:
            raise NotFoundError(f"cohort {project!r} has no risk model yet (medloop risk train)")
        units = prepo.feature_units(s, project_id=record.id)
        stored, target = dict(version.metrics or {}), dict(version.target or {})
        name, kind, n_train = _model_name(version), version.kind, version.n_train
        said = [target["warning"]] if target.get("warning") else []
        said += [erased_warning(version.erased_patients)] if version.erased_patients else []
    calibration = stored.pop("calibration", None)
    figures = {k: v for k, v in stored.items() if isinstance(v, int | float)}
    evaluation = _evaluation(target)
    if kind == CLASSIFICATION:
        points = calibration or {"predicted": [], "observed": []}
        predicted, observed = points["predicted"], points["observed"]
        what = f"P({target.get('outcome')} = 1)"
    else:
        unit = units.get(str(target.get("time"))) or "time units"
        groups = calibration or []
        predicted = [1.0 - g["predicted"] for g in groups]
        observed = [1.0 - g["observed"] for g in groups]
        what = f"P(event by {float(target.get('horizon', 0.0)):g} {unit})"
    return {
        "name": name,
        "kind": kind,
        "n_train": n_train,
        "evaluation": evaluation,
        "metrics": {k: float(v) for k, v in figures.items() if not k.endswith(SPREAD_SUFFIX)},
        "spread": {
            k.removesuffix(SPREAD_SUFFIX): float(v)
            for k, v in figures.items()
            if k.endswith(SPREAD_SUFFIX)
        },
        "calibration": {"what": what, "predicted": predicted, "observed": observed},
        "warning": "; ".join(said) if said else None,
    }


def _evaluation(target: Mapping[str, Any]) -> str:
    """How a risk model's figures were measured, from what its version stored (survival
    models trained before 2026-12-07 were scored on a held-out share)."""
    if "test_size" in target:
        return f"on a held-out {100 * target['test_size']:g}% of the cohort"
    return f"out of fold, over {target.get('folds', 5)} stratified folds"


def calibration_chart(card: Mapping[str, Any]) -> bytes:
    """A `risk_model_card`'s calibration as a PNG."""
    from medloop import plots  # matplotlib: only when a chart is drawn

    points = card["calibration"]
    return plots.calibration_png(
        points["predicted"], points["observed"], title=f"{card['name']}\n{points['what']}"
    )


def _model_name(version: RiskModelVersion) -> str:
    name = f"v{version.version} {version.method}"
    if version.kind == CLASSIFICATION:
        name += f" classifier of {(version.target or {}).get('outcome')}"
    return name


#: How `list_patients` can order a cohort.
PatientOrder = Literal["pseudonym", "risk"]


def count_patients(ws: Workspace, *, project: str) -> int:
    """How many patients `project` has (what `list_patients` pages through)."""
    with ws.db.session() as s:
        record = _project(s, project, create=False)
        return prepo.count_patients(s, project_id=record.id)


def list_patients(
    ws: Workspace,
    *,
    project: str,
    viewer: str,
    limit: int = 200,
    offset: int = 0,
    order: PatientOrder = "pseudonym",
) -> list[dict[str, Any]]:
    """Patients `offset` to `offset + limit` of `project`, in pseudonym order or, with
    `order="risk"`, highest current model risk first: number of features (not counting
    the current models' outcome and treatment columns), the latest recommendation (text,
    risk, benefit, when computed) with why it is `outdated` ([] while it holds or without
    one; `_changes_since`, as on the patient page, checked from the stored figures
    without scoring a model), decision count, and the current risk model's risk
    (`model_risk`: by `horizon` in `time_unit` for a survival model, of `outcome` for a
    classifier; None without a model) with its bootstrap interval (`model_risk_lower`,
    `model_risk_upper`; None where the model kept none). The read is audited."""
    if limit < 1 or offset < 0:
        raise InvalidInputError(f"limit must be >= 1 and offset >= 0; got {limit}, {offset}")
    if order not in get_args(PatientOrder):
        raise InvalidInputError(f"order must be one of {get_args(PatientOrder)}; got {order!r}")
    with ws.db.session() as s:
        record = _project(s, project, create=False)
        frame = prepo.features_frame(s, project_id=record.id)
        units = prepo.feature_units(s, project_id=record.id)
        models = _current_models(s, project_id=record.id)
        state = prepo.feature_state(s, project_id=record.id) if order == "risk" else None
    version = _risk_model(models)
    targets = list(_target_roles(models))
    table: pd.DataFrame | None = None
    if version is not None and order == "risk" and len(frame):
        # Everyone's risk, highest first (ties in pseudonym order), kept until the model
        # or any feature value changes.
        cohort = frame
        table = ws.kept(
            ("cohort risk", record.id, version.id),
            state,
            lambda: _risk_table(ws, version, cohort, units).sort_values(
                "risk", ascending=False, kind="stable"
            ),
        )
        frame = frame.loc[table.index]
    page = [str(p) for p in frame.index[offset : offset + limit]]
    if version is not None and table is None and page:
        table = _risk_table(ws, version, frame.loc[page], units)
    model: dict[str, dict[str, Any]] = {}
    if table is not None:
        shown = table.loc[page]
        model = shown.astype(object).where(shown.notna(), None).to_dict(orient="index")
    counts = frame.loc[page].drop(columns=targets, errors="ignore").notna().sum(axis=1)
    values = _feature_values(frame.loc[page])
    rows: list[dict[str, Any]] = []
    with ws.db.session() as s:
        summaries = prepo.patient_summaries(s, project_id=record.id, pseudonyms=page)
        for pseudonym in page:
            risk = model.get(pseudonym, {})
            summary = summaries[pseudonym]
            basis = {k: summary.pop(k) for k in ("risk_model_id", "effect_model_id", "inputs")}
            outdated = (
                []
                if summary["recommendation"] is None
                else _changes_since(**basis, models=models, values=values[pseudonym])
            )
            rows.append(
                {
                    "patient": pseudonym,
                    "features": int(counts[pseudonym]),
                    **summary,
                    "outdated": outdated,
                    "model_risk": risk.get("risk"),
                    "model_risk_lower": risk.get("risk_lower"),
                    "model_risk_upper": risk.get("risk_upper"),
                    "model_risk_notes": risk.get("notes"),
                    "outcome": risk.get("outcome"),
                    "horizon": risk.get("horizon"),
                    "time_unit": risk.get("time_unit"),
                }
            )
        repo.audit(
            s,
            actor=viewer,
            action="view_patients",
            entity="project",
            entity_id=record.id,
            detail={"patients": page, "offset": offset, "order": order},
        )
    return rows


def view_patient(
    ws: Workspace, *, project: str, patient: str, viewer: str, view: str = "page"
) -> dict[str, Any]:
    """`patient_record` for `viewer`, recorded in the audit log (who, which patient, which
    view; the entry's time is when)."""
    page = patient_record(ws, project=project, patient=patient)
    _audit_view(ws, project=project, patient=page["patient"], viewer=viewer, view=view)
    return page


def survival_chart(ws: Workspace, *, project: str, patient: str, viewer: str) -> bytes:
    """The latest recommendation's survival curve with its band as a PNG; audited."""
    page = view_patient(ws, project=project, patient=patient, viewer=viewer, view="chart")
    rec = page["recommendation"] or {}
    curve = rec.get("survival") or {}
    if not curve.get("time"):
        raise NotFoundError(f"no survival curve for {page['patient']!r}: recommend first")
    return survival_plot(
        curve["time"],
        curve["survival"],
        lower=curve.get("lower"),
        upper=curve.get("upper"),
        horizon=rec.get("risk_horizon"),
        title=f"patient {page['patient']}",
        time_unit=rec.get("time_unit"),
    )


def _audit_view(ws: Workspace, *, project: str, patient: str, viewer: str, view: str) -> None:
    with ws.db.session() as s:
        record = _project(s, project, create=False)
        repo.audit(
            s,
            actor=viewer,
            action="view_patient",
            entity="patient",
            entity_id=patient,
            detail={"project": record.id, "view": view},
        )
