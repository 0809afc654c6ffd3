"""A stored recommendation says when it was computed and with which models, is refused
for acceptance once a model or the patient's values have changed since, and, where the
effect does not differ between patients, leads with the average effect."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import event
from test_precision_workflow import trial_csv

from cli_support import run as run_cli
from medloop.config import Settings
from medloop.exceptions import ConflictError
from medloop.precision import CLEAR_BENEFIT, NO_CLEAR_BENEFIT
from medloop.store import patients as prepo
from medloop.store import repository as repo
from medloop.types import Role
from medloop.workflows import Workspace
from medloop.workflows import precision as wf
from medloop.workflows.demo import GBSG2_UNITS, gbsg2_table

COMMON = {"project": "trial", "event_column": "event", "seed": 0}
Cli = Callable[..., tuple[int, str, str]]


@pytest.fixture
def cli(home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Cli:
    """`medloop ARGS...` in a fresh home: (exit code, stdout, stderr)."""
    return lambda *args: run_cli(monkeypatch, capsys, *args)


@pytest.fixture
def ws(tmp_path: Path) -> Iterator[Workspace]:
    """A trial cohort of 120 with a survival and an effects model, and doctor dr_a."""
    ws = Workspace.open(Settings(home=tmp_path / "home", secret_key="k"))
    try:
        wf.import_patients_table(
            ws,
            project="trial",
            path=trial_csv(tmp_path / "t.csv", n=120),
            id_column="mrn",
            units={"age": "years"},
        )
        wf.train_risk(ws, time_column="time", exclude=["tx"], method="cox", n_bootstrap=0, **COMMON)
        train_effects(ws)
        with ws.db.session() as s:
            repo.create_user(s, username="dr_a", role=Role.DOCTOR)
        yield ws
    finally:
        ws.close()


def train_effects(ws: Workspace) -> None:
    wf.train_effects(
        ws, treatment_column="tx", time_column="time", base="linear", n_bootstrap=0, **COMMON
    )


def accept(ws: Workspace, recommendation_id: int) -> wf.Decision:
    """Accept, choosing the suggestion, or the treatment where none is suggested."""
    return wf.decide(
        ws, recommendation_id=recommendation_id, doctor="dr_a", decision="accept", treatment="treat"
    )


def outdated(ws: Workspace, patient: str) -> list[str]:
    return list(
        wf.patient_record(ws, project="trial", patient=patient)["recommendation"]["outdated"]
    )


def correct(ws: Workspace, patient: str, **values: float) -> None:
    """A corrected record: new values of the patient's features."""
    with ws.db.session() as s:
        project = repo.get_project(s, name="trial")
        frame = pd.DataFrame(values, index=[patient])
        prepo.upsert_features(s, project_id=project.id, frame=frame)


def test_a_recommendation_says_when_and_with_which_models_it_was_computed(
    ws: Workspace,
) -> None:
    view = wf.recommend(ws, project="trial", patient="MRN000003")
    assert view.models == ["survival model v1 (cox)", "effects model v1 (t-learner/linear)"]
    page = wf.patient_record(ws, project="trial", patient=view.patient)
    rec = page["recommendation"]
    assert rec["computed_at"] == view.computed_at is not None
    assert rec["models"] == view.models and rec["outdated"] == []
    assert "inputs" not in rec  # kept to check it, not shown
    accept(ws, view.recommendation_id)
    decided = wf.patient_record(ws, project="trial", patient=view.patient)["decisions"][0]
    assert decided["recommended_at"] == view.computed_at


def test_a_retrained_model_makes_the_recommendation_outdated_and_unacceptable(
    ws: Workspace,
) -> None:
    view = wf.recommend(ws, project="trial", patient="MRN000004")
    train_effects(ws)  # effects model v2 is now in use
    assert outdated(ws, view.patient) == [
        "the treatment-effect model is now effects model v2 (t-learner/linear)"
    ]
    with pytest.raises(
        ConflictError, match=r"outdated: the treatment-effect model is now .*Recomp"
    ):
        accept(ws, view.recommendation_id)
    fresh = wf.recommend(ws, project="trial", patient=view.patient)
    assert outdated(ws, view.patient) == []
    assert accept(ws, fresh.recommendation_id).decision == "accept"


