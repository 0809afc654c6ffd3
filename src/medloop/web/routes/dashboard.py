"""The project dashboard (doctors and admins): page, charts, JSON, and the retrain button.

Numbers come from `workflows.dashboard`; charts are PNGs drawn on the server
(`medloop.plots`); retraining is a background job (`workflows.jobs`) whose panel the
page polls with htmx while it is queued or running.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Form, Path, Query, Request, Response
from fastapi.responses import RedirectResponse

from medloop import plots
from medloop.exceptions import MedloopError
from medloop.web.deps import WS, Reviewer
from medloop.web.rendering import REVIEWERS, PageAccount, ReviewerPage, error_page, render
from medloop.workflows import dashboard, jobs
from medloop.workflows.dashboard import Dashboard

router = APIRouter(include_in_schema=False)
api_router = APIRouter(prefix="/api", tags=["dashboard"])

ProjectName = Annotated[str | None, Query(max_length=100, description="Default: the first.")]
Chart = Literal["answers", "annotators", "learning-curve"]


def _project(ws: WS, project: str | None) -> str | None:
    return project or next(iter(dashboard.list_projects(ws)), None)


@api_router.get("/dashboard", responses={404: {}})
def dashboard_json(ws: WS, _account: Reviewer, project: ProjectName = None) -> Dashboard | None:
    """A project's progress, answers per day, annotators' accuracy with 95% intervals,
    consensus accuracy on gold, model versions and learning curve (null: no project)."""
    name = _project(ws, project)
    return None if name is None else dashboard.project_dashboard(ws, project=name)


@router.get("/dashboard")
def dashboard_page(
    request: Request, ws: WS, account: ReviewerPage, project: ProjectName = None
) -> Response:
    name = _project(ws, project)
    return render(
        request,
        "dashboard.html",
        account,
        projects=dashboard.list_projects(ws),
        board=None if name is None else dashboard.project_dashboard(ws, project=name),
        job=jobs.latest_job(ws),
    )


@router.get("/dashboard/charts/{chart}.png")
def dashboard_chart(
    request: Request,
    ws: WS,
    account: PageAccount,
    chart: Annotated[Chart, Path()],
    project: Annotated[str, Query(max_length=100)],
) -> Response:
    if account is None or account.role not in REVIEWERS:
        return Response(status_code=401 if account is None else 403)
    draw = {
        "answers": lambda: plots.answers_per_day_png(
            _dicts(dashboard.answers_per_day(ws, project=project))
        ),
        "annotators": lambda: plots.annotators_png(
            _dicts(dashboard.annotator_stats(ws, project=project))
        ),
        "learning-curve": lambda: plots.model_curve_png(
            _dicts(dashboard.learning_curve(ws, project=project))
        ),
    }[chart]
    return Response(draw(), media_type="image/png", headers={"Cache-Control": "no-store"})


def _dicts(rows: Sequence[Any]) -> list[dict[str, Any]]:
    """Dashboard rows (dataclasses) as the JSON-ready dicts the plots take."""
    return [dashboard.as_json(dataclasses.asdict(row)) for row in rows]


@router.get("/dashboard/job")
def job_panel(request: Request, ws: WS, account: PageAccount) -> Response:
    """The retrain panel alone (htmx polls it while a job is active)."""
    if account is None or account.role not in REVIEWERS:
        return Response(status_code=401 if account is None else 403)
    return render(request, "_job.html", account, job=jobs.latest_job(ws))


@router.post("/dashboard/retrain")
def retrain(
    request: Request,
    ws: WS,
    account: ReviewerPage,
    project: Annotated[str, Form(max_length=100)],
) -> Response:
    """Queue retraining (or show the job already active); htmx gets the panel back."""
    try:
        job, _created = jobs.request_retrain(ws, project=project, requested_by=account.username)
    except MedloopError as error:
        return error_page(request, account, error)
    request.app.state.jobs.wake()
    if request.headers.get("HX-Request"):
        return render(request, "_job.html", account, job=job)
    return RedirectResponse(f"/dashboard?project={project}", status_code=303)
