"""The doctor's patient pages and /api/patients: roles, audit of every read, the chart,
the recommendation with its intervals, and accept/override decisions with CSRF."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from markupsafe import escape
from web_support import PASSWORD, Site

from medloop.exceptions import NotFoundError
from medloop.precision import NO_CLEAR_BENEFIT
from medloop.store import repository as repo
from medloop.web.routes import patients as patient_routes
from medloop.workflows import precision as wf

COHORT = "trial cohort"  # a space: URLs must encode it


def _trial(path: Path, n: int = 160) -> Path:
    """A small randomised trial: treatment helps patients with high `marker` only."""
    rng = np.random.default_rng(0)
    marker = rng.normal(size=n)
    tx = rng.integers(0, 2, n)
    hazard = np.exp(0.8 * marker - 1.5 * tx * (marker > 0))
    time = rng.exponential(1 / hazard) * 365
    censor = rng.uniform(100, 700, n)
    pd.DataFrame(
        {
            "mrn": [f"MRN{i:06d}" for i in range(n)],
            "age": rng.normal(60, 8, n).round(),
            "marker": marker.round(3),
            "tx": tx,
            "time": np.minimum(time, censor).round(1),
            "event": (time <= censor).astype(int),
        }
    ).to_csv(path, index=False)
    return path


@pytest.fixture
def cohort(site: Site, tmp_path: Path) -> list[str]:
    """A cohort with a survival model (bootstrap band) and a treatment-effect model;
    returns the pseudonyms."""
    ws = site.ws
    wf.import_patients_table(
        ws,
        project=COHORT,
        path=_trial(tmp_path / "t.csv"),
        id_column="mrn",
        units={"age": "years", "time": "days"},
    )
    wf.train_risk(
        ws,
        project=COHORT,
        time_column="time",
        event_column="event",
        exclude=["tx"],
        method="cox",
        n_bootstrap=39,
    )
    wf.train_effects(
        ws,
        project=COHORT,
        treatment_column="tx",
        event_column="event",
        time_column="time",
        base="linear",
        n_bootstrap=39,
    )
    return [row["patient"] for row in wf.list_patients(ws, project=COHORT, viewer="setup")]


def sign_in(client: TestClient, username: str) -> str:
    """Sign in through the login form; returns the session's CSRF token."""
    page = client.get("/login")
    login_token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert login_token
    response = client.post(
        "/login",
        data={"username": username, "password": PASSWORD, "csrf_token": login_token.group(1)},
        follow_redirects=False,
    )
    assert response.status_code == 303
    match = re.search(r'<meta name="csrf-token" content="([^"]+)">', client.get("/").text)
    assert match
    return match.group(1)


def views(site: Site) -> pd.DataFrame:
    with site.ws.db.session() as s:
        log = repo.audit_frame(s)
    return log[log["action"].isin(["view_patient", "view_patients"])]


def test_annotators_never_reach_patients(site: Site, cohort: list[str]) -> None:
    patient = cohort[0]
    q = {"project": COHORT}
    headers = site.headers("alice")
    for url in (
        "/api/patients",
        f"/api/patients/{patient}",
        f"/api/patients/{patient}/survival.png",
    ):
        assert site.client.get(url, params=q, headers=headers).status_code == 403
    assert (
        site.client.post(
            f"/api/patients/{patient}/recommendation", params=q, headers=headers
        ).status_code
        == 403
    )
    decision = {"recommendation_id": 1, "decision": "accept", "treatment": "treat"}
    assert (
        site.client.post(
            f"/api/patients/{patient}/decision", json=decision, headers=headers
        ).status_code
        == 403
    )
    assert site.client.get("/api/patients", params=q).status_code == 401  # no credentials
    location = site.client.get("/patients", follow_redirects=False).headers["location"]
    assert location == "/login?next=%2Fpatients"
    csrf = sign_in(site.client, "alice")
    assert 'href="/patients"' not in site.client.get("/annotate").text  # not in the nav
    for url in ("/patients", f"/patients/{patient}", f"/patients/{patient}/survival.png"):
        response = site.client.get(url, params=q)
        assert response.status_code == 403 and "not for you" in response.text
    posted = site.client.post(
        f"/patients/{patient}/recommend", data={"project": COHORT, "csrf_token": csrf}
    )
    assert posted.status_code == 403
    assert views(site)["actor"].eq("alice").sum() == 0  # nothing was read


