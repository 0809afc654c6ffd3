"""Dashboard, retrain jobs, COCO export and the audit log over HTTP (and role isolation)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from test_web_pages import sign_in as first_sign_in
from web_support import Site

from medloop.store import jobs as job_store
from medloop.store import repository as repo
from medloop.store.models import AuditEntry
from medloop.web import create_app
from medloop.workflows import aggregate
from medloop.workflows import jobs as jobs_workflow
from medloop.workflows.jobs import JobView, Report

PNG = b"\x89PNG\r\n\x1a\n"


class Gate:
    """A fake training runner that reports progress, then waits to be released."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()
        self.fail = False

    def __call__(self, ws: Any, job: JobView, report: Report) -> dict[str, Any]:
        report(0.5, "epoch 10/20")
        self.started.set()
        assert self.release.wait(30), "the test never released the job"
        if self.fail:
            raise RuntimeError("out of memory")
        return {"version": 7, "test_auc": 0.9, "val_auc": 0.8, "n_train": 12}


@pytest.fixture
def gate(monkeypatch: pytest.MonkeyPatch) -> Iterator[Gate]:
    runner = Gate()
    monkeypatch.setitem(jobs_workflow.RUNNERS, jobs_workflow.RETRAIN, runner)
    yield runner
    runner.release.set()


def sign_in(client: TestClient, username: str) -> str:
    """Sign in as `username` afresh (signing out whoever was signed in)."""
    client.cookies.clear()
    return first_sign_in(client, username)


def wait_for(site: Site, job_id: int, status: str) -> dict[str, Any]:
    headers = site.headers("dora")
    deadline = time.monotonic() + 30
    while True:
        body = site.client.get(f"/api/jobs/{job_id}", headers=headers).json()
        if body["status"] == status or time.monotonic() > deadline:
            return dict(body)
        time.sleep(0.05)


def answer_all(site: Site, *, box: list[float] | None = None) -> None:
    for name in ("alice", "bob"):
        headers = site.headers(name)
        while (response := site.client.get("/api/tasks/next", headers=headers)).status_code == 200:
            task = response.json()
            body: dict[str, Any] = {"label": task["item_id"] % 2}
            if box is not None:
                body["box"] = box if name == "alice" else [b + 0.01 for b in box]
            site.client.post(f"/api/tasks/{task['task_id']}/answer", headers=headers, json=body)


def test_annotators_get_403_on_dashboard_audit_export_and_retrain(site: Site) -> None:
    alice = site.headers("alice")
    for method, url, body in (
        ("GET", "/api/dashboard?project=chest", None),
        ("GET", "/api/audit", None),
        ("GET", "/api/export/coco.json?project=chest", None),
        ("GET", "/api/export/labels.csv?project=chest", None),
        ("POST", "/api/jobs/retrain", {"project": "chest"}),
        ("GET", "/api/jobs", None),
    ):
        response = site.client.request(method, url, headers=alice, json=body)
        assert response.status_code == 403, url
    dora = site.headers("dora")
    assert site.client.get("/api/audit", headers=dora).status_code == 403
    assert site.client.get("/api/dashboard?project=chest", headers=dora).status_code == 200
    assert site.client.get("/api/audit", headers=site.headers("adam")).status_code == 200
    for url in ("/api/dashboard", "/api/audit", "/api/jobs"):
        assert site.client.get(url).status_code == 401
    with site.ws.db.session() as s:
        assert job_store.active_job(s) is None, "no job was queued by anyone refused"


def test_pages_are_role_isolated(site: Site) -> None:
    for url in ("/dashboard", "/audit"):
        location = site.client.get(url, follow_redirects=False).headers["location"]
        assert location == f"/login?next=%2F{url[1:]}", "back to the page after signing in"
    # a panel's htmx request, signed out, loads the login page as the whole page, and
    # leads back to the page the panel is on
    page = {"HX-Request": "true", "HX-Current-URL": "http://testserver/dashboard?project=chest"}
    for url in ("/dashboard/plan?project=chest", "/dashboard/job?project=chest"):
        panel = site.client.get(url, headers=page, follow_redirects=False)
        assert panel.status_code == 401, url
        assert panel.headers["HX-Redirect"] == "/login?next=%2Fdashboard%3Fproject%3Dchest"
    csrf = sign_in(site.client, "alice")
    for url in (
        "/dashboard",
        "/audit",
        "/dashboard/job?project=chest",
        "/dashboard/charts/answers.png?project=chest",
    ):
        assert site.client.get(url).status_code == 403, url
    refused = site.client.post("/dashboard/retrain", data={"project": "chest", "csrf_token": csrf})
    assert refused.status_code == 403
    csrf = sign_in(site.client, "dora")
    assert site.client.get("/dashboard").status_code == 200
    assert site.client.get("/audit").status_code == 403
    assert 'href="/dashboard"' in site.client.get("/dashboard").text
    assert 'href="/audit"' not in site.client.get("/dashboard").text


