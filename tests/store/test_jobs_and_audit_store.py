"""Jobs, audit pages and answer boxes in the store, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from medloop.store import Database
from medloop.store import jobs as job_store
from medloop.store import repository as repo
from medloop.store.assignments import add_answer_box
from medloop.types import JobStatus, LabelSource, Role


def _project(db: Database) -> int:
    with db.session() as s:
        return repo.create_project(s, name="chest", classes=["normal", "lesion"], n_channels=1).id


def test_only_one_job_is_active_and_claims_are_atomic(database: Database) -> None:
    project_id = _project(database)
    with database.session() as s:
        first = job_store.add_job(s, kind="train", project_id=project_id, requested_by="adam").id
    with pytest.raises(IntegrityError), database.session() as s:
        job_store.add_job(s, kind="train", project_id=project_id, requested_by="dora")
    with database.session() as s:
        active = job_store.active_job(s)
        assert active is not None and active.id == first and active.status == "queued"
        claimed = job_store.claim_next_job(s)
        assert claimed is not None and claimed.id == first and claimed.status == "running"
        assert claimed.started_at is not None
        assert job_store.claim_next_job(s) is None, "a running job is not claimed twice"
        job_store.set_progress(s, job_id=first, progress=1.7, message="epoch 3/20")
    with database.session() as s:
        job = job_store.get_job(s, job_id=first)
        assert (job.progress, job.message) == (1.0, "epoch 3/20")
        job_store.finish_job(s, job_id=first, status=JobStatus.SUCCEEDED, result={"version": 1})
    with database.session() as s:
        assert job_store.active_job(s) is None
        done = job_store.get_job(s, job_id=first)
        assert (done.status, done.active, done.result) == ("succeeded", None, {"version": 1})
        assert done.finished_at is not None
        second = job_store.add_job(s, kind="train", project_id=project_id, requested_by="dora").id
        newest_first = job_store.recent_jobs(s, project_id=project_id)
        assert [j.id for j in newest_first] == [second, first]


def test_jobs_left_running_are_failed_on_recovery(database: Database) -> None:
    project_id = _project(database)
    with database.session() as s:
        job_id = job_store.add_job(s, kind="train", project_id=project_id, requested_by="a").id
        job_store.claim_next_job(s)
    with database.session() as s:
        assert job_store.fail_running_jobs(s, error="interrupted") == [job_id]
    with database.session() as s:
        job = job_store.get_job(s, job_id=job_id)
        assert (job.status, job.error, job.active) == ("failed", "interrupted", None)
        assert job_store.fail_running_jobs(s, error="interrupted") == []


def test_audit_pages_filter_and_count(database: Database) -> None:
    with database.session() as s:
        for i in range(7):
            repo.audit(
                s,
                actor="adam" if i % 2 else "dora",
                action="item.read" if i < 5 else "export.labels",
                entity="item",
                entity_id=i,
            )
    with database.session() as s:
        rows, total = repo.audit_entries(s, limit=3)
        assert total == 7 and [r.entity_id for r in rows] == ["6", "5", "4"]
        rows, total = repo.audit_entries(s, actor="dora", offset=1, limit=2)
        assert total == 4 and [r.entity_id for r in rows] == ["4", "2"]
        rows, total = repo.audit_entries(s, actor="adam", action="item.read")
        assert total == 2 and [r.entity_id for r in rows] == ["3", "1"]
        assert repo.audit_actions(s) == ["export.labels", "item.read"]
        # every moment reads back in UTC, with its zone, from SQLite as from PostgreSQL
        assert all(r.at.utcoffset() == timedelta(0) for r in rows)
        # filters take the start of a name or action, in any case; _ and % are plain text
        assert repo.audit_entries(s, actor="AD")[1] == 3
        assert repo.audit_entries(s, action="item")[1] == 5
        assert repo.audit_entries(s, action="item_")[1] == 0
        assert repo.audit_entries(s, actor="%")[1] == 0


def test_answer_boxes_frame(database: Database) -> None:
    project_id = _project(database)
    with database.session() as s:
        project = repo.get_project(s, name="chest")
        repo.add_items(
            s,
            project=project,
            items=[repo.NewItem(source_ref="a.png", image_sha256="0" * 64, split="train")],
        )
        item = int(repo.items_frame(s, project_id=project_id).index[0])
        (task,) = repo.create_tasks(s, project_id=project_id, item_ids=[item], required_answers=2)
        workers = repo.ensure_users(
            s, usernames=["ann", "ben"], role=Role.ANNOTATOR, simulated=True
        )
        answers = repo.add_answers(
            s,
            task_ids=[task, task],
            worker_ids=[workers["ann"], workers["ben"]],
            labels=[1, 0],
            source=LabelSource.CROWD,
        )
        add_answer_box(s, answer_id=answers[0], box=[0.1, 0.2, 0.3, 0.4])
    with database.session() as s:
        frame = repo.answer_boxes_frame(s, project_id=project_id)
    assert frame.to_dict("records") == [
        {
            "item": item,
            "worker": "ann",
            "label": 1,
            "source": "crowd",
            "x": 0.1,
            "y": 0.2,
            "width": 0.3,
            "height": 0.4,
        }
    ]


def test_migration_0004_goes_down_and_up_and_keeps_the_audit_log_append_only(
    database: Database,
) -> None:
    database.downgrade("0003")
    assert "jobs" not in inspect(database.engine).get_table_names()
    database.migrate()
    assert "jobs" in inspect(database.engine).get_table_names()
    with database.session() as s:
        repo.audit(s, actor="adam", action="create", entity="project")
    with pytest.raises(DBAPIError), database.session() as s:
        s.execute(text("UPDATE audit_log SET actor = 'x'"))


def test_one_process_at_a_time_holds_the_job_runner_lock(database: Database) -> None:
    first, second = job_store.RunnerLock(database), job_store.RunnerLock(database)
    assert first.acquire() and first.acquire(), "taken, and held"
    assert not second.acquire(), "a second server waits"
    first.release()
    assert second.acquire(), "and takes it once the first is gone"
    second.release()