def test_a_corrected_record_makes_it_outdated_and_an_override_says_so(ws: Workspace) -> None:
    view = wf.recommend(ws, project="trial", patient="MRN000005")
    correct(ws, view.patient, time=1.0)  # follow-up the models do not read: still current
    assert outdated(ws, view.patient) == []
    correct(ws, view.patient, marker=3.5, age=120.0)
    assert outdated(ws, view.patient) == ["the patient's data changed since (age, marker)"]
    with pytest.raises(ConflictError, match=r"changed since \(age, marker\)"):
        accept(ws, view.recommendation_id)
    suggested = view.suggested_treatment
    if suggested:  # choosing the outdated suggestion is accepting it
        with pytest.raises(ConflictError, match="outdated"):
            wf.decide(ws, recommendation_id=view.recommendation_id, doctor="dr_a",
                      decision="override", treatment=suggested, reason="x")  # fmt: skip
    other = next(o for o in view.options if o != suggested)
    # the doctor's own choice against it, with a reason, stays possible and is audited as such
    wf.decide(ws, recommendation_id=view.recommendation_id, doctor="dr_a", decision="override",
              treatment=other, reason="surgery first")  # fmt: skip
    with ws.db.session() as s:
        log = repo.audit_frame(s)
    entry = log[log["action"] == "treatment_override"].iloc[0]
    assert entry["detail"]["outdated"] == ["the patient's data changed since (age, marker)"]


def test_a_recommendation_from_before_its_inputs_were_kept_counts_as_outdated(
    ws: Workspace,
) -> None:
    view = wf.recommend(ws, project="trial", patient="MRN000006")
    with ws.db.session() as s:
        rec = prepo.get_recommendation(s, recommendation_id=view.recommendation_id)
        rec.detail = {k: v for k, v in rec.detail.items() if k != "inputs"}
    assert outdated(ws, view.patient) == [
        "it was computed before medloop kept the patient's values it used"
    ]
    with pytest.raises(ConflictError, match="Recompute"):
        accept(ws, view.recommendation_id)