def test_doctor_reads_the_page_and_every_read_is_audited(site: Site, cohort: list[str]) -> None:
    sign_in(site.client, "dora")
    home = site.client.get("/patients")
    assert 'href="/patients"' in home.text and COHORT in home.text
    assert "<td>160</td><td>v1 cox</td>" in home.text  # patients, survival model
    listing = site.client.get("/patients", params={"project": COHORT})
    assert listing.status_code == 200 and cohort[0] in listing.text
    patient = cohort[3]
    url = f"/patients/{patient}?project=trial+cohort"
    assert f'href="/patients/{patient}?project=trial%20cohort"' in listing.text
    empty = site.client.get(url)
    assert empty.status_code == 200 and "No recommendation yet" in empty.text
    age = wf.patient_record(site.ws, project=COHORT, patient=patient)["features"]["age"]
    assert f"<td>age</td><td>{age:g}</td><td>years</td>" in empty.text  # 61, not 61.0
    features, outcome = empty.text.split("Outcome and treatment on record")
    time = wf.patient_record(site.ws, project=COHORT, patient=patient)["outcome"]["time"]
    assert f"<td>time</td><td>{time:g}</td><td>days</td>" in outcome
    assert "<td>time</td>" not in features and "<td>tx</td>" in outcome
    assert (
        site.client.get(f"/patients/{patient}/survival.png?project=trial+cohort").status_code == 404
    )

    view = wf.recommend(site.ws, project=COHORT, patient=patient)
    page = site.client.get(url)
    assert page.status_code == 200
    text = page.text
    risk = f"{100 * view.risk:.1f}%"
    interval = f"{100 * view.risk_lower:.1f}\u2013{100 * view.risk_upper:.1f}%"
    assert risk in text and interval in text and "95% bootstrap interval" in text
    assert f"Risk of the event by {view.horizon:g} days" in text
    assert view.risk_lower <= view.risk <= view.risk_upper
    assert f"{100 * view.benefit_lower:+.1f} to {100 * view.benefit_upper:+.1f} pts" in text
    # the options are event-free by the same time as the risk, and say so
    assert f"<th>P(event-free by {view.horizon:g} days)</th>" in text
    assert view.recommendation in text
    assert all(d["feature"] in text for d in view.drivers)
    note = view.heterogeneity_note or ""  # whether the effect differs between patients
    assert note and 'id="heterogeneity"' in text and str(escape(note[1:])) in text
    assert ("What drives the benefit" in text) == view.heterogeneity["evidence"]
    assert 'name="decision" value="override"' in text and 'name="csrf_token"' in text
    assert f"/patients/{patient}/survival.png?project=trial%20cohort" in text
    chart = site.client.get(f"/patients/{patient}/survival.png", params={"project": COHORT})
    assert chart.status_code == 200 and chart.headers["content-type"] == "image/png"
    assert chart.content.startswith(b"\x89PNG")

    log = views(site)
    mine = log[log["actor"] == "dora"]
    reads = mine[mine["action"] == "view_patient"]
    assert len(reads) == 4  # empty page, 404 chart (read, then nothing to draw), page, chart
    assert set(reads["entity_id"]) == {patient}
    assert sorted(d["view"] for d in reads["detail"]) == ["chart", "chart", "page", "page"]
    assert reads["at"].notna().all()
    assert (mine["action"] == "view_patients").sum() == 1


