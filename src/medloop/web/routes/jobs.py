"""Background jobs over the JSON API: ask for a retrain, follow its progress."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from medloop.web.deps import WS, Reviewer
from medloop.web.routes.api import Id
from medloop.workflows import jobs
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
    job, created = jobs.request_retrain(ws, project=body.project, requested_by=account.username)
    request.app.state.jobs.wake()
    response.status_code = 202 if created else 200
    return job


@router.get("")
def list_jobs(
    ws: WS,
    _account: Reviewer,
    project: Annotated[str | None, Query(max_length=100)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
) -> list[JobView]:
    """The newest jobs first."""
    return jobs.recent_jobs(ws, project=project, limit=limit)


@router.get("/{job_id}", responses={404: {}})
def get_job(job_id: Id, ws: WS, _account: Reviewer) -> JobView:
    """One job's status, progress, error and result."""
    return jobs.get_job(ws, job_id=job_id)
