"""Projects restricted to their members: every route that takes a project, or something
inside one, answers an outsider as if it did not exist (404), lists show only the
projects one may open, and members and admins pass."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.routing import APIRoute, iter_route_contexts
from sqlalchemy import select
from web_support import CLASSES, PASSWORD, Site

from medloop.ingest import encode_png
from medloop.store import jobs as job_store
from medloop.store import patients as prepo
from medloop.store import repository as repo
from medloop.store.models import Task
from medloop.types import JobStatus, LabelKind, LabelSource, TaskKind
from medloop.workflows import access, accounts
from medloop.workflows import jobs as jobs_workflow


@dataclass(frozen=True)
class Keys:
    """What a request names: an image project, a cohort and things inside them."""

    project: str
    cohort: str
    item: int
    task: int
    job: int
    patient: str
    recommendation: int


@dataclass
class World:
    site: Site
    hidden: Keys  # in "chest" and "trial", restricted to alice and dora
    missing: Keys  # nothing of these names or ids exists
    skin_items: list[int]  # in "skin", open to everyone


def _add_skin(site: Site) -> list[int]:
    """An open image project "skin": two items with a consensus, two open tasks."""
    image = encode_png(np.zeros((8, 8), dtype=np.uint8))
    with site.ws.db.session() as s:
        skin = repo.create_project(s, name="skin", classes=CLASSES, n_channels=1)
        new = [
            repo.NewItem(
                source_ref=f"skin/{i}", image_sha256=site.ws.blobs.put(image), split="train"
            )
            for i in range(2)
        ]
        repo.add_items(s, project=skin, items=new)
        items = [int(i) for i in repo.items_frame(s, project_id=skin.id).index]
        repo.create_tasks(s, project_id=skin.id, item_ids=items, required_answers=2)
    return items


def _consensus(site: Site, project: str, items: list[int]) -> None:
    """A crowd consensus on `items`: they wait in the doctors' review queue."""
    with site.ws.db.session() as s:
        record = repo.get_project(s, name=project)
        repo.add_item_labels(
            s,
            project_id=record.id,
            labels=pd.Series(0, index=items),
            kind=LabelKind.CONSENSUS,
            source=LabelSource.CROWD,
            method="majority_vote",
            probabilities=pd.DataFrame([[0.6, 0.4]] * len(items), index=items),
        )


@pytest.fixture
def world(any_site: Site, monkeypatch: pytest.MonkeyPatch) -> World:
    """ "chest" and the cohort "trial" restricted to alice (annotator) and dora (doctor);
    "skin" open; otto is a doctor and bob an annotator on neither."""
    monkeypatch.setitem(jobs_workflow.RUNNERS, jobs_workflow.RETRAIN, lambda ws, job, report: {})
    site = any_site
    accounts.add_user(site.ws, username="otto", role="doctor", password=PASSWORD)
    skin_items = _add_skin(site)
    with site.ws.db.session() as s:
        chest = repo.get_project(s, name="chest")
        chest_items = [int(i) for i in repo.items_frame(s, project_id=chest.id).index]
        labelling = (Task.project_id == chest.id, Task.kind == TaskKind.LABEL)
        task = s.scalar(select(Task.id).where(*labelling).order_by(Task.id))
        job = job_store.add_job(s, kind="train", project_id=chest.id, requested_by="dora")
        job_store.finish_job(s, job_id=job.id, status=JobStatus.SUCCEEDED, result={})
        cohort = repo.create_project(s, name="trial", classes=repo.COHORT_CLASSES, n_channels=1)
        (patient,) = repo.ensure_patients(s, project_id=cohort.id, pseudonyms=["p1"]).values()
        rec = prepo.add_recommendation(s, patient_id=patient, recommendation="treat")
        ids = (job.id, rec.id)
    _consensus(site, "chest", chest_items[4:6])
    _consensus(site, "skin", skin_items)
    for name, project in (("alice", "chest"), ("dora", "chest"), ("dora", "trial")):
        access.grant(site.ws, username=name, project=project, actor="test")
    assert task is not None
    hidden = Keys("chest", "trial", chest_items[0], task, ids[0], "p1", ids[1])
    missing = Keys("nope", "nowhere", 10**6, 10**6 + 1, 10**6 + 2, "p1", 10**6 + 3)
    return World(site, hidden, missing, skin_items)


@dataclass(frozen=True)
class Call:
    """One route asked about one hidden thing (`names`: the field of `Keys` it names)."""

    method: str
    route: str
    names: str
    request: Callable[[Keys], dict[str, Any]] = lambda k: {}
    annotators: bool = False  # an annotator's route (else doctors' and admins')

    def url(self, k: Keys) -> str:
        return self.route.format(
            item_id=k.item, task_id=k.task, job_id=k.job, pseudonym=k.patient, chart="answers"
        )


def _project(k: Keys) -> dict[str, Any]:
    return {"params": {"project": k.project}}


