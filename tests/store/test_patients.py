"""Precision tables (migration 0002) on SQLite and PostgreSQL."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import select

from medloop.exceptions import InvalidInputError, NotFoundError
from medloop.store import Database
from medloop.store import patients as prepo
from medloop.store import repository as repo
from medloop.store.models import PatientFeature
from medloop.types import Role


def test_features_observations_models_recommendations(database: Database) -> None:
    with database.session() as s:
        project = repo.create_project(s, name="cohort", classes=["no", "yes"], n_channels=1)
        frame = pd.DataFrame(
            {"age": [50.0, np.nan], "sex": ["female", "male"], "tx": [1, 0]},
            index=["Paaa", "Pbbb"],
        )
        assert (
            prepo.upsert_features(s, project_id=project.id, frame=frame, units={"age": "year"}) == 5
        )
        # replacing a value keeps one row per (patient, feature)
        prepo.upsert_features(
            s, project_id=project.id, frame=pd.DataFrame({"age": [51.0]}, index=["Paaa"])
        )
        obs = pd.DataFrame(
            {
                "patient": ["Paaa"],
                "code": ["718-7"],
                "value": [13.5],
                "unit": ["g/dL"],
                "time": ["2024-01-02"],
                "note": ["[REDACTED]"],
            }
        )
        assert (
            prepo.add_observations(
                s, project_id=project.id, frame=obs, kind="observation", source="b.json"
            )
            == 1
        )
        project_id = project.id
    with database.session() as s:
        wide = prepo.features_frame(s, project_id=project_id)
        assert wide.loc["Paaa", "age"] == 51.0
        assert np.isnan(wide.loc["Pbbb", "age"])
        assert wide["sex"].tolist() == ["female", "male"]
        assert wide["tx"].tolist() == [1.0, 0.0]
        facts = prepo.observations_frame(s, project_id=project_id, pseudonym="Paaa")
        assert facts[["code", "value", "unit"]].iloc[0].tolist() == ["718-7", 13.5, "g/dL"]
        first = prepo.add_risk_model(
            s,
            project_id=project_id,
            kind="survival",
            method="cox",
            blob_sha256="0" * 64,
            n_train=2,
            features=["age"],
            metrics={"cindex": 0.7},
        )
        second = prepo.add_risk_model(
            s,
            project_id=project_id,
            kind="survival",
            method="rsf",
            blob_sha256="1" * 64,
            n_train=2,
            features=["age"],
        )
        assert (first.version, second.version) == (1, 2)
        latest = prepo.latest_risk_model(s, project_id=project_id, kind="survival")
        assert latest.method == "rsf"
        with pytest.raises(NotFoundError):
            prepo.latest_risk_model(s, project_id=project_id, kind="effects")
        patient = prepo.get_patient(s, project_id=project_id, pseudonym="Paaa")
        rec = prepo.add_recommendation(
            s,
            patient_id=patient.id,
            recommendation="no clear benefit",
            risk_model_id=second.id,
            benefit=0.01,
            benefit_lower=-0.02,
            benefit_upper=0.04,
            detail={"options": ["treat", "no treatment"]},
        )
        doctor = repo.create_user(s, username="dr", role=Role.DOCTOR)
        with pytest.raises(InvalidInputError, match="reason"):
            prepo.add_decision(
                s,
                recommendation_id=rec.id,
                doctor_id=doctor.id,
                decision="override",
                treatment="treat",
            )
        prepo.add_decision(
            s,
            recommendation_id=rec.id,
            doctor_id=doctor.id,
            decision="override",
            treatment="treat",
            reason="  strong wish ",
        )
        decisions = prepo.decisions_frame(s, patient_id=patient.id)
        assert decisions[["decision", "treatment", "reason"]].iloc[0].tolist() == [
            "override",
            "treat",
            "strong wish",
        ]
        assert prepo.latest_recommendation(s, patient_id=patient.id).id == rec.id


def test_patient_summaries_and_units_for_a_page_of_the_cohort(database: Database) -> None:
    """The list page's figures in one pass: the latest recommendation (not an earlier
    one) with the models and values it was computed from, decisions over all of a
    patient's recommendations, nothing for others."""
    with database.session() as s:
        project = repo.create_project(s, name="cohort", classes=["no", "yes"], n_channels=1)
        frame = pd.DataFrame({"age": [50.0, 60.0, 70.0]}, index=["Paaa", "Pbbb", "Pccc"])
        prepo.upsert_features(s, project_id=project.id, frame=frame, units={"age": "years"})
        doctor = repo.create_user(s, username="dr", role=Role.DOCTOR)
        ids = {p: prepo.get_patient(s, project_id=project.id, pseudonym=p).id for p in frame.index}
        old = prepo.add_recommendation(s, patient_id=ids["Paaa"], recommendation="treat", risk=0.4)
        new = prepo.add_recommendation(
            s, patient_id=ids["Paaa"], recommendation="no clear benefit", risk=0.3, benefit=0.01
        )
        for rec in (old, new):
            prepo.add_decision(
                s, recommendation_id=rec.id, doctor_id=doctor.id, decision="accept", treatment="x"
            )
        prepo.add_recommendation(
            s,
            patient_id=ids["Pbbb"],
            recommendation="treat",
            risk=0.5,
            detail={"inputs": {"age": 60.0, "grade": None}, "survival": {"times": [1.0]}},
        )
        summaries = prepo.patient_summaries(
            s, project_id=project.id, pseudonyms=["Paaa", "Pbbb", "Pccc", "Pnope"]
        )
        assert prepo.feature_units(s, project_id=project.id) == {"age": "years"}
    assert summaries["Paaa"].pop("recommended_at") == new.created_at
    assert summaries["Pbbb"].pop("recommended_at") is not None
    assert summaries["Pccc"].pop("recommended_at") is None
    nothing = {"risk_model_id": None, "effect_model_id": None}
    assert summaries == {
        "Paaa": {
            "recommendation": "no clear benefit",
            "risk": 0.3,
            "benefit": 0.01,
            "decisions": 2,
            "inputs": None,  # kept none
            **nothing,
        },
        "Pbbb": {
            "recommendation": "treat",
            "risk": 0.5,
            "benefit": None,
            "decisions": 0,
            "inputs": {"age": 60.0, "grade": None},  # what the list checks, not the rest
            **nothing,
        },
        "Pccc": {
            "recommendation": None,
            "risk": None,
            "benefit": None,
            "decisions": 0,
            "inputs": None,
            **nothing,
        },
    }


