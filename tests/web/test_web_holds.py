"""Concurrent annotators spread over tasks: a task handed out is held for its person, and
is not handed to more people at once than it still needs answers (the store's side is in
tests/store/test_task_holds.py)."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import func, select
from web_support import Site

from medloop.store.models import Answer, Task, TaskHold
from medloop.web import create_app
from medloop.workflows import Workspace


def test_a_task_is_not_handed_out_past_its_redundancy(site: Site) -> None:
    alice, bob, carol = (site.headers(n) for n in ("alice", "bob", "carol"))
    first = site.client.get("/api/tasks/next", headers=alice).json()
    with site.ws.db.session() as s:
        task = s.get(Task, first["task_id"])
        assert task is not None and not task.is_gold
        assert task.required_answers == 2
    # alice asks again: the same task (hers until she answers or skips)
    assert site.client.get("/api/tasks/next", headers=alice).json()["task_id"] == first["task_id"]
    # bob may share it (it needs two answers), carol gets another one
    assert site.client.get("/api/tasks/next", headers=bob).json()["task_id"] == first["task_id"]
    third = site.client.get("/api/tasks/next", headers=carol).json()
    assert third["task_id"] != first["task_id"]
    # alice answers (her hold ends); the task needs one more answer and bob holds it,
    # so carol, asking again after skipping, still gets another task
    url = f"/api/tasks/{first['task_id']}/answer"
    assert site.client.post(url, headers=alice, json={"label": 0}).status_code == 201
    site.client.post(f"/api/tasks/{third['task_id']}/skip", headers=carol)
    assert site.client.get("/api/tasks/next", headers=carol).json()["task_id"] != first["task_id"]
    assert site.client.post(url, headers=bob, json={"label": 1}).status_code == 201
    with site.ws.db.session() as s:
        answers = s.scalar(select(func.count(Answer.id)).where(Answer.task_id == first["task_id"]))
        status = s.scalar(select(Task.status).where(Task.id == first["task_id"]))
        holders = s.scalars(select(TaskHold.task_id)).all()
    assert (answers, status) == (2, "done")
    assert first["task_id"] not in holders, "answering ends the hold"


def test_holds_and_skips_are_shared_by_server_processes(site: Site) -> None:
    """A second app on the same database (another server process) sees the first one's
    holds and skips: they live in the database, not in a process."""
    other_ws = Workspace.open(site.ws.settings)
    try:
        with TestClient(create_app(site.ws.settings, workspace=other_ws)) as other:
            alice, bob, carol = (site.headers(n) for n in ("alice", "bob", "carol"))
            first = site.client.get("/api/tasks/next", headers=alice).json()["task_id"]
            assert other.get("/api/tasks/next", headers=bob).json()["task_id"] == first
            assert other.get("/api/tasks/next", headers=carol).json()["task_id"] != first, (
                "alice (on the first app) and bob hold both places"
            )
            site.client.post(f"/api/tasks/{first}/skip", headers=alice)
            assert other.get("/api/tasks/next", headers=alice).json()["task_id"] != first, (
                "her skip holds on the other app too"
            )
    finally:
        other_ws.close()