def _cohort(k: Keys) -> dict[str, Any]:
    return {"params": {"project": k.cohort}}


CALLS = [
    Call("GET", "/api/tasks/next", "project", _project, annotators=True),
    Call("POST", "/api/tasks/{task_id}/answer", "task", lambda k: {"json": {"label": 0}}, True),
    Call("POST", "/api/tasks/{task_id}/skip", "task", annotators=True),
    Call("GET", "/api/items/{item_id}/image", "item"),
    Call("GET", "/api/review/queue", "project", _project),
    Call("GET", "/api/review/{item_id}", "item"),
    Call("POST", "/api/review/{item_id}", "item", lambda k: {"json": {"label": "normal"}}),
    Call("POST", "/api/review/{item_id}/flag", "item", lambda k: {"json": {"reason": "unsure"}}),
    Call("DELETE", "/api/review/{item_id}/flag", "item"),
    Call(
        "POST",
        "/api/review/{item_id}/correct",
        "item",
        lambda k: {"json": {"label": "normal", "replaces": "pneumonia", "reason": "slip"}},
    ),
    Call("GET", "/api/review/{item_id}/gradcam.png", "item"),
    Call("GET", "/api/export/answers.csv", "project", _project),
    Call("GET", "/api/export/labels.csv", "project", _project),
    Call("GET", "/api/export/coco.json", "project", _project),
    Call("GET", "/api/dashboard", "project", _project),
    Call("GET", "/api/plan", "project", _project),
    Call(
        "POST",
        "/api/plan/publish",
        "project",
        lambda k: {"params": {"project": k.project, "budget": 0}},
    ),
    Call("POST", "/api/jobs/retrain", "project", lambda k: {"json": {"project": k.project}}),
    Call("GET", "/api/jobs", "project", _project),
    Call("GET", "/api/jobs/{job_id}", "job"),
    Call("GET", "/api/patients", "cohort", _cohort),
    Call("GET", "/api/patients/model", "cohort", _cohort),
    Call("GET", "/api/patients/model/calibration.png", "cohort", _cohort),
    Call("GET", "/api/patients/{pseudonym}", "cohort", _cohort),
    Call("GET", "/api/patients/{pseudonym}/survival.png", "cohort", _cohort),
    Call("POST", "/api/patients/{pseudonym}/recommendation", "cohort", _cohort),
    Call(
        "POST",
        "/api/patients/{pseudonym}/decision",
        "recommendation",
        lambda k: {"json": {"recommendation_id": k.recommendation, "decision": "accept"}},
    ),
    # pages
    Call("GET", "/review/{item_id}", "item"),
    Call("POST", "/review/{item_id}", "item", lambda k: {"data": {"label": "normal"}}),
    Call("POST", "/review/{item_id}/flag", "item", lambda k: {"data": {"reason": "unsure"}}),
    Call("POST", "/review/{item_id}/unflag", "item"),
    Call(
        "POST",
        "/review/{item_id}/correct",
        "item",
        lambda k: {"data": {"label": "normal", "replaces": "pneumonia", "reason": "slip"}},
    ),
    Call("GET", "/dashboard", "project", _project),
    Call("GET", "/dashboard/charts/{chart}.png", "project", _project),
    Call("GET", "/dashboard/job", "project", _project),
    Call("POST", "/dashboard/retrain", "project", lambda k: {"data": {"project": k.project}}),
    Call("GET", "/dashboard/plan", "project", _project),
    Call(
        "POST",
        "/dashboard/plan/publish",
        "project",
        lambda k: {"data": {"project": k.project, "budget": 0, "lay_cost": 1, "doctor_cost": 20}},
    ),
    Call("GET", "/patients", "cohort", _cohort),
    Call("GET", "/patients/model/calibration.png", "cohort", _cohort),
    Call("GET", "/patients/{pseudonym}", "cohort", _cohort),
    Call("GET", "/patients/{pseudonym}/survival.png", "cohort", _cohort),
    Call(
        "POST",
        "/patients/{pseudonym}/recommend",
        "cohort",
        lambda k: {"data": {"project": k.cohort}},
    ),
    Call(
        "POST",
        "/patients/{pseudonym}/decision",
        "cohort",
        lambda k: {
            "data": {
                "project": k.cohort,
                "recommendation_id": k.recommendation,
                "decision": "accept",
            }
        },
    ),
]
#: Routes that take no project (signing in, one's own progress, the admins' audit log)
#: or list across projects only (their lists are checked below).
NOT_PER_PROJECT = {
    ("GET", "/"),
    ("GET", "/login"),
    ("POST", "/login"),
    ("POST", "/logout"),
    ("GET", "/annotate"),
    ("GET", "/review"),
    ("GET", "/audit"),
    ("GET", "/api/audit"),
    ("GET", "/api/health"),
    ("POST", "/api/auth/login"),
    ("POST", "/api/auth/logout"),
    ("POST", "/api/auth/activity"),
    ("GET", "/api/me"),
    ("GET", "/api/me/progress"),
    ("GET", "/docs"),
    ("GET", "/docs/oauth2-redirect"),
    ("GET", "/redoc"),
}