def test_long_text_is_kept_or_refused_the_same_way_on_both_databases(database: Database) -> None:
    """Notes, text values and reasons are free text (migration 0012); a feature name past
    its column's length is a clear error on SQLite too, not a database error on PostgreSQL."""
    note = "Discussed hormone therapy and its side effects at length. " * 60  # 3,540 chars
    with database.session() as s:
        project = repo.create_project(s, name="cohort", classes=["no", "yes"], n_channels=1)
        facts = pd.DataFrame({"patient": ["Paaa"], "code": ["x"], "value": [note], "note": [note]})
        prepo.add_observations(s, project_id=project.id, frame=facts, kind="tabular", source="f")
        project_id = project.id
    with database.session() as s:
        stored = prepo.observations_frame(s, project_id=project_id, pseudonym="Paaa")
        assert stored["note"].iloc[0] == note and stored["value_text"].iloc[0] == note
    long_name = "a_feature_name_exported_by_a_laboratory_system_" * 3
    frame = pd.DataFrame({long_name: [1.0]}, index=["Paaa"])
    with (
        pytest.raises(InvalidInputError, match=r"patient_features\.name holds at most 100"),
        database.session() as s,
    ):
        prepo.upsert_features(s, project_id=project_id, frame=frame)


def test_a_feature_keeps_one_unit(database: Database) -> None:
    """New patients' ages in months beside 150 in years were stored under 'months' for
    all; an import without units erased the recorded ones."""
    with database.session() as s:
        project = repo.create_project(s, name="cohort", classes=["no", "yes"], n_channels=1)
        years = pd.DataFrame({"age": [50.0, 60.0]}, index=["Paaa", "Pbbb"])
        prepo.upsert_features(s, project_id=project.id, frame=years, units={"age": "years"})
        project_id = project.id
    months = pd.DataFrame({"age": [600.0]}, index=["Pccc"])
    with (
        pytest.raises(InvalidInputError, match=r"'age' is in 'years'.*gives 'months'"),
        database.session() as s,
    ):
        prepo.upsert_features(s, project_id=project_id, frame=months, units={"age": "months"})
    with database.session() as s:  # no unit given: the feature keeps its own
        prepo.upsert_features(s, project_id=project_id, frame=years.head(1))
        assert {u for (u,) in s.execute(select(PatientFeature.unit)).all()} == {"years"}
        # every patient again, in another unit: a correction, not a mix
        prepo.upsert_features(s, project_id=project_id, frame=years * 12, units={"age": "months"})
        units = {u for (u,) in s.execute(select(PatientFeature.unit)).all()}
    assert units == {"months"}


