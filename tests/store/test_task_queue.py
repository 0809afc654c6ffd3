"""The task queue on SQLite and PostgreSQL: answer counts kept on tasks (migration 0006),
open tasks in hand-out order, and one person's tally of answers."""

from __future__ import annotations

from typing import Any

import pandas as pd
from sqlalchemy import inspect, select
from store_support import project_with_items

from medloop.store import Database, assignments
from medloop.store import repository as repo
from medloop.store.models import ItemLabel, Task
from medloop.types import LabelKind, LabelSource, Role, TaskStatus


def _queue(db: Database, *, n_items: int = 6) -> tuple[int, list[int], list[int], dict[str, int]]:
    """A project with one task per item (the last two gold), and three annotators."""
    with db.session() as s:
        project, items = project_with_items(s, n_items)
        gold = [i >= n_items - 2 for i in range(n_items)]
        tasks = repo.create_tasks(
            s,
            project_id=project.id,
            item_ids=items,
            required_answers=[1000 if g else 3 for g in gold],
            is_gold=gold,
        )
        people = repo.ensure_users(
            s, usernames=["ann", "bob", "cat"], role=Role.ANNOTATOR, simulated=False
        )
        return project.id, items, tasks, people


def _answer(db: Database, tasks: list[int], workers: list[int], labels: list[int]) -> None:
    with db.session() as s:
        repo.add_answers(
            s, task_ids=tasks, worker_ids=workers, labels=labels, source=LabelSource.CROWD
        )


def _counts(db: Database) -> dict[int, tuple[int, str]]:
    with db.session() as s:
        rows = s.execute(select(Task.id, Task.answer_count, Task.status)).all()
    return {t: (n, status) for t, n, status in rows}


def test_answers_are_counted_on_their_tasks_and_close_them(database: Database) -> None:
    _, _, tasks, people = _queue(database)
    ann, bob, cat = people["ann"], people["bob"], people["cat"]
    _answer(database, [tasks[0], tasks[0], tasks[1]], [ann, bob, ann], [0, 1, 0])
    _answer(database, [tasks[0]], [cat], [0])
    counts = _counts(database)
    assert counts[tasks[0]] == (3, TaskStatus.DONE)
    assert counts[tasks[1]] == (1, TaskStatus.OPEN)
    assert counts[tasks[2]] == (0, TaskStatus.OPEN)
    with database.session() as s:  # a task this session loaded before sees the update
        loaded = s.get(Task, tasks[1])
        assert loaded is not None and loaded.answer_count == 1
        repo.add_answers(
            s,
            task_ids=[tasks[1], tasks[1]],
            worker_ids=[bob, cat],
            labels=[0, 0],
            source=LabelSource.CROWD,
        )
        assert (loaded.answer_count, loaded.status) == (3, TaskStatus.DONE)


def test_open_tasks_come_most_answered_first_then_by_id(database: Database) -> None:
    project, _, tasks, people = _queue(database)
    ann, bob, cat = people["ann"], people["bob"], people["cat"]
    _answer(database, [tasks[3], tasks[3], tasks[2], tasks[4]], [ann, bob, bob, ann], [0] * 4)

    def order(worker: int, **kwargs: Any) -> list[int]:
        with database.session() as s:
            found = assignments.open_tasks_for_worker(
                s,
                worker_id=worker,
                project_ids=[project],
                **kwargs,  # type: ignore[arg-type]
            )
        return [t.task_id for t in found]

    assert order(cat, gold=False) == [tasks[3], tasks[2], tasks[0], tasks[1]]
    assert order(ann, gold=False) == [tasks[2], tasks[0], tasks[1]], "not her answered ones"
    assert order(cat, gold=False, limit=2) == [tasks[3], tasks[2]]
    assert order(cat, gold=True) == [tasks[4], tasks[5]]
    assert order(cat) == [tasks[3], tasks[2], tasks[4], tasks[0], tasks[1], tasks[5]]
    with database.session() as s:
        (first,) = assignments.open_tasks_for_worker(
            s, worker_id=cat, project_ids=[project], limit=1
        )
        assert assignments.open_tasks_for_worker(s, worker_id=cat, project_ids=[]) == []
    assert (first.answers, first.required, first.is_gold) == (2, 3, False)