def _detail(response: Any) -> str:
    try:
        return str(response.json()["detail"])
    except (ValueError, KeyError, TypeError):
        return response.text


def test_every_route_is_checked_here(site: Site) -> None:
    """A new route joins `CALLS` (or `NOT_PER_PROJECT`): none can forget the rule."""
    routes = {
        (method, route.path)
        for route in iter_route_contexts(site.client.app.routes)  # type: ignore[attr-defined]
        if isinstance(route.route, APIRoute)
        for method in route.methods or ()
    }
    checked = {(c.method, c.route) for c in CALLS}
    assert len(checked) == len(CALLS)
    assert routes == checked | NOT_PER_PROJECT


def test_outsiders_get_404_on_every_project_route_members_and_admins_pass(world: World) -> None:
    site, hidden, missing = world.site, world.hidden, world.missing
    headers = {name: site.headers(name) for name in ("alice", "bob", "dora", "otto", "adam")}
    for call in CALLS:
        member, outsider = ("alice", "bob") if call.annotators else ("dora", "otto")

        def ask(user: str, keys: Keys, call: Call = call) -> Any:
            return site.client.request(
                call.method,
                call.url(keys),
                headers=headers[user],
                follow_redirects=False,
                **call.request(keys),
            )

        refused = ask(outsider, hidden)
        assert refused.status_code == 404, (call, refused.text)
        unknown = ask(outsider, missing)
        key, other = str(getattr(hidden, call.names)), str(getattr(missing, call.names))
        assert unknown.status_code == 404 and _detail(unknown) == _detail(refused).replace(
            key, other
        ), ("said as for one that does not exist", call, _detail(refused))
        for user in (member,) if call.annotators else (member, "adam"):
            passed = ask(user, hidden)
            assert passed.status_code != 404 or _detail(passed) != _detail(refused), (user, call)


def test_lists_show_only_the_projects_one_may_open(world: World) -> None:
    site, chest = world.site, world.hidden
    otto, dora, bob = site.headers("otto"), site.headers("dora"), site.headers("bob")

    task = site.client.get("/api/tasks/next", headers=bob).json()
    assert task["project"] == "skin"
    queue = site.client.get("/api/review/queue", headers=otto).json()
    assert {e["project"] for e in queue} == {"skin"}
    queue = site.client.get("/api/review/queue", headers=dora).json()
    assert {e["project"] for e in queue} == {"chest", "skin"}
    page = site.client.get("/review", headers=otto).text
    assert f'href="/review/{world.skin_items[0]}"' in page and "chest" not in page

    assert site.client.get("/api/dashboard", headers=otto).json()["project"] == "skin"
    assert site.client.get("/api/dashboard", headers=dora).json()["project"] == "chest"
    assert "chest" not in site.client.get("/dashboard", headers=otto).text
    assert "chest" in site.client.get("/dashboard?project=skin", headers=dora).text
    assert site.client.get("/api/jobs", headers=otto).json() == []
    assert [j["id"] for j in site.client.get("/api/jobs", headers=dora).json()] == [chest.job]
    assert "trial" not in site.client.get("/patients", headers=otto).text
    assert "trial" in site.client.get("/patients", headers=dora).text

    # the one active job is chest's: an outsider retraining skin is not shown it
    with site.ws.db.session() as s:
        project_id = repo.get_project(s, name="chest").id
        job_store.add_job(s, kind="train", project_id=project_id, requested_by="dora")
        job_store.claim_next_job(s)  # running: the fake runner never sees it
    refused = site.client.post("/api/jobs/retrain", headers=otto, json={"project": "skin"})
    assert refused.status_code == 409 and "chest" not in refused.text
    joined = site.client.post("/api/jobs/retrain", headers=dora, json={"project": "skin"})
    assert joined.status_code == 200 and joined.json()["project"] == "chest"


def test_grants_and_revocations_count_from_the_next_request(world: World) -> None:
    site, item = world.site, world.hidden.item
    otto = site.headers("otto")
    assert site.client.get(f"/api/review/{item}", headers=otto).status_code == 404
    access.grant(site.ws, username="otto", project="chest", actor="test")
    assert site.client.get(f"/api/review/{item}", headers=otto).status_code == 200
    access.revoke(site.ws, username="otto", project="chest", actor="test")
    assert site.client.get(f"/api/review/{item}", headers=otto).status_code == 404
    for name in ("alice", "dora"):
        access.revoke(site.ws, username=name, project="chest", actor="test", open_project=True)
    assert site.client.get(f"/api/review/{item}", headers=otto).status_code == 200  # open again
