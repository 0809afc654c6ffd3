"""Holds and skips in the database (migration 0007), on SQLite and PostgreSQL: a task is
held by no more people at once than it still needs answers, across connections, and a
skipped task is not offered to its person again."""

from __future__ import annotations

import threading

from sqlalchemy import func, select
from store_support import project_with_items

from medloop.store import Database, assignments
from medloop.store import repository as repo
from medloop.store.models import TaskHold, TaskSkip
from medloop.types import LabelSource, Role


def _tasks(db: Database, required: list[int], people: int = 3) -> tuple[int, list[int], list[int]]:
    """A project with one task per entry of `required` (its answers needed), and people."""
    with db.session() as s:
        project, items = project_with_items(s, len(required))
        tasks = repo.create_tasks(
            s, project_id=project.id, item_ids=items, required_answers=required
        )
        names = [f"p{i}" for i in range(people)]
        ids = repo.ensure_users(s, usernames=names, role=Role.ANNOTATOR, simulated=False)
        return project.id, tasks, [ids[n] for n in names]


def _hold(db: Database, worker: int, tasks: list[int], now: float = 0.0) -> int | None:
    with db.writing() as s:
        return assignments.hold_first(s, worker_id=worker, task_ids=tasks, now=now, seconds=10)


def test_a_hold_needs_room_among_other_peoples_unexpired_holds(database: Database) -> None:
    _, (t1, t2, t3), _ = _tasks(database, [2, 1, 1])
    with database.session() as s:
        five = repo.ensure_users(
            s, usernames=[f"q{i}" for i in range(5)], role=Role.ANNOTATOR, simulated=False
        )
    one, two, three, four, late = five.values()
    assert _hold(database, one, [t1]) == t1
    assert _hold(database, two, [t1]) == t1
    assert _hold(database, three, [t1, t2]) == t2, "two people hold t1 and it needs two"
    assert _hold(database, one, [t1]) == t1, "a person's own hold does not count against them"
    assert _hold(database, three, [t2]) == t2, "asking again keeps a place one still has"
    assert _hold(database, four, [t1, t2, t3]) == t3
    assert _hold(database, late, [t1, t2, t3]) is None, "every place is taken"
    assert _hold(database, one, [t2]) is None, "three holds t2"
    assert _hold(database, late, [t1]) == t1, "asking again ended one's hold on t1"
    with database.writing() as s:
        assignments.release_hold(s, worker_id=two)
    assert _hold(database, one, [t1]) == t1, "a released hold frees its place"
    assert _hold(database, two, [t2], now=10.5) == t2, "holds expire"
    assert _hold(database, one, [], now=10.5) is None, "asking for nothing ends one's hold"
    with database.session() as s:
        left = {w: t for w, t in s.execute(select(TaskHold.worker_id, TaskHold.task_id))}
    # an expired hold keeps no place but stays: its person may still answer that task
    assert left == {two: t2, three: t2, four: t3, late: t1}


def test_answers_take_the_places_they_fill(database: Database) -> None:
    _, (task,), (one, two, three) = _tasks(database, [2])
    assert _hold(database, one, [task]) == task
    with database.writing() as s:
        repo.add_answers(s, task_ids=[task], worker_ids=[one], labels=[0], source=LabelSource.CROWD)
        assignments.release_hold(s, worker_id=one)
    assert _hold(database, two, [task]) == task, "one answer given, one place left"
    assert _hold(database, three, [task]) is None
    with database.writing() as s:
        repo.add_answers(s, task_ids=[task], worker_ids=[two], labels=[1], source=LabelSource.CROWD)
    assert _hold(database, three, [task]) is None, "a task with all its answers is closed"


def test_concurrent_claims_never_share_a_last_place(database: Database) -> None:
    """Eight people ask at the same moment, each on a connection of their own, for the
    same tasks that have three places in all: exactly three get one."""
    _, tasks, people = _tasks(database, [1, 2], people=8)
    start = threading.Barrier(len(people))
    got: dict[int, int | None] = {}

    def ask(worker: int) -> None:
        start.wait()
        got[worker] = _hold(database, worker, tasks)

    threads = [threading.Thread(target=ask, args=(p,)) for p in people]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    handed = [t for t in got.values() if t is not None]
    assert sorted(handed) == sorted([tasks[0], tasks[1], tasks[1]])
    with database.session() as s:
        held = s.execute(select(TaskHold.task_id, func.count()).group_by(TaskHold.task_id)).all()
    assert dict(held) == {tasks[0]: 1, tasks[1]: 2}


def test_skipped_tasks_are_not_offered_again_to_their_person(database: Database) -> None:
    project, (t1, t2, t3), (ann, bob, _) = _tasks(database, [3, 3, 3])
    with database.session() as s:
        assignments.add_skip(s, worker_id=ann, task_id=t2, reason="skip")
    with database.session() as s:  # again, now unsure: one row, the newest reason
        assignments.add_skip(s, worker_id=ann, task_id=t2, reason="unsure")
    with database.session() as s:
        assert s.execute(select(TaskSkip.task_id, TaskSkip.reason)).all() == [(t2, "unsure")]

        def offered(worker: int) -> list[int]:
            found = assignments.open_tasks_for_worker(s, worker_id=worker, project_ids=[project])
            return [t.task_id for t in found]

        assert offered(ann) == [t1, t3]
        assert offered(bob) == [t1, t2, t3], "another person's skip changes nothing for bob"
        assert assignments.count_open_tasks_for_worker(s, worker_id=ann, project_ids=[project]) == 2