def test_the_patient_list_flags_outdated_recommendations_as_the_page_does(
    ws: Workspace,
) -> None:
    """The list said nothing of a recommendation gone out of date: a doctor saw "clear
    benefit" there for a patient whose page refused to accept it. Now each row carries
    the page's reasons, checked for the whole page in a fixed number of statements."""
    patients = [row["patient"] for row in wf.list_patients(ws, project="trial", viewer="x")]
    current, corrected, unchecked, never = patients[:4]
    for patient in (current, corrected, unchecked):
        wf.recommend(ws, project="trial", patient=patient)
    correct(ws, corrected, marker=3.5)
    with ws.db.session() as s:
        patient = prepo.get_patient(s, project_id=1, pseudonym=unchecked)
        rec = prepo.latest_recommendation(s, patient_id=patient.id)
        assert rec is not None
        rec.detail = {k: v for k, v in rec.detail.items() if k != "inputs"}

    def listed(**options: Any) -> dict[str, list[str]]:
        rows = wf.list_patients(ws, project="trial", viewer="dr_a", **options)
        return {row["patient"]: row["outdated"] for row in rows if row["patient"] in patients[:4]}

    assert listed(limit=4) == {
        current: [],
        corrected: ["the patient's data changed since (marker)"],
        unchecked: ["it was computed before medloop kept the patient's values it used"],
        never: [],  # nothing to recompute
    }
    assert listed(order="risk") == listed(limit=4)
    train_effects(ws)  # effects model v2 is now in use
    flags = listed(limit=4)
    assert flags[current] == [
        "the treatment-effect model is now effects model v2 (t-learner/linear)"
    ]
    assert all(flags[p] == outdated(ws, p) for p in (current, corrected, unchecked))

    statements: list[str] = []
    event.listen(ws.db.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    listed(limit=20)
    few = len(statements)
    for patient in patients[4:20]:
        wf.recommend(ws, project="trial", patient=patient)
    statements.clear()
    rows = wf.list_patients(ws, project="trial", viewer="dr_a", limit=20)
    assert [row["outdated"] for row in rows[4:]] == [[]] * 16
    assert len(statements) == few  # none per patient with a recommendation


def test_the_page_says_whom_the_models_learnt_from(ws: Workspace, tmp_path: Path) -> None:
    page = wf.patient_record(ws, project="trial", patient="MRN000007")  # no recommendation yet
    survival, effects = page["trained_on"]
    assert survival["model"] == "survival model v1 (cox)" and survival["patients"] == 120
    assert effects["model"] == "effects model v1 (t-learner/linear)"
    ages = next(r for r in survival["ranges"] if r["feature"] == "age")
    cohort = pd.read_csv(tmp_path / "t.csv")
    assert (ages["low"], ages["high"], ages["unit"]) == (
        cohort.age.min(),
        cohort.age.max(),
        "years",
    )
    assert survival["categories"] == {"stage": ["I", "II"]} and survival["genes"] == 0
    assert survival["trained_at"] is not None


@pytest.fixture
def gbsg2(tmp_path: Path) -> Iterator[Workspace]:
    """GBSG2 (scikit-survival's copy) with a hormone-therapy effects model, without
    bootstrap refits: the patients' own intervals are unknown, while the heterogeneity
    test finds no difference between patients and an average benefit clearly above 0."""
    ws = Workspace.open(Settings(home=tmp_path / "home", secret_key="k"))
    try:
        path = tmp_path / "gbsg2.csv"
        gbsg2_table().to_csv(path, index=False)
        wf.import_patients_table(
            ws, project="gbsg2", path=path, id_column="patient_id", units=GBSG2_UNITS
        )
        wf.train_effects(ws, project="gbsg2", treatment_column="hormone_therapy",
                         event_column="event", time_column="time", base="linear",
                         n_bootstrap=0)  # fmt: skip
        yield ws
    finally:
        ws.close()


def test_without_differences_between_patients_the_average_effect_gives_the_verdict(
    gbsg2: Workspace,
) -> None:
    view = wf.recommend(gbsg2, project="gbsg2", patient="GBSG2-0001")
    assert view.heterogeneity is not None and not view.heterogeneity["evidence"]
    average = view.average_effect
    assert view.effect_basis == "average" and average is not None
    assert 0 < average["lower"] < average["benefit"] < average["upper"]
    # the patient's own estimate has no interval: alone it would say "no clear benefit"
    assert view.benefit_lower is None and view.option_estimates[0]["verdict"] == NO_CLEAR_BENEFIT
    assert view.recommendation == average["verdict"] == CLEAR_BENEFIT
    assert view.suggested_treatment == "treat"
    assert f"{100 * average['benefit']:+.1f} points" in (view.heterogeneity_note or "")


def test_the_cli_leads_with_the_average_effect_and_says_when_it_computed(
    tmp_path: Path, cli: Cli
) -> None:
    path = tmp_path / "gbsg2.csv"
    gbsg2_table().to_csv(path, index=False)
    assert cli("patients", "import", str(path), "-p", "g", "--id-column", "patient_id")[0] == 0
    code, _, err = cli("risk", "train", "-p", "g", "--treatment", "hormone_therapy",
                       "--method", "cox", "--base", "linear", "--bootstrap", "0")  # fmt: skip
    assert code == 0, err
    code, out, _ = cli("recommend", "GBSG2-0002", "-p", "g")
    flat = " ".join(out.split())
    assert code == 0 and "treat: clear benefit" in flat
    assert "UTC with survival model v1 (cox) and effects model v1 (t-learner/linear)" in flat
    lead = flat.index("average effect of treatment +")
    assert lead < flat.index("no evidence that the effect differs") < flat.index("secondary:")
    code, out, _ = cli("recommend", "GBSG2-0002", "-p", "g", "--json")
    computed = json.loads(out)["computed_at"]  # ISO 8601 in UTC to the second, as elsewhere
    assert code == 0 and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", computed)
