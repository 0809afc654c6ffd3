"""Repository functions for background jobs: enqueue, claim, progress, finish, recover.

Keyword-only, session first, like `repository`. At most one job is active (queued or
running) at a time: the `jobs.active` unique index refuses a second one, so two
concurrent requests cannot both start training.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Collection
from pathlib import Path
from typing import IO, Any

from sqlalchemy import Connection, or_, select, text, update
from sqlalchemy.orm import Session

from medloop.exceptions import NotFoundError
from medloop.store.db import Database
from medloop.store.models import Job, utcnow
from medloop.types import JobStatus

#: Longest error text kept with a failed job (the column's width).
MAX_ERROR = 1000


def add_job(session: Session, *, kind: str, project_id: int | None, requested_by: str) -> Job:
    """Insert a queued, active job; raises IntegrityError (at flush) when one is active."""
    job = Job(
        kind=kind,
        project_id=project_id,
        status=str(JobStatus.QUEUED),
        active=True,
        progress=0.0,
        message="waiting for the worker",
        requested_by=requested_by,
    )
    session.add(job)
    session.flush()
    return job


def get_job(session: Session, *, job_id: int) -> Job:
    job = session.get(Job, job_id)
    if job is None:
        raise NotFoundError(f"no job with id {job_id}")
    return job


def active_job(session: Session) -> Job | None:
    """The queued or running job, if any."""
    return session.scalar(select(Job).where(Job.active.is_(True)))


def recent_jobs(
    session: Session,
    *,
    project_id: int | None = None,
    project_ids: Collection[int] | None = None,
    limit: int = 10,
) -> list[Job]:
    """The newest jobs first (of one project if given; of those in `project_ids`, and
    jobs of no project, if given)."""
    query = select(Job).order_by(Job.id.desc()).limit(limit)
    if project_id is not None:
        query = query.where(Job.project_id == project_id)
    if project_ids is not None:
        query = query.where(or_(Job.project_id.in_(list(project_ids)), Job.project_id.is_(None)))
    return list(session.scalars(query))


def claim_next_job(session: Session) -> Job | None:
    """Mark the oldest queued job running and return it (None when nothing waits).

    The conditional UPDATE makes the claim atomic: of two workers, one wins."""
    candidate = session.scalar(
        select(Job.id).where(Job.status == str(JobStatus.QUEUED)).order_by(Job.id).limit(1)
    )
    if candidate is None:
        return None
    claimed = session.execute(
        update(Job)
        .where(Job.id == candidate, Job.status == str(JobStatus.QUEUED))
        .values(status=str(JobStatus.RUNNING), started_at=utcnow(), message="starting")
    )
    if getattr(claimed, "rowcount", 0) != 1:
        return None
    session.expire_all()
    return get_job(session, job_id=candidate)


def set_progress(session: Session, *, job_id: int, progress: float, message: str) -> None:
    session.execute(
        update(Job)
        .where(Job.id == job_id)
        .values(progress=min(max(float(progress), 0.0), 1.0), message=message[:200])
    )


def finish_job(
    session: Session,
    *,
    job_id: int,
    status: JobStatus,
    result: dict[str, Any] | None = None,
    error: str | None = None,
) -> None:
    """Record the outcome; the job stops being active."""
    values: dict[str, Any] = {
        "status": str(status),
        "active": None,
        "finished_at": utcnow(),
        "result": result,
        "error": None if error is None else error[:MAX_ERROR],
        "message": "finished" if status == JobStatus.SUCCEEDED else "failed",
    }
    if status == JobStatus.SUCCEEDED:
        values["progress"] = 1.0
    session.execute(update(Job).where(Job.id == job_id).values(**values))


def fail_running_jobs(session: Session, *, error: str) -> list[int]:
    """Mark every job left running (its worker is gone) as failed; returns their ids."""
    ids = list(session.scalars(select(Job.id).where(Job.status == str(JobStatus.RUNNING))))
    for job_id in ids:
        finish_job(session, job_id=job_id, status=JobStatus.FAILED, error=error)
    return ids


#: PostgreSQL advisory-lock key of the job runner (any constant the deployment leaves free).
RUNNER_LOCK_KEY = 0x6D6C6A6F62  # "mljob"


class RunnerLock:
    """Held by the one process that runs a database's background jobs: a session advisory
    lock on PostgreSQL, an exclusive lock on a file beside a SQLite database. Both end
    with the process that holds them, so a server that stops or dies frees the lock for
    the next, and a second server on the same database neither runs jobs beside the
    first nor fails the first one's running job as interrupted."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._connection: Connection | None = None
        self._file: IO[str] | None = None
        database = db.engine.url.database
        self._path = (
            Path(f"{database}.jobs.lock")
            if db.engine.dialect.name == "sqlite" and database not in (None, "", ":memory:")
            else None
        )

    @property
    def held(self) -> bool:
        return self._connection is not None or self._file is not None

    def acquire(self) -> bool:
        """Take the lock if nobody holds it; True while this process holds it."""
        if self.held:
            return True
        if self.db.engine.dialect.name == "postgresql":
            connection = self.db.engine.connect()
            query = text("SELECT pg_try_advisory_lock(:key)")
            taken = bool(connection.execute(query, {"key": RUNNER_LOCK_KEY}).scalar())
            connection.commit()  # a session lock outlives the transaction
            if taken:
                self._connection = connection
            else:
                connection.close()
            return taken
        if self._path is None:  # an in-memory database lives in this process only
            self._file = open(os.devnull)  # noqa: SIM115 - held until release()
            return True
        try:
            handle = self._path.open("a")
        except OSError:  # a read-only home runs no jobs
            return False
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        self._file = handle
        return True

    def release(self) -> None:
        if self._connection is not None:
            # closing alone would return the session, lock and all, to the pool
            self._connection.execute(
                text("SELECT pg_advisory_unlock(:key)"), {"key": RUNNER_LOCK_KEY}
            )
            self._connection.commit()
            self._connection.close()
            self._connection = None
        if self._file is not None:
            self._file.close()  # closing the file drops its lock
            self._file = None
