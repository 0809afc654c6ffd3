"""Patients in, models trained, a recommendation, the doctor's decision audited; and the CLI."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import select

from cli_support import run as run_cli
from medloop.config import Settings
from medloop.exceptions import InvalidInputError, NotFoundError, UnknownOptionError
from medloop.precision import LinearSurrogate
from medloop.store import patients as prepo
from medloop.store import repository as repo
from medloop.store.models import User
from medloop.types import Role
from medloop.workflows import LoopSettings, Workspace, dashboard, plan_requests, run_loop
from medloop.workflows import precision as wf
from medloop.workflows.annotate import publish_tasks
from medloop.workflows.export import export_answers, export_coco, export_labels
from medloop.workflows.review import review_entries


def trial_csv(path: Path, n: int = 240, seed: int = 0, comment: bool = False) -> Path:
    """A small randomised trial: treatment helps patients with high `marker` only; with
    `comment`, a free-text column naming each patient's record number and phone."""
    rng = np.random.default_rng(seed)
    marker = rng.normal(size=n)
    age = rng.normal(60, 8, n).round()
    tx = rng.integers(0, 2, n)
    hazard = np.exp(0.8 * marker - 1.5 * tx * (marker > 0) + 0.02 * (age - 60))
    time = rng.exponential(1 / hazard) * 365
    censor = rng.uniform(100, 700, n)
    frame = pd.DataFrame(
        {
            "mrn": [f"MRN{i:06d}" for i in range(n)],
            "age": age,
            "marker": marker.round(3),
            "stage": rng.choice(["I", "II"], n),
            "tx": tx,
            "time": np.minimum(time, censor).round(1),
            "event": (time <= censor).astype(int),
            "comment": [f"MRN{i:06d} reachable at 555-010-{i:04d}" for i in range(n)],
        }
    )
    frame.drop(columns=[] if comment else ["comment"]).to_csv(path, index=False)
    return path


Cli = Callable[..., tuple[int, str, str]]