def test_dashboard_page_json_and_charts(any_site: Site) -> None:
    site = any_site
    answer_all(site)
    aggregate(site.ws, project="chest", method="majority_vote")
    with site.ws.db.session() as s:
        project = repo.get_project(s, name="chest")
        repo.add_model_version(
            s,
            project_id=project.id,
            network="cnn",
            checkpoint_path="-",
            n_train=12,
            metrics={"val_auc": 0.7, "test_auc": 0.75, "test_acc": 0.6},
        )
    body = site.client.get("/api/dashboard?project=chest", headers=site.headers("adam")).json()
    assert body["project"] == "chest" and body["classes"] == ["normal", "pneumonia"]
    assert body["progress"]["items"] == 30 and body["progress"]["final_labels"] == 4
    assert {a["worker"] for a in body["annotators"]} == {"alice", "bob"}
    assert body["learning_curve"] == [
        {"version": 1, "n_train": 12, "val_auc": 0.7, "test_auc": 0.75, "test_acc": 0.6}
    ]
    assert sum(d["crowd"] for d in body["answers_per_day"]) == body["progress"]["crowd_answers"]
    assert (
        site.client.get("/api/dashboard?project=nope", headers=site.headers("adam")).status_code
        == 404
    )
    sign_in(site.client, "adam")
    page = site.client.get("/dashboard")
    assert page.status_code == 200
    assert "Retrain on the current labels" in page.text and "alice" in page.text
    assert "/api/export/coco.json?project=chest" in page.text
    assert "/api/export/labels.csv?project=chest" in page.text
    for chart in ("answers", "annotators", "learning-curve"):
        png = site.client.get(f"/dashboard/charts/{chart}.png?project=chest")
        assert png.status_code == 200 and png.content.startswith(PNG), chart
        assert png.headers["content-type"] == "image/png"
    assert site.client.get("/dashboard/charts/secrets.png?project=chest").status_code == 422


def test_retrain_runs_one_job_at_a_time_in_the_background(any_site: Site, gate: Gate) -> None:
    site = any_site
    dora, adam = site.headers("dora"), site.headers("adam")
    first = site.client.post("/api/jobs/retrain", headers=dora, json={"project": "chest"})
    assert first.status_code == 202, first.text
    job = first.json()
    assert job["status"] in ("queued", "running") and job["requested_by"] == "dora"
    assert gate.started.wait(10), "the worker picked the job up"
    again = site.client.post("/api/jobs/retrain", headers=adam, json={"project": "chest"})
    assert again.status_code == 200 and again.json()["id"] == job["id"], (
        "the running job, not a new one"
    )
    running = wait_for(site, job["id"], "running")
    assert (running["progress"], running["message"]) == (0.5, "epoch 10/20")
    gate.release.set()
    done = wait_for(site, job["id"], "succeeded")
    assert done["status"] == "succeeded" and done["progress"] == 1.0
    assert done["result"]["version"] == 7 and done["finished_at"] is not None
    listed = site.client.get("/api/jobs?project=chest", headers=dora).json()
    assert [j["id"] for j in listed] == [job["id"]]
    bad = site.client.post("/api/jobs/retrain", headers=dora, json={"project": "nope"})
    assert bad.status_code == 404
    assert site.client.get("/api/jobs/999", headers=dora).status_code == 404


def test_a_failing_job_is_recorded_with_its_reason(site: Site, gate: Gate) -> None:
    gate.fail = True
    gate.release.set()
    job = site.client.post(
        "/api/jobs/retrain", headers=site.headers("adam"), json={"project": "chest"}
    ).json()
    failed = wait_for(site, job["id"], "failed")
    assert failed["status"] == "failed" and failed["error"] == "RuntimeError: out of memory"
    second = site.client.post(
        "/api/jobs/retrain", headers=site.headers("adam"), json={"project": "chest"}
    )
    assert second.status_code == 202 and second.json()["id"] != job["id"]


