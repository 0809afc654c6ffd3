"""Background jobs: retrain a project's model without holding up a web request.

A job's state lives in the database (`jobs` table), so it survives a page reload and a
server restart. At most one job is active at a time: asking again while one is queued
or running returns that job instead of starting a second. `JobWorker` is a thread that
claims queued jobs one by one and runs them; training itself is `loop.train`.

    >>> # in a server: worker = JobWorker(ws); worker.start(); ...; worker.stop()
    >>> # without one:  job, created = request_retrain(ws, project="chest", requested_by="adam")
    >>> #               run_next_job(ws)   # runs it here and now

A job left "running" when its server stopped is marked failed at the next start
(`recover_interrupted`), with a message that says so. One server process per database
runs jobs (`medloop serve` starts one).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError

from medloop.exceptions import ConflictError, InvalidInputError, MedloopError, NotFoundError
from medloop.store import jobs as job_store
from medloop.store import members
from medloop.store import repository as repo
from medloop.store.models import Job, Project
from medloop.types import JobStatus
from medloop.workflows.accounts import Account
from medloop.workflows.loop import aggregate, train
from medloop.workflows.workspace import Workspace

logger = logging.getLogger(__name__)

RETRAIN = "train"
INTERRUPTED = "interrupted: the server stopped while this job was running; start it again"


@dataclass(frozen=True)
class JobView:
    """What people may see of a job."""

    id: int
    kind: str
    project: str | None
    status: str
    progress: float
    message: str
    requested_by: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None
    result: dict[str, Any] | None

    @property
    def active(self) -> bool:
        return self.status in (JobStatus.QUEUED, JobStatus.RUNNING)


Report = Callable[[float, str], None]
"""Progress callback of a running job: (fraction done 0..1, short message)."""
Runner = Callable[[Workspace, JobView, Report], dict[str, Any]]
"""Does a job's work and returns its result (JSON-ready)."""


def _view(session: Any, job: Job) -> JobView:
    project = session.get(Project, job.project_id) if job.project_id is not None else None
    return JobView(
        id=job.id,
        kind=job.kind,
        project=None if project is None else project.name,
        status=job.status,
        progress=float(job.progress),
        message=job.message,
        requested_by=job.requested_by,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        error=job.error,
        result=job.result,
    )


def request_retrain(
    ws: Workspace, *, project: str, requested_by: str, viewer: Account | None = None
) -> tuple[JobView, bool]:
    """Queue retraining `project`; returns (job, created). While any job is queued or
    running, that job is returned with created False and nothing new is queued; one of a
    project `viewer` may not reach (`workflows.access`) is not shown to them:
    ConflictError. A patient cohort, or a project without a single answer or label, is
    refused now rather than failing in the worker."""
    try:
        with ws.db.session() as s:
            record = repo.get_image_project(s, name=project)
            if repo.label_state(s, project_id=record.id) == (0, 0):
                raise InvalidInputError(
                    f"project {project!r} has no answers or labels yet: nothing to train on"
                )
            job = job_store.add_job(
                s, kind=RETRAIN, project_id=record.id, requested_by=requested_by
            )
            repo.audit(
                s,
                actor=requested_by,
                action="job.request",
                entity="job",
                entity_id=job.id,
                detail={"kind": RETRAIN, "project": record.id},
            )
            view = _view(s, job)
        logger.info("job %d queued (retrain project %d)", view.id, record.id)
        return view, True
    except IntegrityError:
        with ws.db.session() as s:
            active = job_store.active_job(s)
            if active is None:  # finished in between: ask once more
                return request_retrain(
                    ws, project=project, requested_by=requested_by, viewer=viewer
                )
            if viewer is not None and not members.reaches(
                s, user_id=viewer.id, role=viewer.role, kind="job", key=active.id
            ):
                raise ConflictError(
                    "another project's model is being trained; ask again when it has finished"
                ) from None
            return _view(s, active), False


def get_job(ws: Workspace, *, job_id: int) -> JobView:
    with ws.db.session() as s:
        return _view(s, job_store.get_job(s, job_id=job_id))


def recent_jobs(
    ws: Workspace, *, project: str | None = None, limit: int = 10, viewer: Account | None = None
) -> list[JobView]:
    """The newest jobs first (of one project if given; with `viewer`, of the projects
    they may reach, `workflows.access`)."""
    with ws.db.session() as s:
        project_id = None if project is None else repo.get_project(s, name=project).id
        reached = (
            None
            if viewer is None
            else members.visible_project_ids(s, user_id=viewer.id, role=viewer.role)
        )
        found = job_store.recent_jobs(s, project_id=project_id, project_ids=reached, limit=limit)
        return [_view(s, j) for j in found]


def latest_job(ws: Workspace, *, project: str | None = None) -> JobView | None:
    jobs = recent_jobs(ws, project=project, limit=1)
    return jobs[0] if jobs else None


def recover_interrupted(ws: Workspace) -> list[int]:
    """Mark jobs left running by a stopped server as failed (call before starting a worker)."""
    with ws.db.session() as s:
        ids = job_store.fail_running_jobs(s, error=INTERRUPTED)
        for job_id in ids:
            repo.audit(s, actor="system", action="job.interrupted", entity="job", entity_id=job_id)
    if ids:
        logger.warning("marked interrupted jobs %s as failed", ids)
    return ids


