"""Concurrent annotators spread over tasks: a task handed out is held for its person, and
is not handed to more people at once than it still needs answers."""

from __future__ import annotations

from sqlalchemy import func, select
from web_support import Site

from medloop.store.models import Answer, Task
from medloop.workflows.annotate import TaskHolds


def test_a_claim_needs_room_among_other_peoples_unexpired_holds() -> None:
    now = [0.0]
    holds = TaskHolds(ttl=10.0, clock=lambda: now[0])
    one, two, three = (holds.claimer(user) for user in (1, 2, 3))
    assert one(100, 2) and two(100, 2)
    assert not three(100, 2), "two people hold it and it needs two answers"
    assert one(100, 2), "a person's own hold does not count against them"
    assert three(200, 1)
    assert not one(200, 1)
    assert three(300, 1), "one task per person: the newest claim"
    assert one(200, 1)
    four = holds.claimer(4)
    assert not four(100, 1), "two still holds task 100"
    holds.release(2)
    assert four(100, 1), "a released hold frees its place"
    assert not holds.claimer(5)(100, 1)
    now[0] = 10.5
    assert holds.claimer(5)(100, 1), "holds expire"


def test_an_answer_given_after_asking_still_takes_a_place() -> None:
    now = [0.0]
    holds = TaskHolds(ttl=100.0, clock=lambda: now[0])
    assert holds.claimer(1)(7, 1)
    late = holds.claimer(2)  # asked while 1 held task 7; its read may miss 1's answer
    now[0] = 1.0
    holds.release(1, answered=7)
    assert not late(7, 1), "1's answer may be missing from the answers 2 read"
    now[0] = 2.0
    assert holds.claimer(3)(7, 1), "asked after the answer: the read includes it"


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
    assert (answers, status) == (2, "done")