def test_retrain_button_polls_with_htmx_and_survives_a_reload(site: Site, gate: Gate) -> None:
    csrf = sign_in(site.client, "adam")
    without_token = site.client.post("/dashboard/retrain", data={"project": "chest"})
    assert without_token.status_code == 403
    panel = site.client.post(
        "/dashboard/retrain",
        data={"project": "chest", "csrf_token": csrf},
        headers={"HX-Request": "true"},
    )
    assert panel.status_code == 200
    assert 'id="job"' in panel.text and 'hx-trigger="every 2s"' in panel.text
    assert gate.started.wait(10)
    reloaded = site.client.get("/dashboard")
    assert "running" in reloaded.text and "epoch 10/20" in reloaded.text
    assert 'hx-get="/dashboard/job?project=chest"' in reloaded.text
    gate.release.set()
    deadline = time.monotonic() + 30
    while "succeeded" not in (fragment := site.client.get("/dashboard/job?project=chest").text):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert "hx-trigger" not in fragment, "polling stops when the job is done"
    assert "Model version 7" in fragment
    polled = site.client.get("/dashboard/job?project=chest", headers={"HX-Request": "true"})
    assert polled.headers["HX-Refresh"] == "true", "the page reloads to show the new model"
    with site.ws.db.session() as s:  # each project its own panel
        repo.create_project(s, name="skin", classes=["benign", "malignant"], n_channels=3)
    other = site.client.get("/dashboard/job?project=skin").text
    assert "No retraining asked for yet" in other and "Model version 7" not in other
    unknown = site.client.post("/dashboard/retrain", data={"project": "nope", "csrf_token": csrf})
    assert unknown.status_code == 404 and "no project named" in unknown.text
    plain = site.client.post(
        "/dashboard/retrain", data={"project": "chest", "csrf_token": csrf}, follow_redirects=False
    )
    assert plain.status_code == 303 and plain.headers["location"] == "/dashboard?project=chest"


def test_a_job_left_running_by_a_dead_server_is_failed_at_start(site: Site) -> None:
    with site.ws.db.session() as s:
        project_id = repo.get_project(s, name="chest").id
        job_id = job_store.add_job(s, kind="train", project_id=project_id, requested_by="dora").id
        job_store.claim_next_job(s)
    site.client.app.state.jobs.stop()  # its server is gone: the job runner's lock is free
    with TestClient(create_app(site.ws.settings, workspace=site.ws)) as client:
        body = client.get(f"/api/jobs/{job_id}", headers=site.headers("dora")).json()
    assert body["status"] == "failed"
    assert body["error"] == jobs_workflow.INTERRUPTED
    assert "server stopped" in body["error"]