def test_no_clear_benefit_is_said_when_the_interval_covers_zero(
    site: Site, cohort: list[str]
) -> None:
    headers = site.headers("dora")
    for patient in cohort:
        body = site.client.post(
            f"/api/patients/{patient}/recommendation", params={"project": COHORT}, headers=headers
        ).json()
        if body["benefit_lower"] <= 0 <= body["benefit_upper"]:
            break
    else:
        pytest.fail("no patient with an interval covering zero")
    assert body["recommendation"] == NO_CLEAR_BENEFIT
    treated, control = body["option_estimates"]
    assert treated["verdict"] == NO_CLEAR_BENEFIT and control["verdict"] == "reference"
    assert treated["event_free_lower"] <= treated["event_free"] <= treated["event_free_upper"]
    sign_in(site.client, "dora")
    page = site.client.get(f"/patients/{patient}", params={"project": COHORT})
    assert "<strong>no clear benefit</strong>" in page.text
    # nothing suggested, so no treatment is chosen for the doctor: they must pick one
    assert '<select name="treatment" required>' in page.text
    assert '<option value="" selected disabled>choose a treatment' in page.text
    assert not re.search(r'<option value="[^"]+" selected>', page.text)


def test_accept_and_override_through_the_form(site: Site, cohort: list[str]) -> None:
    patient = cohort[5]
    view = wf.recommend(site.ws, project=COHORT, patient=patient)
    csrf = sign_in(site.client, "dora")
    url = f"/patients/{patient}/decision"
    form = {"project": COHORT, "recommendation_id": str(view.recommendation_id)}
    override = {**form, "decision": "override", "treatment": "no treatment"}
    assert site.client.post(url, data=override).status_code == 403  # no CSRF token
    forged = site.client.post(url, data={**override, "csrf_token": "forged"})
    assert forged.status_code == 403
    no_reason = site.client.post(url, data={**override, "csrf_token": csrf})
    assert no_reason.status_code == 422
    # said on the patient's own form, the doctor's choice kept
    assert re.search(r'<p class="error" role="alert">[^<]*reason', no_reason.text)
    assert '<option value="no treatment" selected>' in no_reason.text
    assert f'name="recommendation_id" value="{view.recommendation_id}"' in no_reason.text
    done = site.client.post(
        url,
        data={**override, "reason": "prefers to wait", "csrf_token": csrf},
        follow_redirects=False,
    )
    assert done.status_code == 303 and "project=trial+cohort" in done.headers["location"]
    page = site.client.get(done.headers["location"])
    assert "prefers to wait" in page.text
    # decided once: the page says so instead of offering the form again
    assert "Overridden: no treatment, by dora" in page.text and 'class="decision"' not in page.text
    accept = {**form, "decision": "accept", "treatment": "treat", "csrf_token": csrf}
    again = site.client.post(url, data=accept, follow_redirects=False)
    assert again.status_code == 409 and "already decided" in again.text
    fresh = wf.recommend(site.ws, project=COHORT, patient=patient)
    accept["recommendation_id"] = str(fresh.recommendation_id)
    accepted = site.client.post(url, data=accept, follow_redirects=False)
    assert accepted.status_code == 303
    with site.ws.db.session() as s:
        log = repo.audit_frame(s)
    entry = log[log["action"] == "treatment_override"].iloc[0]
    assert entry["actor"] == "dora" and entry["detail"]["reason"] == "prefers to wait"
    assert entry["entity_id"] == str(view.recommendation_id)
    assert (log["action"] == "treatment_accept").sum() == 1
    decisions = site.client.get(done.headers["location"]).text.split("<h2>Decisions</h2>")[1]
    rows = re.findall(r"<tr><td>(\d{4}-\d\d-\d\d \d\d:\d\d) UTC</td><td>dora</td>", decisions)
    assert len(rows) == 2  # when, and who
    other = cohort[6]  # a recommendation is decided under its own patient only
    wrong = site.client.post(f"/patients/{other}/decision", data={**accept, "csrf_token": csrf})
    assert wrong.status_code == 422