def test_a_patient_without_any_value_still_counts(database: Database) -> None:
    """A patient whose cells were all empty had no feature row and so was left out of
    the cohort: 1 missing crp of 3 was reported as none of 2."""
    with database.session() as s:
        project = repo.create_project(s, name="cohort", classes=["no", "yes"], n_channels=1)
        frame = pd.DataFrame({"crp": [5.2, np.nan, 0.4]}, index=["Paaa", "Pbbb", "Pccc"])
        prepo.upsert_features(s, project_id=project.id, frame=frame)
        project_id = project.id
    with database.session() as s:
        wide = prepo.features_frame(s, project_id=project_id)
        assert wide.index.tolist() == ["Paaa", "Pbbb", "Pccc"]
        assert wide["crp"].isna().tolist() == [False, True, False]
        assert prepo.count_patients(s, project_id=project_id) == 3
        one = prepo.features_frame(s, project_id=project_id, pseudonyms=["Pbbb", "Pzzz"])
        assert one.index.tolist() == ["Pbbb"] and one.columns.empty  # nothing to show


def test_a_fact_is_stored_once_however_often_it_is_imported(database: Database) -> None:
    """Importing the same file twice stored every fact twice (2 facts became 4)."""
    facts = pd.DataFrame(
        {
            "patient": ["Paaa", "Paaa", "Pbbb"],
            "code": ["718-7", "718-7", "718-7"],
            "value": [13.4, 12.9, "<0.5"],
            "unit": ["g/dL", "g/dL", "g/dL"],
            "time": ["2024-01-02", "2024-02-02", "2024-01-02"],
            "note": [None, "repeat", None],
        }
    )
    with database.session() as s:
        project = repo.create_project(s, name="cohort", classes=["no", "yes"], n_channels=1)
        add = dict(project_id=project.id, kind="observation", source="file:F1")
        assert prepo.add_observations(s, frame=facts, **add) == 3
        assert prepo.add_observations(s, frame=facts, **add) == 0
        # an overlapping export from another file adds only what is new
        later = facts.iloc[[1]].assign(value=12.0, time="2024-03-02")
        other = {**add, "source": "file:F2"}
        assert prepo.add_observations(s, frame=pd.concat([facts, later]), **other) == 1
        # the same values as another kind of fact are another fact
        assert prepo.add_observations(s, frame=facts.head(1), **{**add, "kind": "tabular"}) == 1
        # a file's own repeats are its facts: two readings alike are kept as two, once
        twice = facts.iloc[[0, 0]].assign(time="2024-04-02")
        assert prepo.add_observations(s, frame=twice, **add) == 2
        assert prepo.add_observations(s, frame=twice, **add) == 0
        stored = prepo.observations_frame(s, project_id=project.id)
    assert len(stored) == 7
    assert stored["value_text"].tolist().count("<0.5") == 1