def test_reads_exports_and_label_changes_are_audited(any_site: Site) -> None:
    site = any_site
    answer_all(site)
    aggregate(site.ws, project="chest", method="majority_vote")
    dora, adam = site.headers("dora"), site.headers("adam")
    item = site.client.get("/api/review/queue", headers=dora).json()[0]["item_id"]
    site.client.get(f"/api/review/{item}", headers=dora)
    site.client.get(f"/api/items/{item}/image", headers=dora)
    site.client.post(f"/api/review/{item}", headers=dora, json={"label": "normal"})
    site.client.get("/api/export/labels.csv?project=chest", headers=adam)
    site.client.get("/api/export/answers.csv?project=chest", headers=adam)
    site.client.get("/api/export/coco.json?project=chest", headers=adam)
    log = site.client.get("/api/audit?actor=dora", headers=adam).json()
    assert [(e["action"], e["entity_id"]) for e in log["entries"][:3]] == [
        ("label.final", str(item)),
        ("item.image", str(item)),
        ("item.read", str(item)),
    ]
    exports = site.client.get("/api/audit?actor=adam", headers=adam).json()["entries"]
    assert [e["action"] for e in exports[:3]] == ["export.coco", "export.answers", "export.labels"]
    consensus = site.client.get("/api/audit?action=label.consensus", headers=adam).json()
    assert (
        consensus["total"] == 1 and consensus["entries"][0]["detail"]["method"] == "majority_vote"
    )
    page = site.client.get("/api/audit?per_page=2&page=2", headers=adam).json()
    assert page["per_page"] == 2 and page["page"] == 2 and len(page["entries"]) == 2
    assert page["pages"] == -(-page["total"] // 2)
    assert site.client.get("/api/audit?per_page=0", headers=adam).status_code == 422
    sign_in(site.client, "dora")
    site.client.get(f"/review/{item}")
    with site.ws.db.session() as s:
        reads = s.scalars(
            select(AuditEntry).where(AuditEntry.actor == "dora", AuditEntry.action == "item.read")
        ).all()
    assert len(reads) == 2, "the review page is audited like the API"
    sign_in(site.client, "adam")
    html = site.client.get("/audit?actor=dora&action=item.read").text
    assert "2 entries match" in html
    assert html.count('href="/audit?action=item.read"') == 2
    assert 'href="/audit?action=label.final"' not in html
    # projects are named, details are readable (not raw JSON), dates do not wrap
    exports = site.client.get("/audit?action=export.answers").text
    assert "<td>project chest</td>" in exports and "<span>rows: " in exports
    table = exports.split('<table class="audit">')[1].split("</table>")[0]
    beyond = site.client.get("/audit?page=99").text  # "Newer" leads back to the last page
    assert "there is no page 99 (the last is 1)" in beyond and 'page=1" rel="prev"' in beyond
    assert '<td class="when">' in table and '{"' not in table


def test_coco_export_of_fused_and_raw_boxes(any_site: Site) -> None:
    site = any_site
    answer_all(site, box=[0.25, 0.25, 0.5, 0.5])
    adam = site.headers("adam")
    response = site.client.get("/api/export/coco.json?project=chest", headers=adam)
    assert response.status_code == 200
    assert "attachment" in response.headers["content-disposition"]
    coco = response.json()
    assert [c["name"] for c in coco["categories"]] == ["normal", "pneumonia"]
    assert {c["id"] for c in coco["categories"]} == {1, 2}
    images = {i["id"]: i for i in coco["images"]}
    assert all((i["width"], i["height"]) == (8, 8) for i in images.values())
    by_image: dict[int, list[dict[str, Any]]] = {}
    for annotation in coco["annotations"]:
        by_image.setdefault(annotation["image_id"], []).append(annotation)
    assert set(by_image) == set(images)
    two_people = [a for a in coco["annotations"] if a["n_annotators"] == 2]
    assert two_people, "overlapping boxes of alice and bob are fused"
    fused = two_people[0]
    assert fused["bbox"] == [2.04, 2.04, 4.04, 4.04] and fused["score"] == 1.0
    for annotation in coco["annotations"]:  # final label where signed, else the answers' majority
        item = annotation["image_id"]
        expected = site.gold_items[item] if item in site.gold_items else item % 2
        assert annotation["category_id"] == expected + 1
    raw = site.client.get("/api/export/coco.json?project=chest&fused=false", headers=adam).json()
    assert len(raw["annotations"]) == sum(a["n_boxes"] for a in coco["annotations"])
    assert {a["worker"] for a in raw["annotations"]} == {"alice", "bob"}
    assert len({a["id"] for a in raw["annotations"]}) == len(raw["annotations"])
    assert site.client.get("/api/export/coco.json?project=nope", headers=adam).status_code == 404


def test_the_plan_says_where_a_budget_removes_most_expected_errors(site: Site) -> None:
    answer_all(site)
    dora = site.headers("dora")
    url = "/api/plan?project=chest&budget=10&doctor_cost=4"
    plan = site.client.get(url, headers=dora).json()
    assert 0 < plan["cost"] <= 10 and plan["candidates"] > 0
    assert plan["lay_answers"] + 4 * plan["doctor_items"] == plan["cost"]
    requests = plan["requests"]
    assert len(requests) == plan["crowd_items"] + plan["doctor_items"]
    assert all(0 <= r["expected_risk"] < r["risk"] and r["gain"] > 0 for r in requests)
    gold = set(site.gold_items)
    assert not gold & {r["item"] for r in requests}, "decided items need nobody"
    # the plan is a proposal: asking for it writes nothing
    with site.ws.db.session() as s:
        project = repo.get_project(s, name="chest")
        tasks_before = len(repo.tasks_frame(s, project_id=project.id))
    assert site.client.get(url, headers=site.headers("adam")).status_code == 200
    with site.ws.db.session() as s:
        assert len(repo.tasks_frame(s, project_id=project.id)) == tasks_before

    for bad in ("budget=-1", "budget=nan", "budget=inf", "lay_cost=0", "doctor_cost=-2"):
        response = site.client.get(f"/api/plan?project=chest&{bad}", headers=dora)
        assert response.status_code == 422, bad
    assert site.client.get("/api/plan?project=nope", headers=dora).status_code == 404
    assert (
        site.client.get("/api/plan?project=chest", headers=site.headers("alice")).status_code == 403
    )
    assert site.client.get("/api/plan?project=chest").status_code == 401


def test_the_dashboard_plans_in_place_with_htmx_and_as_a_page_without(site: Site) -> None:
    answer_all(site)
    sign_in(site.client, "dora")
    page = site.client.get("/dashboard?project=chest").text
    assert "Where to spend labelling next" in page and 'hx-get="/dashboard/plan"' in page
    query = "/dashboard/plan?project=chest&budget=10&lay_cost=1&doctor_cost=4"
    panel = site.client.get(query, headers={"HX-Request": "true"}).text
    assert panel.lstrip().startswith('<div id="plan">') and "<html" not in panel
    assert "lay answers for" in panel and 'href="/review/' in panel
    full = site.client.get(query).text
    assert "<html" in full and "Where to spend labelling next" in full and "lay answers for" in full
    # a refused plan replaces the panel with the reason (htmx swaps 4xx: base.html's config)
    htmx = {"HX-Request": "true", "HX-Target": "plan"}
    for bad in (query.replace("budget=10", "budget=-5"), query.replace("chest", "nosuch")):
        refused = site.client.get(bad, headers=htmx)
        assert refused.status_code in (404, 422) and "<html" not in refused.text
        assert refused.text.lstrip().startswith('<div id="plan"><p class="error" role="alert">')
        assert "lay answers for" not in refused.text
    assert '"code": "4..", "swap": true' in page
    sign_in(site.client, "alice")
    assert site.client.get(query, follow_redirects=False).status_code == 403


def test_publishing_the_plan_opens_its_requests_for_people(site: Site) -> None:
    answer_all(site)
    dora = site.headers("dora")
    query = "project=chest&budget=10&doctor_cost=4"
    assert (
        site.client.post(f"/api/plan/publish?{query}", headers=site.headers("alice")).status_code
        == 403
    )
    plan = site.client.get(f"/api/plan?{query}", headers=dora).json()
    published = site.client.post(f"/api/plan/publish?{query}", headers=dora)
    assert published.status_code == 200, published.text
    body = published.json()
    assert body == {
        "project": "chest",
        "lay_tasks": plan["crowd_items"],
        "lay_answers": plan["lay_answers"],
        "review_requests": plan["doctor_items"],
    }
    assert body["review_requests"] > 0
    queue = site.client.get("/api/review/queue?project=chest", headers=dora).json()
    asked = [e["item_id"] for e in queue if e["requested"]]
    doctors = {r["item"] for r in plan["requests"] if r["action"] == "doctor"}
    assert set(asked) == doctors and [e["requested"] for e in queue[: len(asked)]] == [True] * len(
        asked
    )
    with site.ws.db.session() as s:
        entry = s.scalars(select(AuditEntry).where(AuditEntry.action == "plan.publish")).one()
    assert entry.actor == "dora" and entry.detail["review_requests"] == len(doctors)


def test_the_dashboard_publishes_the_plan_it_shows(site: Site) -> None:
    answer_all(site)
    csrf = sign_in(site.client, "dora")
    form = {"project": "chest", "budget": "10", "lay_cost": "1", "doctor_cost": "4"}
    panel = site.client.get("/dashboard/plan?" + "&".join(f"{k}={v}" for k, v in form.items()))
    assert 'action="/dashboard/plan/publish"' in panel.text
    refused = site.client.post("/dashboard/plan/publish", data=form)
    assert refused.status_code == 403  # no CSRF token
    done = site.client.post(
        "/dashboard/plan/publish", data={**form, "csrf_token": csrf}, headers={"HX-Request": "1"}
    )
    assert done.status_code == 200 and "Published:" in done.text and "review queue" in done.text
    assert 'action="/dashboard/plan/publish"' not in done.text  # published once
    with site.ws.db.session() as s:
        assert s.scalars(select(AuditEntry).where(AuditEntry.action == "plan.publish")).all()