def retrain_runner(ws: Workspace, job: JobView, report: Report) -> dict[str, Any]:
    """Aggregate the crowd's answers (people's answers from the web included), then train
    a new model version of the job's project (`loop.train`), reporting epochs."""
    from medloop.learning import TrainConfig  # torch only when a job really trains

    if job.project is None:
        raise MedloopError("a retrain job needs a project")
    # leave one core to the web server that runs this worker
    config = TrainConfig(num_threads=max(1, (os.cpu_count() or 2) - 1))

    def on_epoch(epoch: int, record: dict[str, float]) -> None:
        auc = record.get("val_auc")
        shown = "" if auc is None else f", validation AUC {auc:.3f}"
        report(epoch / config.max_epochs, f"epoch {epoch}/{config.max_epochs}{shown}")

    report(0.0, "aggregating the crowd's answers")
    try:
        result = aggregate(ws, project=job.project)
        report(0.0, f"consensus on {len(result.labels)} items; loading labels and images")
    except NotFoundError:  # no crowd answers yet: train on the final labels alone
        report(0.0, "no crowd answers yet; loading labels and images")
    metrics = train(ws, project=job.project, config=config, on_epoch=on_epoch)
    return {k: v for k, v in metrics.items() if isinstance(v, int | float | str | None)}


RUNNERS: dict[str, Runner] = {RETRAIN: retrain_runner}


def run_next_job(ws: Workspace, *, runners: Mapping[str, Runner] | None = None) -> JobView | None:
    """Claim the oldest queued job and run it here; returns its final state (None when
    nothing waits). A domain error or any crash marks the job failed with the reason."""
    table = RUNNERS if runners is None else runners
    with ws.db.session() as s:
        claimed = job_store.claim_next_job(s)
        job = None if claimed is None else _view(s, claimed)
    if job is None:
        return None
    logger.info("job %d started (%s)", job.id, job.kind)

    def report(progress: float, message: str) -> None:
        with ws.db.session() as s:
            job_store.set_progress(s, job_id=job.id, progress=progress, message=message)

    try:
        runner = table.get(job.kind)
        if runner is None:
            raise MedloopError(f"no runner for jobs of kind {job.kind!r}")
        result = runner(ws, job, report)
    except Exception as error:  # a job's failure is recorded, never raised
        if isinstance(error, MedloopError):
            reason = str(error)
            logger.warning("job %d failed: %s", job.id, type(error).__name__)
        else:
            reason = f"{type(error).__name__}: {error}"
            logger.exception("job %d crashed", job.id)
        _finish(ws, job, JobStatus.FAILED, error=reason)
    else:
        _finish(ws, job, JobStatus.SUCCEEDED, result=result)
        logger.info("job %d succeeded", job.id)
    return get_job(ws, job_id=job.id)


def _finish(
    ws: Workspace,
    job: JobView,
    status: JobStatus,
    *,
    result: dict[str, Any] | None = None,
    error: str | None = None,
) -> None:
    with ws.db.session() as s:
        job_store.finish_job(s, job_id=job.id, status=status, result=result, error=error)
        repo.audit(s, actor="system", action=f"job.{status}", entity="job", entity_id=job.id)


class JobWorker:
    """A daemon thread that runs queued jobs one at a time.

    Of the servers on one database, only the holder of its `RunnerLock` runs jobs; on
    taking the lock, a worker first fails jobs a stopped server left running. `wake()`
    makes the worker look for work now (it also looks every `poll_seconds`); `stop()` asks
    it to end after the current job and waits up to `timeout` seconds.
    """

    def __init__(
        self,
        ws: Workspace,
        *,
        runners: Mapping[str, Runner] | None = None,
        poll_seconds: float = 2.0,
    ) -> None:
        self.ws = ws
        self.runners = runners
        self.poll_seconds = poll_seconds
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: Only its holder runs jobs (another server on the database waits for it).
        self._lock = job_store.RunnerLock(ws.db)

    def start(self) -> None:
        if self._lock.acquire():  # at once where it is free: tests and callers see it so
            recover_interrupted(self.ws)
        self._thread = threading.Thread(target=self._loop, name="medloop-jobs", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._thread is None or not self._thread.is_alive():
            self._lock.release()

    def _loop(self) -> None:
        while not self._stop.is_set():
            if not self._lock.held:
                try:
                    if self._lock.acquire():  # the server that held it has stopped
                        recover_interrupted(self.ws)
                except Exception:
                    logger.exception("job worker: could not take the job runner's lock")
                if not self._lock.held:
                    self._wake.wait(self.poll_seconds)
                    self._wake.clear()
                    continue
            try:
                ran = run_next_job(self.ws, runners=self.runners)
            except Exception:  # e.g. the database is briefly unreachable
                logger.exception("job worker: could not claim a job")
                ran = None
            if ran is None:
                self._wake.wait(self.poll_seconds)
                self._wake.clear()