def test_json_twins_and_admin_reads_but_does_not_decide(site: Site, cohort: list[str]) -> None:
    q = {"project": COHORT}
    admin = site.headers("adam")
    rows = site.client.get("/api/patients", params=q, headers=admin).json()
    assert [r["patient"] for r in rows] == cohort
    patient = cohort[7]
    created = site.client.post(
        f"/api/patients/{patient}/recommendation", params=q, headers=admin
    ).json()
    assert len(created["survival"]["time"]) == len(created["survival"]["lower"])
    assert {o["option"] for o in created["option_estimates"]} == {"treat", "no treatment"}
    record = site.client.get(f"/api/patients/{patient}", params=q, headers=admin).json()
    assert record["recommendation"]["recommendation_id"] == created["recommendation_id"]
    assert "MRN" not in str(record)
    body = {
        "recommendation_id": created["recommendation_id"],
        "decision": "override",
        "treatment": "no treatment",
        "reason": "frailty",
    }
    url = f"/api/patients/{patient}/decision"
    assert site.client.post(url, json=body, headers=admin).status_code == 403
    doctor = site.headers("dora")
    assert site.client.post(url, json={**body, "reason": None}, headers=doctor).status_code == 422
    decided = site.client.post(url, json=body, headers=doctor)
    assert decided.status_code == 200 and decided.json()["doctor"] == "dora"
    record = site.client.get(f"/api/patients/{patient}", params=q, headers=doctor).json()
    assert record["decisions"][0]["reason"] == "frailty"
    missing = site.client.get("/api/patients/Pnope", params=q, headers=doctor)
    assert missing.status_code == 404
    log = views(site)
    assert set(log["actor"]) >= {"adam", "dora"}
    assert site.client.get("/api/patients", headers=doctor).status_code == 422  # no project


