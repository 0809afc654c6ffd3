"""Rolling a cohort's risk or effects model back to an earlier version."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_precision_workflow import trial_csv

from cli_support import run
from medloop.config import Settings
from medloop.exceptions import InvalidInputError, NotFoundError
from medloop.store.models import Recommendation
from medloop.workflows import Workspace, risk_models
from medloop.workflows import precision as wf
from medloop.workflows.audit import audit_log


def _recommended_with(ws: Workspace) -> tuple[int | None, int | None]:
    """The (risk, effects) model ids a new recommendation for one patient used."""
    view = wf.recommend(ws, project="trial", patient="MRN000001")
    with ws.db.session() as s:
        row = s.get(Recommendation, view.recommendation_id)
        assert row is not None
        return row.risk_model_id, row.effect_model_id


def _ids(ws: Workspace) -> dict[tuple[str, int], int]:
    with ws.db.session() as s:
        return {(v.kind, v.version): v.id for v in wf.prepo.risk_models(s, project_id=1)}


def test_an_earlier_risk_or_effects_model_is_put_back_in_use(
    home: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    """The newest model of a cohort was always the one its patients' pages and
    recommendations used: a bad retraining could only be undone by training again."""
    ws = Workspace.open(Settings())
    try:
        wf.import_patients_table(
            ws, project="trial", path=trial_csv(tmp_path / "t.csv", n=160), id_column="mrn"
        )
        survival = dict(project="trial", time_column="time", event_column="event",
                        method="cox", n_bootstrap=0)  # fmt: skip
        wf.train_risk(ws, **survival, exclude=["tx"])
        wf.train_risk(ws, **survival, exclude=["tx", "marker"])  # a worse retraining
        effects = dict(project="trial", treatment_column="tx", event_column="event",
                       time_column="time", base="linear", n_bootstrap=0)  # fmt: skip
        wf.train_effects(ws, **effects)
        wf.train_effects(ws, **effects, exclude=["marker"])
        ids = _ids(ws)
        assert _recommended_with(ws) == (ids["survival", 2], ids["effects", 2])
        assert set(wf.predict_risk(ws, project="trial")["model_version"]) == {2}
    finally:
        ws.close()

    code, out, err = run(monkeypatch, capsys, "risk", "use", "-p", "trial", "survival", "1")
    assert code == 0 and "survival model v1 of 'trial' in use (was survival v2)" in out, err
    code, out, err = run(monkeypatch, capsys, "risk", "use", "-p", "trial", "effects", "1")
    assert code == 0 and "(was effects v2)" in out, err
    code, _, err = run(monkeypatch, capsys, "risk", "use", "-p", "trial", "effects", "7")
    assert code == 2 and "no effects model version 7; versions: [1, 2]" in err

    ws = Workspace.open(Settings())
    try:
        assert _recommended_with(ws) == (ids["survival", 1], ids["effects", 1])
        assert set(wf.predict_risk(ws, project="trial")["model_version"]) == {1}
        assert wf.risk_model_card(ws, project="trial")["name"].startswith("v1 cox")
        entries = audit_log(ws, action="risk_model.use").entries
        assert [(e.actor, e.detail["kind"], e.detail["version"]) for e in entries] == [
            ("cli", "effects", 1),
            ("cli", "survival", 1),
        ]
        assert entries[1].detail["previous"] == ["survival", 2]
        # an outcome classifier trained next is the risk model; it can be rolled back too
        wf.train_risk_classifier(ws, project="trial", outcome_column="event",
                                 exclude=["tx", "time"], n_bootstrap=0)  # fmt: skip
        assert _recommended_with(ws)[0] == _ids(ws)["classification", 1]
        previous = risk_models.use_risk_model(
            ws, project="trial", kind="survival", version=2, actor="ops"
        )
        assert previous == ("classification", 1)
        assert _recommended_with(ws) == (ids["survival", 2], ids["effects", 1])
        with pytest.raises(InvalidInputError, match="kinds"):
            risk_models.use_risk_model(ws, project="trial", kind="cox", version=1, actor="x")
        with pytest.raises(NotFoundError):
            risk_models.use_risk_model(ws, project="nowhere", kind="survival", version=1,
                                       actor="x")  # fmt: skip
    finally:
        ws.close()

    code, out, err = run(monkeypatch, capsys, "risk", "list", "-p", "trial", "--json")
    assert code == 0, err
    listed = json.loads(out)
    in_use = {(v["kind"], v["version"]): v["in_use_as"] for v in listed["versions"]}
    assert in_use == {
        ("classification", 1): None,
        ("effects", 1): "effects",
        ("effects", 2): None,
        ("survival", 1): None,
        ("survival", 2): "risk",
    }
    risk_periods = [(p["kind"], p["version"], p["how"]) for p in listed["in_use"]
                    if p["as"] == "risk"]  # fmt: skip
    assert risk_periods == [
        ("survival", 1, "train_risk"),
        ("survival", 2, "train_risk"),
        ("survival", 1, "risk_model.use"),
        ("classification", 1, "train_risk"),
        ("survival", 2, "risk_model.use"),
    ]
    assert all(p["until"] for p in listed["in_use"][:-1] if p["as"] == "risk")
    monkeypatch.setenv("COLUMNS", "80")
    code, out, _ = run(monkeypatch, capsys, "risk", "list", "-p", "trial")
    assert code == 0 and "model versions of trial" in out
    assert "survival v2" in out  # kind and version in one column
    assert max(len(line) for line in out.splitlines()) <= 80


def test_an_effects_model_takes_its_horizon_from_the_survival_model_in_use(
    tmp_path: Path,
) -> None:
    """The default effects horizon came from the newest survival model, also after a
    rollback: the patient page then spoke of two times (risk by v1's horizon, benefit
    by v2's)."""
    ws = Workspace.open(Settings(home=tmp_path / "home", secret_key="k"))
    try:
        wf.import_patients_table(
            ws, project="trial", path=trial_csv(tmp_path / "t.csv"), id_column="mrn"
        )
        survival = dict(project="trial", time_column="time", event_column="event",
                        method="cox", n_bootstrap=0, exclude=["tx"])  # fmt: skip
        wf.train_risk(ws, **survival)
        with ws.db.session() as s:
            frame = wf.prepo.features_frame(s, project_id=1)
            wf.prepo.upsert_features(s, project_id=1, frame=1.5 * frame[["time"]])
        wf.train_risk(ws, **survival)  # v2 states its risk by a later time
        with ws.db.session() as s:
            versions = wf.prepo.risk_models(s, project_id=1)
            horizons = {v.version: v.target["horizon"] for v in versions}
        assert horizons[2] == pytest.approx(1.5 * horizons[1])
        risk_models.use_risk_model(ws, project="trial", kind="survival", version=1, actor="ops")
        effects = dict(project="trial", treatment_column="tx", event_column="event",
                       time_column="time", base="linear", n_bootstrap=0)  # fmt: skip
        wf.train_effects(ws, **effects)
        view = wf.recommend(ws, project="trial", patient="MRN000001")
        assert view.horizon == view.effect_horizon == horizons[1]
    finally:
        ws.close()