@pytest.fixture
def cli(home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Cli:
    """`medloop ARGS...` in a fresh home: (exit code, stdout, stderr)."""

    def run(*args: str) -> tuple[int, str, str]:
        return run_cli(monkeypatch, capsys, *args)

    return run


def imported_cohort(cli: Cli, tmp_path: Path, project: str, n: int = 160) -> None:
    csv = trial_csv(tmp_path / "t.csv", n=n)
    assert cli("patients", "import", str(csv), "-p", project, "--id-column", "mrn")[0] == 0


def test_workflow_end_to_end(tmp_path: Path) -> None:
    ws = Workspace.open(Settings(home=tmp_path / "home", secret_key="k"))
    try:
        summary = wf.import_patients_table(
            ws,
            project="trial",
            path=trial_csv(tmp_path / "t.csv", comment=True),
            id_column="mrn",
            text_columns=["comment"],
        )
        assert (summary.patients, summary.observations) == (240, 240)
        calls: list[tuple[str, int, int]] = []

        def record(stage: str, done: int, total: int) -> None:
            calls.append((stage.split(":")[0], done, total))

        risk = wf.train_risk(
            ws,
            project="trial",
            time_column="time",
            event_column="event",
            exclude=["tx"],
            method="cox",
            n_bootstrap=39,
            progress=record,
        )
        assert risk.metrics["cindex"] > 0.6 and 0 < risk.metrics["cindex_sd"] < 0.1
        assert risk.evaluation == "out of fold, over 5 stratified folds"
        assert calls == [("risk model", done, 45) for done in range(46)]  # 5 folds + 1 + 39
        calls.clear()
        effects = wf.train_effects(
            ws,
            project="trial",
            treatment_column="tx",
            event_column="event",
            time_column="time",
            base="linear",
            n_bootstrap=39,
            progress=record,
        )
        assert effects.version == 1 and "marker" in effects.features
        assert "time" not in effects.features
        # the fit, 39 refits and the heterogeneity test's 5 folds
        assert calls == [("effects model", done, 45) for done in range(46)]
        with ws.db.session() as s:
            stored = wf._current_models(s, project_id=1)
        target = stored[wf.EFFECTS].target
        # event-free by the survival model's horizon; those censored before it left out
        assert target["horizon"] == stored["survival"].target["horizon"]
        assert target["time"] == "time" and target["censored_before"] > 0
        assert effects.n_train == 240 - target["censored_before"]
        predicted = wf.predict_risk(ws, project="trial")
        assert len(predicted) == 240 and predicted["risk"].between(0, 1).all()
        view = wf.recommend(ws, project="trial", patient="MRN000001")  # raw id is resolved
        assert view.patient.startswith("P") and "MRN" not in view.patient
        assert 0 <= view.risk <= 1
        assert predicted.loc[view.patient, "risk"] == pytest.approx(view.risk)
        assert predicted.loc[view.patient, "horizon"] == view.horizon
        assert predicted.loc[view.patient, ["risk_lower", "risk_upper"]].tolist() == [
            pytest.approx(view.risk_lower),
            pytest.approx(view.risk_upper),
        ]  # the band's interval at the horizon
        assert (predicted["risk_lower"] < predicted["risk_upper"]).all()
        # one row per clinical variable (its categories together), never a column twice
        named = [d["feature"] for d in view.risk_drivers]
        assert set(named) <= {"age", "marker", "stage"} and len(set(named)) == len(named)
        reads: list[str] = []
        read_blob = ws.blobs.get
        ws.blobs.get = lambda sha: reads.append(sha) or read_blob(sha)  # type: ignore[method-assign]
        riskiest = wf.recommend(ws, project="trial", patient=predicted["risk"].idxmax())
        assert reads == [], "models already used are not read and unpickled again"
        strongest = riskiest.risk_drivers[0]
        assert strongest["feature"] == "marker" and strongest["scale"] == "hazard"
        assert strongest["factor"] == pytest.approx(np.exp(strongest["contribution"]))
        assert strongest["factor"] > 2  # the planted risk factor, at this patient's value
        assert view.benefit_lower <= view.benefit <= view.benefit_upper
        assert view.effect_horizon == view.horizon
        assert view.effect_outcome == f"event-free by {view.horizon:g} time units"
        assert view.options == ["treat", "no treatment"]
        assert view.drivers and view.drivers[0]["feature"]
        with ws.db.session() as s:
            repo.create_user(s, username="dr_a", role=Role.DOCTOR)
        with pytest.raises(InvalidInputError, match="reason"):
            wf.decide(
                ws,
                recommendation_id=view.recommendation_id,
                doctor="dr_a",
                decision="override",
                treatment="no treatment",
            )
        decision = wf.decide(
            ws,
            recommendation_id=view.recommendation_id,
            doctor="dr_a",
            decision="override",
            treatment="no treatment",
            reason="patient prefers to wait",
        )
        assert decision.reason == "patient prefers to wait"
        with ws.db.session() as s:
            log = repo.audit_frame(s)
            repo.create_user(s, username="lay", role="annotator")  # type: ignore[arg-type]
        entry = log[log["action"] == "treatment_override"].iloc[0]
        assert entry["actor"] == "dr_a"
        assert entry["detail"]["reason"] == "patient prefers to wait"
        with pytest.raises(InvalidInputError, match="'lay' has the role annotator"):
            wf.decide(
                ws,
                recommendation_id=view.recommendation_id,
                doctor="lay",
                decision="accept",
                treatment="treat",
            )
        page = wf.patient_record(ws, project="trial", patient=view.patient)
        assert page["recommendation"]["recommendation_id"] == view.recommendation_id
        assert page["decisions"][0]["reason"] == "patient prefers to wait"
        assert page["facts"][0]["note"].startswith("[REDACTED] reachable at [PHONE]")
        assert "marker" in page["features"]
        assert set(page["outcome"]) == {"time", "event", "tx"}  # the models' targets
        assert not set(page["outcome"]) & set(page["features"])
        with ws.db.session() as s:
            model = wf.prepo.latest_risk_model(s, project_id=1, kind="survival")
            # every patient's out-of-fold prediction, in five groups
            assert [r["n"] for r in model.metrics["calibration"]] == [48] * 5
            stored = repo.audit_frame(s).to_csv() + str(
                wf.prepo.observations_frame(s, project_id=1).to_dict()
            )
        assert "MRN000001" not in stored and "555-010" not in stored
    finally:
        ws.close()


def test_cli_patients_risk_recommend(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    csv = trial_csv(tmp_path / "t.csv", n=160, comment=True)

    def run(*args: str) -> tuple[int, str, str]:
        return run_cli(monkeypatch, capsys, *args)

    code, _, err = run(
        "patients", "import", str(csv), "-p", "trial", "--id-column", "mrn", "--unit", "days"
    )
    assert code == 2 and "--unit expects FEATURE=UNIT" in err
    code, out, _ = run(
        "patients", "import", str(csv), "-p", "trial", "--id-column", "mrn", "--text", "comment",
        "--unit", "time=days", "--unit", "age=years",
    )  # fmt: skip
    assert code == 0 and "imported 160 patients" in out
    code, out, _ = run(
        "risk",
        "train",
        "-p",
        "trial",
        "--treatment",
        "tx",
        "--method",
        "cox",
        "--base",
        "linear",
        "--json",
    )
    assert code == 0
    kinds = [json.loads(line)["kind"] for line in out.strip().splitlines()]
    assert kinds == ["survival", "effects"]
    cindex = json.loads(out.splitlines()[0])["metrics"]["cindex"]
    code, out, _ = run(
        "risk", "train", "-p", "trial", "--method", "cox", "--bootstrap", "0", "--exclude", "tx"
    )
    assert code == 0 and "{'" not in out
    assert f"survival model, out of fold, over 5 stratified folds: C-index {cindex:.3f}," in out
    code, out, _ = run("risk", "predict", "-p", "trial", "--json")
    everyone = pd.DataFrame(json.loads(out))
    assert code == 0 and len(everyone) == 160
    code, out, _ = run("risk", "predict", "-p", "trial", "--top", "5", "--json")
    top = pd.DataFrame(json.loads(out))
    highest = everyone.sort_values("risk", ascending=False, kind="stable").head(5)
    assert code == 0 and top["patient"].tolist() == highest["patient"].tolist()
    assert everyone["risk_lower"].isna().all()  # trained without bootstrap refits
    assert '"risk_lower": null' in out  # valid JSON: no NaN
    code, out, _ = run("risk", "predict", "-p", "trial", "--top", "3")
    horizon = f"{highest['horizon'].iloc[0]:g} days"
    assert code == 0 and "highest risk (3 of 160 patients)" in out
    assert f"risk of the event by {horizon}, survival model v2" in " ".join(out.split())
    assert f"{100 * highest['risk'].iloc[0]:.1f}%" in out
    assert "none (retrain the model for one)" in " ".join(out.split())
    code, out, _ = run("recommend", "MRN000002", "-p", "trial", "--json")
    result = json.loads(out)
    assert code == 0 and result["options"] == ["treat", "no treatment"]
    ws = Workspace.open(Settings())
    try:
        page = wf.patient_record(ws, project="trial", patient="MRN000002")
    finally:
        ws.close()
    assert page["units"] == {"time": "days", "age": "years"}
    assert page["recommendation"]["time_unit"] == "days"
    code, out, _ = run("recommend", "MRN000002", "-p", "trial")
    risk = f"risk of the event by {result['horizon']:g} days: {100 * result['risk']:.1f}%"
    assert code == 0 and risk in out and "'survival'" not in out  # no data dump
    assert result["effect_horizon"] == result["horizon"]  # the same time as the risk's
    event_free = f"P(event-free by {result['horizon']:g} days)"
    assert f"{100 * result['benefit']:+.1f} points of {event_free}" in " ".join(out.split())
    # the drivers are shown where the effect differs between patients, else the note says not
    assert result["heterogeneity_note"] in " ".join(out.split())
    shown = [f"{100 * d['contribution']:+.1f}" for d in result["drivers"]]
    assert bool(shown) == result["heterogeneity"]["evidence"] and all(s in out for s in shown)
    code, _, err = run("recommend", "MRN000002", "-p", "trial", "--override", "no treatment")
    assert code == 2 and "--doctor" in err
    decide = ("recommend", "MRN000002", "-p", "trial", "--override", "no treatment")
    code, _, err = run(*decide, "--reason", "guideline", "--doctor", "dr_typo")
    assert code == 2 and "no user named 'dr_typo'" in err and "users add dr_typo" in err
    assert run("users", "add", "dr_b", "--role", "doctor")[0] == 0
    code, _, err = run(*decide, "--doctor", "dr_b")
    assert code == 2 and "reason" in err
    code, out, _ = run(*decide, "--reason", "guideline", "--doctor", "dr_b", "--json")
    assert code == 0 and json.loads(out)["decision"]["reason"] == "guideline"
    ws = Workspace.open(Settings())
    try:
        with ws.db.session() as s:  # the typo created no account
            assert s.scalar(select(User).where(User.username == "dr_typo")) is None
    finally:
        ws.close()
    code, _, err = run("patients", "import", str(csv), "-p", "trial", "--id-column", "nope")
    assert code == 2 and "t.csv" in err and "'nope'" in err


def test_reads_are_audited_and_decisions_stay_with_their_patient(tmp_path: Path) -> None:
    ws = Workspace.open(Settings(home=tmp_path / "home", secret_key="k"))
    try:
        wf.import_patients_table(
            ws, project="trial", path=trial_csv(tmp_path / "t.csv", n=120), id_column="mrn"
        )
        common = {"project": "trial", "event_column": "event", "seed": 0}
        wf.train_risk(
            ws, time_column="time", exclude=["tx"], method="cox", n_bootstrap=39, **common
        )
        wf.train_effects(ws, treatment_column="tx", exclude=["time"], base="linear", **common)
        assert wf.cohort_overview(ws) == [
            {
                "project": "trial",
                "patients": 120,
                "risk_model": "v1 cox",
                "effects_model": "v1 t-learner/linear",
            }
        ]
        rows = wf.list_patients(ws, project="trial", viewer="dr_a", limit=5, offset=2)
        assert len(rows) == 5 and rows[0]["recommendation"] is None
        page = wf.patient_record(ws, project="trial", patient=rows[0]["patient"])
        assert rows[0]["features"] == len(page["features"])  # time, event, tx apart
        assert set(page["outcome"]) == {"time", "event", "tx"}
        first, second = rows[0]["patient"], rows[1]["patient"]
        view = wf.recommend(ws, project="trial", patient=first)
        assert view.risk_lower is not None and view.risk_upper is not None
        assert view.risk_lower <= view.risk <= view.risk_upper
        assert [o["option"] for o in view.option_estimates] == ["treat", "no treatment"]
        page = wf.view_patient(ws, project="trial", patient=first, viewer="dr_a")
        assert page["recommendation"]["risk_interval"] == [view.risk_lower, view.risk_upper]
        assert wf.survival_chart(ws, project="trial", patient=first, viewer="dr_b")[:4] == (
            b"\x89PNG"
        )
        with ws.db.session() as s:
            log = repo.audit_frame(s)
        reads = log[log["action"] == "view_patient"]
        assert list(zip(reads["actor"], reads["entity_id"], strict=True)) == [
            ("dr_b", first),  # newest first
            ("dr_a", first),
        ]
        listed = log[log["action"] == "view_patients"].iloc[0]
        assert listed["actor"] == "dr_a" and listed["detail"]["patients"][0] == first
        with ws.db.session() as s:
            repo.create_user(s, username="dr_a", role=Role.DOCTOR)
        with pytest.raises(InvalidInputError, match="not about patient"):
            wf.decide(
                ws,
                recommendation_id=view.recommendation_id,
                doctor="dr_a",
                decision="accept",
                patient=second,
            )
        suggested = view.suggested_treatment
        other = next(o for o in view.options if o != suggested)  # any option if none
        refusal = "override" if suggested else "choose the treatment"
        with pytest.raises(InvalidInputError, match=refusal):
            wf.decide(
                ws,
                recommendation_id=view.recommendation_id,
                doctor="dr_a",
                decision="accept",
                treatment=other if suggested else None,
            )
        if suggested:  # overriding with what the model suggests is an accept, not an override
            with pytest.raises(InvalidInputError, match="accept it rather than override"):
                wf.decide(
                    ws,
                    recommendation_id=view.recommendation_id,
                    doctor="dr_a",
                    decision="override",
                    treatment=suggested,
                    reason="same thing",
                )
    finally:
        ws.close()


def test_a_cohort_without_follow_up_time_gets_a_calibrated_classifier(tmp_path: Path) -> None:
    ws = Workspace.open(Settings(home=tmp_path / "home", secret_key="k"))
    try:
        wf.import_patients_table(
            ws, project="trial", path=trial_csv(tmp_path / "t.csv"), id_column="mrn"
        )
        with pytest.raises(InvalidInputError, match="'age' must be 0/1"):
            wf.train_risk_classifier(ws, project="trial", outcome_column="age")
        with pytest.raises(InvalidInputError, match="no column"):
            wf.train_risk_classifier(ws, project="trial", outcome_column="relapse")
        with pytest.raises(UnknownOptionError, match="unknown method 'cox'"):
            wf.train_risk_classifier(ws, project="trial", outcome_column="event", method="cox")
        with pytest.raises(UnknownOptionError, match="unknown method 'gbm'"):
            wf.train_risk(
                ws, project="trial", time_column="time", event_column="event", method="gbm"
            )
        calls: list[tuple[int, int]] = []
        trained = wf.train_risk_classifier(
            ws,
            project="trial",
            outcome_column="event",
            exclude=["time", "tx"],
            method="gbm",
            n_bootstrap=39,
            progress=lambda _stage, done, total: calls.append((done, total)),
        )
        assert trained.kind == "classification" and "time" not in trained.features
        assert trained.metrics["auc"] > 0.6 and 0 < trained.metrics["brier"] < 0.25
        # 5 folds, the final fit, then 39 bootstrap refits for the intervals
        assert calls == [(done, 45) for done in range(46)]
        predicted = wf.predict_risk(ws, project="trial")
        assert predicted["model_kind"].eq("classification").all()
        assert predicted["outcome"].eq("event").all() and predicted["horizon"].isna().all()
        assert predicted["risk"].between(0, 1).all() and predicted["risk"].nunique() > 100
        assert (predicted["risk_lower"] <= predicted["risk_upper"]).all()
        assert (predicted["risk_lower"] < predicted["risk_upper"]).mean() > 0.9
        high = predicted["risk"].idxmax()
        by_raw_id = wf.predict_risk(ws, project="trial", patients=["MRN000001"])
        assert len(by_raw_id) == 1 and by_raw_id.index[0].startswith("P")
        with pytest.raises(NotFoundError, match="no patient 'MRN999999'"):
            wf.predict_risk(ws, project="trial", patients=["MRN999999"])
        view = wf.recommend(ws, project="trial", patient=high)
        assert view.risk == pytest.approx(predicted.loc[high, "risk"])
        assert view.outcome == "event" and view.horizon is None and view.survival == {}
        assert [view.risk_lower, view.risk_upper] == [
            pytest.approx(predicted.loc[high, "risk_lower"]),
            pytest.approx(predicted.loc[high, "risk_upper"]),
        ]
        # the planted risk factor drives the riskiest patient's risk up
        strongest = view.risk_drivers[0]
        assert strongest["feature"] == "marker" and strongest["scale"] == "odds"
        assert strongest["factor"] > 1
        assert len(view.risk_drivers) == 3
        with ws.db.session() as s:
            repo.create_user(s, username="dr_a", role=Role.DOCTOR)
        with pytest.raises(InvalidInputError, match="no treatment-effect model"):
            wf.decide(
                ws,
                recommendation_id=view.recommendation_id,
                doctor="dr_a",
                decision="override",
                treatment="banana",
                reason="x",
            )
        page = wf.patient_record(ws, project="trial", patient=high)
        assert page["recommendation"]["classifier_version"] == 1
        assert set(page["outcome"]) == {"event"} and "time" in page["features"]
        rows = wf.list_patients(ws, project="trial", viewer="dr_a", limit=3, order="risk")
        assert rows[0]["patient"] == high and rows[0]["outcome"] == "event"
        assert wf.cohort_overview(ws)[0]["risk_model"] == "v1 gbm classifier of event"
        wf.train_risk(
            ws, project="trial", time_column="time", event_column="event", method="cox",
            n_bootstrap=0,
        )  # fmt: skip
        assert wf.predict_risk(ws, project="trial")["model_kind"].eq("survival").all()
        wf.train_risk_classifier(
            ws, project="trial", outcome_column="event", exclude=["time", "tx"], n_bootstrap=0
        )  # the one trained last is the one in use, whichever kind
        assert wf.predict_risk(ws, project="trial")["model_kind"].eq("classification").all()
    finally:
        ws.close()


def test_cli_trains_and_uses_an_outcome_classifier(tmp_path: Path, cli: Cli) -> None:
    imported_cohort(cli, tmp_path, "c")
    train = ["risk", "train", "-p", "c", "--outcome", "event", "--exclude", "time"]
    code, out, err = cli(*train, "--treatment", "tx", "--base", "linear", "--json")
    assert code == 0, err
    first, second = (json.loads(line) for line in out.strip().splitlines())
    assert (first["kind"], first["method"], second["kind"]) == (
        "classification",
        "logistic",
        "effects",
    )
    code, _, err = cli(*train, "--treatment", "tx", "--effects-horizon", "300")
    assert code == 2 and "--effects-horizon is for the effects of --treatment on survival" in err
    code, out, _ = cli(*train, "--method", "gbm")
    assert code == 0 and "classifier of event, out of fold, over 5 stratified folds: AUC" in out
    code, out, _ = cli("risk", "predict", "-p", "c", "--top", "1", "--json")
    (top,) = json.loads(out)
    assert (top["model_kind"], top["model_version"], top["outcome"]) == (
        "classification",
        2,
        "event",
    )
    code, out, _ = cli("recommend", top["patient"], "-p", "c")
    interval = f"{100 * top['risk_lower']:.1f}-{100 * top['risk_upper']:.1f}%"
    expected = f"risk of event: {100 * top['risk']:.1f}% (95% bootstrap interval {interval};"
    assert code == 0 and f"{expected} calibrated classifier)" in out
    assert "points of P(free of the event during follow-up)" in out  # no time, no horizon
    assert "what drives the risk" in out and "marker" in out
    code, _, err = cli(*train, "--method", "cox")
    assert code == 2 and "cox" in err


def null_trial_csv(path: Path, n: int = 400, seed: int = 0) -> Path:
    """A randomised trial where treatment does nothing to the event time, but the treated
    drop out much earlier (censored over 100-1500 days, the controls over 1500-2500)."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    tx = np.arange(n) % 2
    event_time = rng.exponential(1000 * np.exp(-0.7 * x1))
    censor = np.where(tx == 1, rng.uniform(100, 1500, n), rng.uniform(1500, 2500, n))
    pd.DataFrame(
        {
            "id": [f"N{i:04d}" for i in range(n)],
            "x1": x1.round(3),
            "x2": x2.round(3),
            "tx": tx,
            "time": np.minimum(event_time, censor).round(1),
            "event": (event_time <= censor).astype(int),
        }
    ).to_csv(path, index=False)
    return path


def test_earlier_dropout_of_the_treated_is_no_benefit(tmp_path: Path, cli: Cli) -> None:
    """The audit's simulated trial: "no event during the patient's own follow-up" made
    the treated look better because fewer of their events were seen ("treat: clear
    benefit" for 25 of 40 patients). Event-free by the risk model's horizon, with
    censoring weights per arm, finds no benefit."""
    csv = null_trial_csv(tmp_path / "null.csv")
    code, _, err = cli("patients", "import", str(csv), "-p", "null", "--id-column", "id",
                       "--unit", "time=days")  # fmt: skip
    assert code == 0, err
    code, _, err = cli("risk", "train", "-p", "null", "--treatment", "tx", "--method", "cox",
                       "--base", "linear", "--bootstrap", "0")  # fmt: skip
    assert code == 0, err
    ws = Workspace.open(Settings())
    try:
        views = [wf.recommend(ws, project="null", patient=f"N{i:04d}") for i in range(40)]
    finally:
        ws.close()
    benefit = np.array([v.benefit for v in views])
    lower = np.array([v.benefit_lower for v in views])
    upper = np.array([v.benefit_upper for v in views])
    clear = sum(v.recommendation == wf.CLEAR_BENEFIT for v in views)
    assert clear <= 4, f"clear benefit for {clear} of 40 patients of a null trial"
    assert abs(benefit.mean()) < 0.05 and lower.mean() < 0 < upper.mean()
    horizon = views[0].horizon
    assert views[0].effect_horizon == horizon
    code, out, _ = cli("recommend", "N0001", "-p", "null")
    assert code == 0 and f"points of P(event-free by {horizon:g} days)" in out


def test_the_effects_horizon_can_be_chosen_and_is_refused_past_the_follow_up(
    tmp_path: Path,
) -> None:
    ws = Workspace.open(Settings(home=tmp_path / "home", secret_key="k"))
    try:
        wf.import_patients_table(
            ws, project="n", path=null_trial_csv(tmp_path / "n.csv", n=200), id_column="id"
        )
        common = {"project": "n", "treatment_column": "tx", "event_column": "event"}
        with pytest.raises(InvalidInputError, match="horizon needs the follow-up time"):
            wf.train_effects(ws, **common, horizon=300.0, exclude=["time"])
        # the treated are all censored by 1500 days
        refusal = r"at least 5 treated and 5 control patients followed up to the horizon \(1600\)"
        with pytest.raises(InvalidInputError, match=refusal):
            wf.train_effects(ws, **common, time_column="time", horizon=1600.0)
        wf.train_effects(ws, **common, time_column="time", horizon=300.0, n_bootstrap=0)
        view = wf.recommend(ws, project="n", patient="N0003")
        assert view.horizon is None  # no risk model: the effects model says its own time
        assert (view.effect_horizon, view.effect_outcome) == (300.0, "event-free by 300 time units")
        page = wf.patient_record(ws, project="n", patient="N0003")
        assert page["recommendation"]["effect_outcome"] == "event-free by 300 time units"
        assert set(page["outcome"]) == {"time", "event", "tx"}  # time: the effects' target
    finally:
        ws.close()


def test_the_feature_table_is_documented(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    table = pd.read_csv(trial_csv(tmp_path / "t.csv", n=120, comment=True))
    table.loc[:29, "age"] = np.nan  # a quarter of the ages unknown
    table.drop(columns="comment").to_csv(tmp_path / "gaps.csv", index=False)
    ws = Workspace.open(Settings())
    try:
        wf.import_patients_table(
            ws, project="c", path=tmp_path / "gaps.csv", id_column="mrn", units={"age": "years"}
        )
        common = {"project": "c", "event_column": "event", "seed": 0}
        wf.train_risk(ws, time_column="time", exclude=["tx"], method="cox", n_bootstrap=0, **common)
        wf.train_effects(ws, treatment_column="tx", exclude=["time"], base="linear", **common)
        doc = wf.describe_features(ws, project="c")
    finally:
        ws.close()
    assert set(doc.index) == {"age", "marker", "stage", "tx", "time", "event"}
    assert doc["role"].to_dict() == {
        "age": "feature", "marker": "feature", "stage": "feature",
        "tx": "treatment", "time": "time", "event": "event",
    }  # fmt: skip
    age = doc.loc["age"]
    assert (age["unit"], age["patients"], age["missing"]) == ("years", 90, 0.25)
    assert age["median"] == table["age"].median()
    assert age["models"] == "survival v1, effects v1"  # used as age and age_missing
    stage = doc.loc["stage"]
    assert stage["kind"] == "categorical" and set(stage["values"].split(", ")) == {"I", "II"}
    assert pd.isna(stage["median"]) and stage["models"] == "survival v1, effects v1"  # one-hot
    assert doc.loc["time", "models"] == doc.loc["tx", "models"] == ""  # targets, not features
    code, out, _ = run_cli(monkeypatch, capsys, "patients", "features", "-p", "c")
    assert code == 0 and "25%" in out and "years" in out and "treatment" in out
    code, out, _ = run_cli(monkeypatch, capsys, "patients", "features", "-p", "c", "--json")
    assert code == 0 and {r["feature"] for r in json.loads(out)} == set(doc.index)


def test_cli_evaluates_the_cohort_risk_model(tmp_path: Path, cli: Cli) -> None:
    imported_cohort(cli, tmp_path, "c")
    code, _, err = cli("risk", "evaluate", "-p", "c")
    assert code == 2 and "no risk model yet" in err
    train = ["risk", "train", "-p", "c", "--method", "cox", "--bootstrap", "0", "--json"]
    assert cli(*train)[0] == 0
    chart = tmp_path / "charts" / "calibration.png"
    code, out, _ = cli("risk", "evaluate", "-p", "c", "--calibration", str(chart), "--json")
    card = json.loads(out)
    assert code == 0 and card["name"] == "v1 cox" and chart.read_bytes().startswith(b"\x89PNG")
    code, out, _ = cli("risk", "evaluate", "-p", "c")
    first = f"{100 * card['calibration']['predicted'][0]:.1f}%"
    assert code == 0 and "out of fold, over 5 stratified folds" in out and first in out
    cindex = f"{card['metrics']['cindex']:.4f} ± {card['spread']['cindex']:.4f} (sd across"
    assert cindex in out
    ws = Workspace.open(Settings())
    try:  # a model stored before survival models were cross-validated says how it was scored
        with ws.db.session() as s:
            version = wf.prepo.latest_risk_model(s, project_id=1, kind="survival")
            version.target = {"time": "time", "event": "event", "horizon": 1.0, "test_size": 0.25}
    finally:
        ws.close()
    code, out, _ = cli("risk", "evaluate", "-p", "c")
    assert code == 0 and "on a held-out 25% of the cohort" in out


def test_patients_and_images_never_share_a_project(tmp_path: Path) -> None:
    ws = Workspace.open(Settings(home=tmp_path / "home", secret_key="k"))
    try:
        with ws.db.session() as s:
            repo.create_project(s, name="chest", classes=["normal", "pneumonia"], n_channels=1)
        csv = trial_csv(tmp_path / "t.csv", n=40)
        with pytest.raises(InvalidInputError, match="'chest' holds images to label"):
            wf.import_patients_table(ws, project="chest", path=csv, id_column="mrn")
        with pytest.raises(InvalidInputError, match="'chest' holds images"):
            wf.predict_risk(ws, project="chest")
        wf.import_patients_table(ws, project="cohort", path=csv, id_column="mrn")
        labelling = (
            lambda: run_loop(ws, project="cohort", settings=LoopSettings(rounds=1)),
            lambda: publish_tasks(ws, project="cohort", k=5),
            lambda: plan_requests(ws, project="cohort", budget=10),
            lambda: review_entries(ws, project="cohort"),
            lambda: export_labels(ws, project="cohort"),
            lambda: export_answers(ws, project="cohort"),
            lambda: export_coco(ws, project="cohort"),
            lambda: dashboard.project_dashboard(ws, project="cohort"),
        )
        for work in labelling:
            with pytest.raises(InvalidInputError, match="'cohort' is a patient cohort"):
                work()
        assert dashboard.list_projects(ws) == ["chest"]  # labelling pages list images only
        assert review_entries(ws) == []
    finally:
        ws.close()


def test_work_that_fails_before_any_progress_prints_only_its_error(cli: Cli) -> None:
    code, out, err = cli("risk", "train", "-p", "nowhere", "--time", "t", "--event", "e")
    assert code == 2 and out == ""
    assert err.startswith("error: no project named 'nowhere'")


def test_the_risk_ordered_list_is_kept_until_a_value_or_the_model_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ordering by risk scores the whole cohort: done once per model and feature values,
    not on every view (0.6 s a view on GBSG2)."""
    ws = Workspace.open(Settings(home=tmp_path / "home", secret_key="k"))
    try:
        wf.import_patients_table(
            ws, project="trial", path=trial_csv(tmp_path / "t.csv", n=80), id_column="mrn"
        )
        common = {"project": "trial", "event_column": "event", "exclude": ["tx"]}
        wf.train_risk(ws, time_column="time", method="cox", n_bootstrap=0, **common)
        scored: list[int] = []
        real = wf._risk_table
        monkeypatch.setattr(
            wf,
            "_risk_table",
            lambda ws, v, frame, units: scored.append(len(frame)) or real(ws, v, frame, units),
        )

        def ranking() -> dict[str, float]:
            rows = wf.list_patients(ws, project="trial", viewer="dr", limit=80, order="risk")
            return {r["patient"]: r["model_risk"] for r in rows}

        first = ranking()
        assert ranking() == first and scored == [80], "the second view scores nobody"
        middle = list(first)[40]
        with ws.db.session() as s:  # a middling patient's risk marker rises to the highest
            record = repo.get_project(s, name="trial")
            high = prepo.features_frame(s, project_id=record.id)["marker"].max()
            prepo.upsert_features(
                s, project_id=record.id, frame=pd.DataFrame({"marker": [high]}, index=[middle])
            )
        moved = ranking()
        assert scored == [80, 80] and moved[middle] > first[middle]
        assert list(moved).index(middle) < 40
        wf.train_risk(ws, time_column="time", method="cox", n_bootstrap=0, **common)
        before = len(scored)
        ranking()
        assert scored[before:] == [80], "a new model scores everyone again"
    finally:
        ws.close()


def test_an_effect_model_from_before_drivers_still_recommends(tmp_path: Path) -> None:
    """Effect models trained before 2026-12-07 kept no feature means: their
    recommendation comes without drivers instead of failing."""
    ws = Workspace.open(Settings(home=tmp_path / "home", secret_key="k"))
    try:
        wf.import_patients_table(
            ws, project="trial", path=trial_csv(tmp_path / "t.csv", n=160), id_column="mrn"
        )  # 10+ patients of each outcome in each arm
        wf.train_effects(
            ws, project="trial", treatment_column="tx", event_column="event", exclude=["time"],
            base="linear", n_bootstrap=0,
        )  # fmt: skip
        with ws.db.session() as s:
            version = wf._current_models(s, project_id=repo.get_project(s, name="trial").id)
        old = wf._load(ws, version[wf.EFFECTS].blob_sha256)["model"]
        del old.mean_  # the bundle as such a model unpickles (kept in ws.recent)
        view = wf.recommend(ws, project="trial", patient="MRN000003")
        assert view.drivers == [] and view.benefit is not None
    finally:
        ws.close()


@pytest.mark.parametrize("kind", ["survival", "classifier"])
def test_patients_without_outcome_get_an_interval_and_later_ones_are_told_why_not(
    tmp_path: Path, kind: str
) -> None:
    """The patients a risk model is for are those without follow-up yet: they get an
    interval from the same bootstrap refits; one added after training is told why not."""
    rows = pd.read_csv(trial_csv(tmp_path / "all.csv", n=250))
    rows.loc[200:239, ["time", "event"]] = np.nan  # in the cohort, not yet followed up
    rows.iloc[:240].to_csv(tmp_path / "first.csv", index=False)
    rows.iloc[240:].to_csv(tmp_path / "later.csv", index=False)
    ws = Workspace.open(Settings(home=tmp_path / "home", secret_key="k"))
    try:
        wf.import_patients_table(ws, project="trial", path=tmp_path / "first.csv", id_column="mrn")

        def train() -> None:
            if kind == "survival":
                wf.train_risk(
                    ws, project="trial", time_column="time", event_column="event",
                    exclude=["tx"], method="cox", n_bootstrap=39,
                )  # fmt: skip
            else:
                wf.train_risk_classifier(
                    ws, project="trial", outcome_column="event", exclude=["time", "tx"],
                    n_bootstrap=39,
                )  # fmt: skip

        train()
        unfollowed = wf.predict_risk(ws, project="trial", patients=["MRN000220"]).iloc[0]
        assert unfollowed["risk_lower"] < unfollowed["risk_upper"]
        assert wf.recommend(ws, project="trial", patient="MRN000220").risk_interval_missing is None

        wf.import_patients_table(ws, project="trial", path=tmp_path / "later.csv", id_column="mrn")
        assert pd.isna(wf.predict_risk(ws, project="trial", patients=["MRN000245"]).iloc[0, 1])
        view = wf.recommend(ws, project="trial", patient="MRN000245")
        assert view.risk is not None and view.risk_lower is None
        assert view.risk_interval_missing == (
            "the patient was added after risk model v1 was trained; retrain it for an interval"
        )
        page = wf.patient_record(ws, project="trial", patient=view.patient)
        assert page["recommendation"]["risk_interval_missing"] == view.risk_interval_missing

        # a corrected record: the interval computed for the old values is not shown with
        # the risk of the new ones (it was drawn beside a risk far outside it)
        corrected = rows.iloc[[220]].assign(marker=rows.loc[220, "marker"] + 3.0)
        corrected.to_csv(tmp_path / "corrected.csv", index=False)
        wf.import_patients_table(
            ws, project="trial", path=tmp_path / "corrected.csv", id_column="mrn"
        )
        risks = wf.predict_risk(ws, project="trial", patients=["MRN000220", "MRN000221"])
        changed, same = (
            wf.resolve_patient(ws, project="trial", patient=f"MRN00022{i}") for i in (0, 1)
        )
        assert risks["risk_lower"].isna().to_dict() == {changed: True, same: False}
        view = wf.recommend(ws, project="trial", patient="MRN000220")
        assert view.risk_lower is None and view.risk_interval_missing == (
            "the patient's record changed after risk model v1 was trained; "
            "retrain it for an interval"
        )
        assert "lower" not in view.survival

        train()
        view = wf.recommend(ws, project="trial", patient="MRN000245")
        assert view.risk_lower is not None and view.risk_interval_missing is None
        assert wf.recommend(ws, project="trial", patient="MRN000220").risk_lower is not None
    finally:
        ws.close()


def test_a_column_imported_again_as_text_is_no_longer_a_feature(tmp_path: Path) -> None:
    table = pd.DataFrame({"mrn": ["A", "B", "C"], "age": [50, 60, 70], "note": ["ok", "ok", "no"]})
    table.to_csv(tmp_path / "t.csv", index=False)
    ws = Workspace.open(Settings(home=tmp_path / "home", secret_key="k"))
    try:
        wf.import_patients_table(ws, project="c", path=tmp_path / "t.csv", id_column="mrn")
        with ws.db.session() as s:
            project_id = repo.get_project(s, name="c").id
            assert "note" in prepo.features_frame(s, project_id=project_id).columns
        wf.import_patients_table(
            ws, project="c", path=tmp_path / "t.csv", id_column="mrn", text_columns=["note"]
        )
        with ws.db.session() as s:
            assert "note" not in prepo.features_frame(s, project_id=project_id).columns
    finally:
        ws.close()


def test_a_patient_missing_a_feature_or_out_of_range_is_scored_with_notes(
    tmp_path: Path,
) -> None:
    """recommend refused a patient without a value for a feature ('missing columns'),
    while predict_risk silently filled it in; both now score them and say what they
    filled in, and where the model extrapolates."""
    rows = pd.read_csv(trial_csv(tmp_path / "all.csv", n=200))
    rows.iloc[:198].to_csv(tmp_path / "first.csv", index=False)
    later = rows.iloc[198:].copy()
    later["marker"] = [np.nan, 0.5]
    later["age"] = [61.0, 250.0]
    later.to_csv(tmp_path / "later.csv", index=False)
    ws = Workspace.open(Settings(home=tmp_path / "home", secret_key="k"))
    try:
        wf.import_patients_table(ws, project="trial", path=tmp_path / "first.csv", id_column="mrn")
        wf.train_risk(
            ws, project="trial", time_column="time", event_column="event", exclude=["tx"],
            method="cox", n_bootstrap=0,
        )  # fmt: skip
        wf.import_patients_table(ws, project="trial", path=tmp_path / "later.csv", id_column="mrn")
        no_marker = wf.recommend(ws, project="trial", patient="MRN000198")
        assert no_marker.risk is not None
        assert len(no_marker.feature_notes) == 1
        assert no_marker.feature_notes[0].startswith("marker is missing: the model assumed ")
        old = wf.recommend(ws, project="trial", patient="MRN000199")
        low, high = rows["age"].iloc[:198].min(), rows["age"].iloc[:198].max()
        assert old.feature_notes == [
            # imported as 250, kept as 90 (`safe_harbor_ages`), still past the oldest learnt
            f"age 90 lies outside the values the model learnt from ({low:g} to {high:g}): "
            "its answer there is an extrapolation"
        ]
        page = wf.patient_record(ws, project="trial", patient=old.patient)
        assert page["recommendation"]["feature_notes"] == old.feature_notes
        risks = wf.predict_risk(
            ws, project="trial", patients=["MRN000198", "MRN000199", "MRN000000"]
        )
        notes = risks["notes"].to_dict()
        assert notes[no_marker.patient] == no_marker.feature_notes[0]
        assert notes[old.patient] == old.feature_notes[0]
        assert pd.isna(notes[wf.resolve_patient(ws, project="trial", patient="MRN000000")])
    finally:
        ws.close()


def test_risk_drivers_are_the_models_own_answer_far_from_the_data(tmp_path: Path) -> None:
    """A forest's risk levels off beyond the values it saw; the linear surrogate behind
    the drivers before did not, and put a factor of thousands on a patient the model
    itself scored near the riskiest it knew. A driver now sets the variable to the
    cohort's mean and asks the model again."""
    rows = pd.read_csv(trial_csv(tmp_path / "all.csv", n=200))
    rows.iloc[:199].to_csv(tmp_path / "first.csv", index=False)
    rows.iloc[199:].assign(marker=60.0).to_csv(tmp_path / "later.csv", index=False)
    ws = Workspace.open(Settings(home=tmp_path / "home", secret_key="k"))
    try:
        wf.import_patients_table(ws, project="trial", path=tmp_path / "first.csv", id_column="mrn")
        wf.train_risk(
            ws, project="trial", time_column="time", event_column="event", exclude=["tx"],
            method="rsf", n_bootstrap=0,
        )  # fmt: skip
        wf.import_patients_table(ws, project="trial", path=tmp_path / "later.csv", id_column="mrn")
        view = wf.recommend(ws, project="trial", patient="MRN000199")
        marker = next(d for d in view.risk_drivers if d["feature"] == "marker")
        with ws.db.session() as s:
            project_id = repo.get_project(s, name="trial").id
            version = wf._current_models(s, project_id=project_id)[wf.SURVIVAL]
            frame = prepo.features_frame(s, project_id=project_id, pseudonyms=[view.patient])
        bundle = wf._load(ws, version.blob_sha256)
        X = bundle["table"].transform(frame)
        at_mean = X.assign(marker=bundle["mean"]["marker"])
        horizon = [float(bundle["horizon"])]
        own = [bundle["model"].predict_survival(x, horizon).iloc[0, 0] for x in (X, at_mean)]
        expected = np.log(-np.log(own[0])) - np.log(-np.log(own[1]))
        assert marker["contribution"] == pytest.approx(expected)
        assert marker["value"] == 60.0 and 1 < marker["factor"] < 50
        # the linear surrogate the drivers came from before, fitted as it was then
        with ws.db.session() as s:
            cohort = prepo.features_frame(s, project_id=project_id).drop(index=view.patient)
        X_all = bundle["table"].transform(cohort)
        fitted = bundle["model"].predict_survival(X_all, horizon).iloc[:, 0].to_numpy()
        surrogate = LinearSurrogate().fit(X_all, np.log(-np.log(fitted))).drivers(X)
        assert np.exp(surrogate.loc[surrogate["feature"] == "marker", "contribution"]).iloc[0] > 1e3
    finally:
        ws.close()


def test_an_imported_age_of_90_or_more_is_stored_as_90(tmp_path: Path) -> None:
    ws = Workspace.open(Settings(home=tmp_path / "home", secret_key="k"))
    try:
        path = tmp_path / "old.csv"
        path.write_text("id,age,marker\np1,97,1.5\np2,64,2.5\n")
        wf.import_patients_table(
            ws, project="old", path=path, id_column="id", units={"age": "years"}
        )
        with ws.db.session() as s:
            project = repo.get_project(s, name="old")
            stored = prepo.features_frame(s, project_id=project.id)
        assert sorted(stored["age"]) == [64.0, 90.0]
    finally:
        ws.close()


def test_without_evidence_of_heterogeneity_the_average_effect_applies(
    tmp_path: Path, cli: Cli
) -> None:
    """A treatment that does nothing: its per-patient "drivers" would explain noise, so the
    page and the CLI say the test found no difference between patients instead."""
    csv = null_trial_csv(tmp_path / "null.csv")
    assert cli("patients", "import", str(csv), "-p", "null", "--id-column", "id")[0] == 0
    code, out, err = cli("risk", "train", "-p", "null", "--treatment", "tx", "--method", "cox",
                         "--base", "linear", "--bootstrap", "0")  # fmt: skip
    assert code == 0, err
    assert "between patients: no evidence it differs (p = " in " ".join(out.split())
    ws = Workspace.open(Settings())
    try:
        view = wf.recommend(ws, project="null", patient="N0001")
        page = wf.patient_record(ws, project="null", patient="N0001")
    finally:
        ws.close()
    test = view.heterogeneity
    assert test is not None and not test["evidence"] and test["p_value"] >= 0.05
    assert view.drivers == []
    note = view.heterogeneity_note or ""
    assert note.startswith(
        f"no evidence that the effect differs between patients (p = {test['p_value']:.2g})"
    )
    assert "the average effect applies" in note
    assert page["recommendation"]["heterogeneity_note"] == note
    code, out, _ = cli("recommend", "N0001", "-p", "null")
    flat = " ".join(out.split())
    assert code == 0 and "no evidence that the effect differs" in flat
    assert "what drives it" not in flat


def test_a_real_difference_in_effect_keeps_its_drivers(tmp_path: Path) -> None:
    """The trial where treatment helps only patients with a high marker: the test finds
    the difference, and the drivers stay."""
    ws = Workspace.open(Settings(home=tmp_path / "home", secret_key="k"))
    try:
        wf.import_patients_table(
            ws, project="t", path=trial_csv(tmp_path / "t.csv"), id_column="mrn"
        )
        trained = wf.train_effects(ws, project="t", treatment_column="tx", event_column="event",
                                   time_column="time", base="linear", n_bootstrap=0)  # fmt: skip
        assert trained.metrics["heterogeneity_p"] < 0.05
        view = wf.recommend(ws, project="t", patient="MRN000001")
    finally:
        ws.close()
    assert view.heterogeneity is not None and view.heterogeneity["evidence"]
    assert view.drivers and (view.heterogeneity_note or "").startswith("the effect differs")
    # the patient's own estimate leads and gives the verdict
    assert view.effect_basis == "patient" and view.average_effect is None


def tiny_csv(path: Path, n: int, events: int, columns: int = 1) -> Path:
    """`n` patients, the first `events` with the event, `columns` numeric features."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({f"x{j}": rng.normal(size=n).round(3) for j in range(columns)})
    frame.insert(0, "id", [f"T{i:03d}" for i in range(n)])
    frame["time"] = rng.uniform(10, 500, n).round()
    frame["event"] = (np.arange(n) < events).astype(int)
    frame.to_csv(path, index=False)
    return path


def test_a_tiny_cohort_is_refused(tmp_path: Path, cli: Cli) -> None:
    """12 patients, 3 events: too few for any model, whatever the features."""
    csv = tiny_csv(tmp_path / "tiny.csv", n=12, events=3)
    assert cli("patients", "import", str(csv), "-p", "tiny", "--id-column", "id")[0] == 0
    code, _, err = cli("risk", "train", "-p", "tiny", "--method", "cox", "--bootstrap", "0")
    assert code == 2 and "only 3 events in cohort 'tiny'" in err and "at least 10" in err
    code, _, err = cli("risk", "train", "-p", "tiny", "--outcome", "event", "--bootstrap", "0")
    assert code == 2 and "only 3 patients with the rarer outcome" in " ".join(err.split())


def test_too_few_bootstrap_refits_are_refused(tmp_path: Path, cli: Cli) -> None:
    """Two refits cannot make a 95% interval: the CLI says how many it needs."""
    imported_cohort(cli, tmp_path, "b", n=80)
    code, _, err = cli("risk", "train", "-p", "b", "--method", "cox", "--bootstrap", "2")
    assert code == 2 and "at least 39 refits" in " ".join(err.split())


def test_few_events_per_column_warn_on_every_output(tmp_path: Path, cli: Cli) -> None:
    """40 events for 8 columns (5 per column): trained, and every output says so."""
    csv = tiny_csv(tmp_path / "few.csv", n=120, events=40, columns=8)
    assert cli("patients", "import", str(csv), "-p", "few", "--id-column", "id")[0] == 0
    code, out, err = cli("risk", "train", "-p", "few", "--method", "cox", "--bootstrap", "0")
    assert code == 0, err
    expected = "40 events for 8 model columns: 5.0 per column"
    assert expected in " ".join(err.split())
    code, _, err = cli("risk", "evaluate", "-p", "few")
    assert code == 0 and expected in " ".join(err.split())
    code, out, _ = cli("risk", "predict", "-p", "few", "--json")
    assert code == 0 and all(expected in r["model_warning"] for r in json.loads(out))
    code, out, _ = cli("recommend", "T001", "-p", "few", "--json")
    assert code == 0 and expected in json.loads(out)["model_warnings"][0]
    ws = Workspace.open(Settings())
    try:
        card = wf.risk_model_card(ws, project="few")
        page = wf.patient_record(ws, project="few", patient="T001")
    finally:
        ws.close()
    assert expected in card["warning"]
    assert expected in page["recommendation"]["model_warnings"][0]
