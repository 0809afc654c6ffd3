"""Background jobs over the JSON API: ask for a retrain, follow its progress."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from medloop.web.deps import WS, OptionalVisibleProject, Reviewer, VisibleJob
from medloop.workflows import access, jobs
from medloop.workflows.jobs import JobView

router = APIRouter(prefix="/api/jobs", tags=["jobs"])


class RetrainCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    project: str = Field(min_length=1, max_length=100)


@router.post(
    "/retrain",
    status_code=202,
    responses={200: {"description": "A job is already queued or running: that job"}, 404: {}},
)
def retrain(
    body: RetrainCreate, request: Request, response: Response, ws: WS, account: Reviewer
) -> JobView:
    """Retrain the project's model in the background (one job at a time)."""
    access.check(ws, account, "project", body.project)
    job, created = jobs.request_retrain(
        ws, project=body.project, requested_by=account.username, viewer=account
    )
    request.app.state.jobs.wake()
    response.status_code = 202 if created else 200
    return job


@router.get("")
def list_jobs(
    ws: WS,
    account: Reviewer,
    project: OptionalVisibleProject,
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
) -> list[JobView]:
    """The newest jobs of the projects you may open first."""
    return jobs.recent_jobs(ws, project=project, limit=limit, viewer=account)


@router.get("/{job_id}", responses={404: {}})
def get_job(job_id: VisibleJob, ws: WS, _account: Reviewer) -> JobView:
    """One job's status, progress, error and result."""
    return jobs.get_job(ws, job_id=job_id)
