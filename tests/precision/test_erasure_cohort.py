"""Erasing a cohort's patient: their facts, recommendations and decisions go; the risk
and effects models trained on them are marked, and doctors are told to retrain."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import func, select
from test_precision_workflow import trial_csv

from cli_support import run
from medloop.config import Settings
from medloop.store.models import AuditEntry, Recommendation, RiskModelPatient, TreatmentDecision
from medloop.types import Role
from medloop.workflows import Workspace, accounts
from medloop.workflows import precision as wf


def test_an_erased_patients_models_are_marked_for_retraining(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    ws = Workspace.open(Settings())
    try:
        wf.import_patients_table(
            ws, project="trial", path=trial_csv(tmp_path / "t.csv", n=160), id_column="mrn"
        )
        wf.train_risk(
            ws,
            project="trial",
            time_column="time",
            event_column="event",
            method="cox",
            n_bootstrap=0,
            exclude=["tx"],
        )
        wf.train_effects(
            ws,
            project="trial",
            treatment_column="tx",
            event_column="event",
            time_column="time",
            base="linear",
            n_bootstrap=0,
        )
        with ws.db.session() as s:  # each learned from its rows (effects: those followed up)
            lineage = s.execute(
                select(RiskModelPatient.risk_model_version_id, func.count())
                .group_by(RiskModelPatient.risk_model_version_id)
                .order_by(RiskModelPatient.risk_model_version_id)
            ).all()
            assert lineage[0][1] == 160
        accounts.add_user(
            ws, username="dr_grey", role=Role.DOCTOR, password="correct horse battery"
        )
        view = wf.recommend(ws, project="trial", patient="MRN000001")
        wf.decide(ws, recommendation_id=view.recommendation_id, doctor="dr_grey", decision="accept")
        pseudonym = wf.resolve_patient(ws, project="trial", patient="MRN000001")
    finally:
        ws.close()

    code, out, err = run(
        monkeypatch,
        capsys,
        "patients",
        "erase",
        "MRN000001",
        "-p",
        "trial",
        "--reason",
        "consent withdrawn",
        "--yes",
    )
    assert code == 0, err
    assert "trained on this patient's data, marked (not deleted)" in out
    code, out, err = run(monkeypatch, capsys, "risk", "list", "-p", "trial", "--json")
    marked = {(v["kind"], v["erased_patients"]) for v in json.loads(out)["versions"]}
    assert marked == {("survival", 1), ("effects", 1)}
    code, out, err = run(monkeypatch, capsys, "risk", "list", "-p", "trial")
    assert "(erased_patients): effects v1, survival v1; retrain" in " ".join(out.split())

    ws = Workspace.open(Settings())
    try:
        assert wf.count_patients(ws, project="trial") == 159
        with ws.db.session() as s:
            assert s.scalar(select(func.count(Recommendation.id))) == 0
            assert s.scalar(select(func.count(TreatmentDecision.id))) == 0
            details = [
                json.dumps([e.actor, e.entity_id, e.detail]) for e in s.scalars(select(AuditEntry))
            ]
        assert not any("MRN" in d for d in details)  # pseudonyms only, before and after
        assert sum(pseudonym in d for d in details) == 2  # recommend, patient.erased
        card = wf.risk_model_card(ws, project="trial")
        assert "data of a patient erased since" in card["warning"]
        other = wf.recommend(ws, project="trial", patient="MRN000002")
        assert any("erased since" in w for w in other.model_warnings)
    finally:
        ws.close()