def test_a_person_is_never_offered_an_item_twice_through_another_task(
    database: Database,
) -> None:
    """ann answered item 0 and skipped item 1; a gold question and a second ordinary task
    on those items (as a later round or a request for more answers opens) reach bob and
    cat only, and the count of what ann could still answer counts items, not tasks."""
    project, items, tasks, people = _queue(database)
    ann, bob = people["ann"], people["bob"]
    _answer(database, [tasks[0]], [ann], [0])
    with database.session() as s:
        assignments.add_skip(s, worker_id=ann, task_id=tasks[1], reason="skip")
        again = repo.create_tasks(
            s,
            project_id=project,
            item_ids=[items[0], items[1], items[2]],
            required_answers=[1000, 3, 3],
            is_gold=[True, False, False],
        )

    def offered(worker: int) -> tuple[set[int], int]:
        with database.session() as s:
            found = assignments.open_tasks_for_worker(s, worker_id=worker, project_ids=[project])
            count = assignments.count_open_tasks_for_worker(
                s, worker_id=worker, project_ids=[project]
            )
        return {t.task_id for t in found}, count

    assert offered(ann) == ({tasks[2], again[2], tasks[3], tasks[4], tasks[5]}, 4)
    assert offered(bob) == ({*tasks, *again}, 6)
    _answer(database, [again[2]], [bob], [1])
    assert offered(bob) == ({*tasks, *again} - {tasks[2], again[2]}, 5)


def test_a_persons_tally_scores_gold_answers_on_the_newest_final_label(
    database: Database,
) -> None:
    project, items, tasks, people = _queue(database)
    ann, bob = people["ann"], people["bob"]
    with database.session() as s:
        for label in (0, 1):  # the second final label of the first gold item replaces the first
            repo.add_item_labels(
                s,
                project_id=project,
                labels=pd.Series({items[4]: label}),
                kind=LabelKind.FINAL,
                source=LabelSource.DOCTOR,
                method="review",
            )
    # ann: two ordinary answers and both gold questions (right on the first; the second
    # has no final label yet); bob: nothing
    _answer(database, [tasks[0], tasks[1], tasks[4], tasks[5]], [ann] * 4, [0, 1, 1, 0])
    with database.session() as s:
        assert assignments.worker_tally(s, worker_id=ann) == assignments.WorkerTally(
            answered=4, gold_answered=2
        )
        assert assignments.worker_tally(s, worker_id=ann, score=True) == assignments.WorkerTally(
            answered=4, gold_answered=2, gold_scored=1, gold_correct=1
        )
        assert assignments.worker_tally(s, worker_id=bob, score=True) == assignments.WorkerTally(
            answered=0, gold_answered=0
        )


def test_migration_0006_counts_the_answers_already_given(database: Database) -> None:
    _, _, tasks, people = _queue(database)
    ann, bob = people["ann"], people["bob"]
    _answer(database, [tasks[0], tasks[0], tasks[1]], [ann, bob, ann], [0, 1, 0])
    database.downgrade("0005")
    columns = {c["name"] for c in inspect(database.engine).get_columns("tasks")}
    assert "answer_count" not in columns
    database.migrate()
    assert "ix_tasks_queue" in {i["name"] for i in inspect(database.engine).get_indexes("tasks")}
    counts = _counts(database)
    assert [counts[t][0] for t in tasks] == [2, 1, 0, 0, 0, 0]


def test_migration_0009_drops_the_index_the_queue_index_covers(database: Database) -> None:
    """Lookups by (project_id, status) use ix_tasks_queue's leading columns; the index on
    those two columns alone comes back only when the schema goes back to 0008."""

    def names() -> set[str]:
        return {i["name"] for i in inspect(database.engine).get_indexes("tasks")}

    assert "ix_tasks_project_status" not in names() and "ix_tasks_queue" in names()
    database.downgrade("0008")
    assert "ix_tasks_project_status" in names()
    database.migrate()
    assert "ix_tasks_project_status" not in names()


def test_plain_reads_see_what_the_session_has_not_flushed(database: Database) -> None:
    """`plain_execute` flushes first, as `Session.execute` does: a final label added
    through the ORM is seen by the next plain read in the same session."""
    project_id, items, _, _ = _queue(database)
    with database.session() as s:
        s.add(
            ItemLabel(
                project_id=project_id,
                item_id=items[0],
                kind=str(LabelKind.FINAL),
                label=1,
                source=str(LabelSource.DOCTOR),
                method="review",
            )
        )
        assert assignments.final_labels_for(s, item_ids=[items[0]]) == {items[0]: 1}