def test_the_list_pages_through_the_whole_cohort_with_the_models_risk(
    site: Site, cohort: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every patient is reachable from the list (it showed the first 200 only), and every
    row carries the current survival model's risk by its horizon."""
    monkeypatch.setattr(patient_routes, "PAGE_SIZE", 50)
    sign_in(site.client, "dora")
    q = {"project": COHORT}
    first = site.client.get("/patients", params=q).text
    assert "Patients 1\u201350 of 160" in first and "offset=50" in first and "Previous" not in first
    assert cohort[49] in first and cohort[50] not in first
    last = site.client.get("/patients", params={**q, "offset": 150}).text
    assert "Patients 151\u2013160 of 160" in last and ">Next<" not in last and "offset=100" in last
    assert cohort[159] in last and cohort[149] not in last
    beyond = site.client.get("/patients", params={**q, "offset": 1000}).text
    assert "No patients on this page: trial cohort has 160." in beyond and "yet" not in beyond
    predicted = wf.predict_risk(site.ws, project=COHORT, patients=cohort[150:])
    horizon = float(predicted["horizon"].iloc[0])
    assert f"Risk by {horizon:g} days, the cohort's median time on record (current model)" in last
    risk, low, high = 100 * predicted.loc[cohort[150], ["risk", "risk_lower", "risk_upper"]]
    interval = f'<small class="interval">({low:.0f}\u2013{high:.0f}%)</small>'
    assert f"<td>{risk:.0f}% {interval}</td>" in last

    doctor = site.headers("dora")
    rows = site.client.get(
        "/api/patients", params={**q, "offset": 155, "limit": 3}, headers=doctor
    ).json()
    assert [r["patient"] for r in rows] == cohort[155:158]
    assert rows[0]["model_risk"] == pytest.approx(predicted.loc[cohort[155], "risk"])
    assert rows[0]["model_risk_lower"] == pytest.approx(predicted.loc[cohort[155], "risk_lower"])
    assert rows[0]["model_risk_upper"] == pytest.approx(predicted.loc[cohort[155], "risk_upper"])
    assert rows[0]["horizon"] == horizon and rows[0]["time_unit"] == "days"
    bad = site.client.get("/api/patients", params={**q, "offset": -1}, headers=doctor)
    assert bad.status_code == 422

    ranked = wf.predict_risk(site.ws, project=COHORT)["risk"].sort_values(ascending=False).index
    riskiest = site.client.get(
        "/api/patients", params={**q, "order": "risk", "limit": 20}, headers=doctor
    ).json()
    assert [r["patient"] for r in riskiest] == list(ranked[:20])
    page = site.client.get("/patients", params={**q, "order": "risk", "offset": 50}).text
    assert "highest risk first (" in page and "order=risk&amp;offset=100" in page
    assert ranked[50] in page and ranked[49] not in page


def test_an_effects_model_without_follow_up_time_says_what_it_predicts(
    site: Site, tmp_path: Path
) -> None:
    ws = site.ws
    name = "event only"
    wf.import_patients_table(ws, project=name, path=_trial(tmp_path / "t.csv"), id_column="mrn")
    wf.train_effects(
        ws,
        project=name,
        treatment_column="tx",
        event_column="event",
        exclude=["time"],
        base="linear",
        n_bootstrap=0,
    )
    patient = wf.list_patients(ws, project=name, viewer="setup")[0]["patient"]
    view = wf.recommend(ws, project=name, patient=patient)
    assert view.effect_outcome == "free of the event during follow-up"
    sign_in(site.client, "dora")
    page = site.client.get(f"/patients/{patient}", params={"project": name}).text
    assert "<th>P(free of the event during follow-up)</th>" in page
    body = site.client.post(
        f"/api/patients/{patient}/recommendation",
        params={"project": name},
        headers=site.headers("dora"),
    ).json()
    assert body["effect_outcome"] == "free of the event during follow-up"
    assert body["effect_horizon"] is None


def test_a_cohort_with_an_outcome_classifier_shows_its_risk(site: Site, tmp_path: Path) -> None:
    ws = site.ws
    name = "no follow-up"
    wf.import_patients_table(ws, project=name, path=_trial(tmp_path / "t.csv"), id_column="mrn")
    wf.train_risk_classifier(
        ws, project=name, outcome_column="event", exclude=["time", "tx"], n_bootstrap=39
    )
    patient = wf.predict_risk(ws, project=name)["risk"].idxmax()
    view = wf.recommend(ws, project=name, patient=patient)
    sign_in(site.client, "dora")
    listing = site.client.get("/patients", params={"project": name, "order": "risk"})
    assert listing.status_code == 200 and "Risk of event (current model)" in listing.text
    low, high = 100 * view.risk_lower, 100 * view.risk_upper
    interval = f'<small class="interval">({low:.0f}\u2013{high:.0f}%)</small>'
    assert f"<td>{100 * view.risk:.0f}% {interval}</td>" in listing.text
    page = site.client.get(f"/patients/{patient}", params={"project": name}).text
    assert f"Risk of event: <strong>{100 * view.risk:.1f}%</strong>" in page
    assert "calibrated classifier v1" in page and "survival.png" not in page
    low, high = 100 * view.risk_lower, 100 * view.risk_upper
    assert f"(95% bootstrap interval {low:.1f}\u2013{high:.1f}%; calibrated" in page
    assert "What drives the risk" in page and "Multiplies the odds" in page
    assert f"\u00d7{view.risk_drivers[0]['factor']:.2f}" in page
    assert f"<td>{view.risk_drivers[0]['feature']}</td>" in page
    assert 'class="decision"' not in page  # no treatment model: no treatment to decide
    cohorts = site.client.get("/patients").text
    assert "v1 logistic classifier of event" in cohorts


def test_the_cohort_page_shows_its_risk_model_and_calibration(
    site: Site, cohort: list[str], tmp_path: Path
) -> None:
    sign_in(site.client, "dora")
    card = wf.risk_model_card(site.ws, project=COHORT)
    assert card["name"] == "v1 cox" and card["kind"] == "survival"
    assert card["evaluation"] == "out of fold, over 5 stratified folds"
    assert set(card["metrics"]) == set(card["spread"]) == {"cindex", "mean_auc", "ibs"}
    points = card["calibration"]
    assert len(points["predicted"]) == len(points["observed"]) == 5  # fifths of the cohort
    assert all(0 <= v <= 1 for v in points["predicted"] + points["observed"])
    assert points["what"] == f"P(event by {card_horizon(site)} days)"
    listing = site.client.get("/patients", params={"project": COHORT}).text
    cindex, spread = card["metrics"]["cindex"], card["spread"]["cindex"]
    assert f"C-index {cindex:.3f} ± {spread:.3f}" in listing
    assert "/patients/model/calibration.png?project=trial%20cohort" in listing
    chart = site.client.get("/patients/model/calibration.png", params={"project": COHORT})
    assert chart.status_code == 200 and chart.content.startswith(b"\x89PNG")
    api = site.client.get("/api/patients/model", params={"project": COHORT})
    assert api.status_code == 200 and api.json()["name"] == "v1 cox"
    name, ws = "no follow-up", site.ws
    wf.import_patients_table(ws, project=name, path=_trial(tmp_path / "t.csv"), id_column="mrn")
    with pytest.raises(NotFoundError, match="no risk model yet"):
        wf.risk_model_card(ws, project=name)
    assert site.client.get("/api/patients/model", params={"project": name}).status_code == 404
    without = site.client.get("/patients", params={"project": name})
    assert without.status_code == 200 and "Risk model:" not in without.text
    missing = site.client.get("/patients/model/calibration.png", params={"project": name})
    assert missing.status_code == 404
    wf.train_risk_classifier(
        ws, project=name, outcome_column="event", exclude=["time", "tx"], n_bootstrap=39
    )
    card = wf.risk_model_card(ws, project=name)
    assert card["calibration"]["what"] == "P(event = 1)"
    assert card["evaluation"] == "out of fold, over 5 stratified folds"
    assert set(card["metrics"]) == {"auc", "brier", "log_loss", "prevalence"}
    listing = site.client.get("/patients", params={"project": name}).text
    assert f"Brier score {card['metrics']['brier']:.3f}" in listing and "out of fold" in listing
    for url in ("/api/patients/model", "/api/patients/model/calibration.png"):
        response = site.client.get(url, params={"project": name}, headers=site.headers("alice"))
        assert response.status_code == 403  # annotators never see a cohort's model


def card_horizon(site: Site) -> str:
    predicted = wf.predict_risk(site.ws, project=COHORT)
    return f"{predicted['horizon'].iloc[0]:g}"


def test_a_patient_added_after_training_is_told_why_the_risk_has_no_interval(
    site: Site, cohort: list[str], tmp_path: Path
) -> None:
    rows = pd.read_csv(_trial(tmp_path / "more.csv", n=161)).tail(1)
    rows.drop(columns=["time", "event"]).to_csv(tmp_path / "new.csv", index=False)
    wf.import_patients_table(site.ws, project=COHORT, path=tmp_path / "new.csv", id_column="mrn")
    view = wf.recommend(site.ws, project=COHORT, patient="MRN000160")
    sign_in(site.client, "dora")
    page = site.client.get(f"/patients/{view.patient}", params={"project": COHORT})
    assert page.status_code == 200 and f"{100 * view.risk:.1f}%" in page.text
    assert (
        "(no interval: the patient was added after risk model v1 was trained; "
        "retrain it for an interval)" in page.text
    )


def test_an_outdated_recommendation_says_so_and_cannot_be_accepted(
    site: Site, cohort: list[str]
) -> None:
    """Computed, then the effects model retrained: the page says so above all else and
    offers no Accept; the form and the API refuse one; recomputing makes it current."""
    patient = cohort[8]
    view = wf.recommend(site.ws, project=COHORT, patient=patient)
    assert view.computed_at is not None
    when = view.computed_at.strftime("%Y-%m-%d %H:%M")
    models = "survival model v1 (cox) and effects model v1 (t-learner/linear)"
    csrf = sign_in(site.client, "dora")
    q = {"project": COHORT}
    current = site.client.get(f"/patients/{patient}", params=q).text
    assert f"Computed {when} UTC with {models}; the models and the patient" in current
    assert 'id="outdated"' not in current and 'name="decision" value="accept"' in current
    listing = site.client.get("/patients", params=q).text
    assert f"(computed {when} UTC)" in listing and "outdated — recompute" not in listing

    wf.train_effects(site.ws, project=COHORT, treatment_column="tx", event_column="event",
                     time_column="time", base="linear", n_bootstrap=0)  # fmt: skip
    page = site.client.get(f"/patients/{patient}", params=q).text
    banner = page.split('<div id="outdated" class="error" role="alert">')[1].split("</div>")[0]
    assert (
        f"<strong>Outdated:</strong> computed {when} UTC with {models}; since then the "
        "treatment-effect model is now effects model v2 (t-learner/linear). Recompute it"
    ) in banner
    assert "Recompute recommendation</button>" in banner
    # the list flags it too, linking to the page that recomputes it
    listing = site.client.get("/patients", params=q).text
    flag = (
        f'<a class="error outdated" href="/patients/{patient}?project=trial%20cohort#outdated" '
        'title="Since then the treatment-effect model is now effects model v2 '
        '(t-learner/linear)">outdated — recompute</a>'
    )
    assert listing.count("outdated — recompute") == 1 and flag in listing
    rows = site.client.get("/api/patients", params=q, headers=site.headers("dora")).json()
    assert {r["patient"]: r["outdated"] for r in rows if r["outdated"]} == {
        patient: ["the treatment-effect model is now effects model v2 (t-learner/linear)"]
    }
    assert page.index('id="outdated"') < page.index("<h2>Risk</h2>")  # first thing said
    assert 'name="decision" value="accept"' not in page
    assert "Accepting needs a current recommendation" in page
    assert 'name="decision" value="override"' in page  # a reasoned override stays possible
    form = {"project": COHORT, "recommendation_id": str(view.recommendation_id)}
    accept = {**form, "decision": "accept", "treatment": "treat", "csrf_token": csrf}
    refused = site.client.post(f"/patients/{patient}/decision", data=accept)
    assert refused.status_code == 409 and "is outdated" in refused.text
    body = {"recommendation_id": view.recommendation_id, "decision": "accept", "treatment": "treat"}
    api = site.client.post(
        f"/api/patients/{patient}/decision", json=body, headers=site.headers("dora")
    )
    assert api.status_code == 409 and "Recompute it before accepting" in api.text
    record = site.client.get(
        f"/api/patients/{patient}", params=q, headers=site.headers("dora")
    ).json()["recommendation"]
    assert record["outdated"] == [
        "the treatment-effect model is now effects model v2 (t-learner/linear)"
    ]
    assert record["computed_at"].startswith(view.computed_at.strftime("%Y-%m-%dT%H:%M"))

    again = site.client.post(
        f"/patients/{patient}/recommend", data={"project": COHORT, "csrf_token": csrf}
    )
    assert again.status_code == 200 and 'id="outdated"' not in again.text
    assert "effects model v2 (t-learner/linear); the models and the patient" in again.text
    assert 'name="decision" value="accept"' in again.text


def test_times_are_shown_in_utc_whatever_zone_the_database_hands_them_in(
    site: Site, cohort: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL hands stored moments back in its session's time zone: the pages wrote
    their hour followed by "UTC" (15:03 in Berlin said as 15:03 UTC)."""
    patient = cohort[9]
    view = wf.recommend(site.ws, project=COHORT, patient=patient)
    wf.decide(site.ws, recommendation_id=view.recommendation_id, doctor="dora",
              decision="override", treatment="no treatment", reason="wait")  # fmt: skip
    assert view.computed_at is not None
    utc = f"{view.computed_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
    berlin = timezone(timedelta(hours=2))
    shifted = f"{view.computed_at.astimezone(berlin):%Y-%m-%d %H:%M}"

    def in_berlin(value: object) -> object:
        if isinstance(value, datetime):
            return value.astimezone(berlin)
        if isinstance(value, dict):
            return {k: in_berlin(v) for k, v in value.items()}
        if isinstance(value, list):
            return [in_berlin(v) for v in value]
        return value

    for name in ("view_patient", "list_patients"):
        original = getattr(wf, name)
        monkeypatch.setattr(
            wf, name, lambda *a, _original=original, **k: in_berlin(_original(*a, **k))
        )
    sign_in(site.client, "dora")
    q = {"project": COHORT}
    page = site.client.get(f"/patients/{patient}", params=q).text
    assert f"Computed {utc} with" in page and shifted not in page
    decisions = page.split("<h2>Decisions</h2>")[1]
    assert re.search(r"<tr><td>\d{4}-\d\d-\d\d \d\d:\d\d UTC</td><td>dora</td>", decisions)
    assert f"<td>{utc}</td></tr>" in decisions  # the recommendation decided on
    listing = site.client.get("/patients", params=q).text
    assert f"(computed {utc})" in listing and shifted not in listing


def test_the_patient_page_says_whom_the_models_learnt_from(
    site: Site, cohort: list[str], tmp_path: Path
) -> None:
    trial = pd.read_csv(tmp_path / "t.csv")
    sign_in(site.client, "dora")
    page = site.client.get(f"/patients/{cohort[9]}", params={"project": COHORT}).text
    trained = page.split('<div id="trained-on">')[1].split("</div>")[0]
    today = pd.Timestamp.now("UTC").strftime("%Y-%m-%d")
    assert "<h2>Trained on</h2>" in trained
    assert f"survival model v1 (cox): 160 patients of trial cohort, trained {today}" in trained
    ages = f"age {trial['age'].min():g}\u2013{trial['age'].max():g} years"
    markers = f"marker {trial['marker'].min():g}\u2013{trial['marker'].max():g}"
    assert f"; {ages}, {markers}." in trained  # the clinical variables it read
    # the effects model learnt from patients followed up to its horizon: same variables
    assert "effects model v1 (t-learner/linear): " in trained and "same ranges as above" in trained
    record = site.client.get(
        f"/api/patients/{cohort[9]}", params={"project": COHORT}, headers=site.headers("dora")
    ).json()
    assert record["trained_on"][0]["patients"] == 160


def test_without_differences_between_patients_the_page_leads_with_the_average_effect(
    site: Site, tmp_path: Path
) -> None:
    """GBSG2 (scikit-survival's copy): the test finds no difference in the effect of
    hormone therapy between patients, so the average effect and its interval come first
    and give the verdict; the patient's own estimate follows as secondary."""
    from medloop.workflows.demo import gbsg2_table

    path = tmp_path / "gbsg2.csv"
    gbsg2_table().to_csv(path, index=False)
    wf.import_patients_table(site.ws, project="gbsg2", path=path, id_column="patient_id")
    wf.train_effects(site.ws, project="gbsg2", treatment_column="hormone_therapy",
                     event_column="event", time_column="time", base="linear",
                     n_bootstrap=39, treated="hormone therapy",
                     control="no hormone therapy")  # fmt: skip
    view = wf.recommend(site.ws, project="gbsg2", patient="GBSG2-0003")
    average = view.average_effect
    assert view.effect_basis == "average" and average is not None
    sign_in(site.client, "dora")
    page = site.client.get(f"/patients/{view.patient}", params={"project": "gbsg2"}).text
    lead = (
        f"Average effect of hormone therapy over the cohort: <strong>"
        f"{100 * average['benefit']:+.1f} pts</strong> of P({view.effect_outcome}) (95% CI "
        f"{100 * average['lower']:+.1f} to {100 * average['upper']:+.1f} pts)"
    )
    own = f"the model's own estimate for this patient is {100 * view.benefit:+.1f} pts"
    verdict = f"<strong>{average['verdict']}</strong>"
    assert verdict in page and lead in page and own in page
    assert page.index(verdict) < page.index(lead) < page.index("No evidence that the effect")
    assert page.index("No evidence that the effect") < page.index(own)
    assert "The model's own estimates for this patient (secondary)</caption>" in page
