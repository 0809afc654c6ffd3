"""The project dashboard (doctors and admins): page, charts, JSON, the retrain button
and the labelling plan.

Numbers come from `workflows.dashboard`; charts are PNGs drawn on the server
(`medloop.plots`); retraining is a background job (`workflows.jobs`) whose panel the
page polls with htmx while it is queued or running; the plan (`workflows.plan`) says
where a labelling budget removes most expected errors, lay answers or doctor reviews,
and publishing it opens those requests for people.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Form, Path, Query, Request, Response
from fastapi.responses import RedirectResponse

from medloop import plots
from medloop.exceptions import MedloopError
from medloop.types import REVIEWER_ROLES
from medloop.web.deps import (
    WS,
    OptionalVisibleProject,
    Reviewer,
    VisibleFormProject,
    VisibleProject,
)
from medloop.web.rendering import PageAccount, ReviewerPage, error_page, render, to_login
from medloop.web.schemas import LabellingPlanPublic, PublishedPlanPublic
from medloop.workflows import (
    LabellingPlan,
    PublishedPlan,
    access,
    dashboard,
    jobs,
    plan_requests,
    publish_plan,
)
from medloop.workflows.accounts import Account
from medloop.workflows.dashboard import Dashboard

router = APIRouter(include_in_schema=False)
api_router = APIRouter(prefix="/api", tags=["dashboard"])

Chart = Literal["answers", "annotators", "learning-curve"]


def _projects(ws: WS, account: Account) -> list[str]:
    """The image projects `account` may open."""
    visible = set(access.visible_projects(ws, account))
    return [name for name in dashboard.list_projects(ws) if name in visible]


def _project(ws: WS, account: Account, project: str | None) -> str | None:
    """`project`, by default the first one `account` may open."""
    return project or next(iter(_projects(ws, account)), None)


@api_router.get("/dashboard", responses={404: {}})
def dashboard_json(ws: WS, account: Reviewer, project: OptionalVisibleProject) -> Dashboard | None:
    """A project's progress, answers per day, annotators' accuracy with 95% intervals,
    consensus accuracy on gold, model versions and learning curve (by default of the
    first project you may open; null: none)."""
    name = _project(ws, account, project)
    return None if name is None else dashboard.project_dashboard(ws, project=name, fresh=False)


@router.get("/dashboard")
def dashboard_page(
    request: Request, ws: WS, account: ReviewerPage, project: OptionalVisibleProject
) -> Response:
    return _dashboard(request, ws, account, _project(ws, account, project))


def _dashboard(
    request: Request,
    ws: WS,
    account: Account,
    name: str | None,
    plan: LabellingPlanPublic | None = None,
    published: PublishedPlan | None = None,
) -> Response:
    return render(
        request,
        "dashboard.html",
        account,
        projects=_projects(ws, account),
        board=None if name is None else dashboard.project_dashboard(ws, project=name, fresh=False),
        job=None if name is None else jobs.latest_job(ws, project=name),
        plan=plan,
        published=published,
    )


@router.get("/dashboard/charts/{chart}.png")
def dashboard_chart(
    request: Request,
    ws: WS,
    account: PageAccount,
    chart: Annotated[Chart, Path()],
    project: VisibleProject,
) -> Response:
    if account is None or account.role not in REVIEWER_ROLES:
        return Response(status_code=401 if account is None else 403)
    draw = {
        "answers": lambda: plots.answers_per_day_png(
            _dicts(dashboard.answers_per_day(ws, project=project, fresh=False))
        ),
        "annotators": lambda: plots.annotators_png(
            _dicts(dashboard.annotator_stats(ws, project=project, fresh=False))
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
def job_panel(
    request: Request,
    ws: WS,
    account: PageAccount,
    project: VisibleProject,
) -> Response:
    """The project's retrain panel alone (htmx polls it while a job is active)."""
    if account is None:
        return to_login(request)
    if account.role not in REVIEWER_ROLES:
        return Response(status_code=403)
    try:
        job = jobs.latest_job(ws, project=project)
    except MedloopError as error:
        return error_page(request, account, error)
    response = render(request, "_job.html", account, job=job)
    if request.headers.get("HX-Request") and job is not None and job.status == "succeeded":
        # the poll that sees the new model: the whole page (model table, learning curve,
        # progress) reloads to show it; the page it loads polls no more
        response.headers["HX-Refresh"] = "true"
    return response


@router.post("/dashboard/retrain")
def retrain(
    request: Request,
    ws: WS,
    account: ReviewerPage,
    project: VisibleFormProject,
) -> Response:
    """Queue retraining (or show the job already active); htmx gets the panel back."""
    try:
        job, created = jobs.request_retrain(
            ws, project=project, requested_by=account.username, viewer=account
        )
    except MedloopError as error:
        return error_page(request, account, error)
    request.app.state.jobs.wake()
    if request.headers.get("HX-Request"):
        return render(request, "_job.html", account, job=job, joined=not created)
    return RedirectResponse(f"/dashboard?project={project}", status_code=303)


Budget = Annotated[
    float, Query(ge=0, le=1e9, description="What may be spent, in the unit of the costs.")
]
LayCost = Annotated[float, Query(gt=0, le=1e6, description="Cost of one lay answer.")]
DoctorCost = Annotated[float, Query(gt=0, le=1e6, description="Cost of one doctor's review.")]
Limit = Annotated[int, Query(ge=1, le=1000, description="Requests listed.")]


@dataclasses.dataclass
class PlanFigures:
    """What a plan is asked for with (query parameters)."""

    project: VisibleProject
    budget: Budget = 100.0
    lay_cost: LayCost = 1.0
    doctor_cost: DoctorCost = 20.0

    def plan(self, ws: WS) -> LabellingPlan:
        return plan_requests(ws, **dataclasses.asdict(self))


Figures = Annotated[PlanFigures, Depends()]


def _public(project: str, plan: LabellingPlan, *, limit: int) -> LabellingPlanPublic:
    rows = plan.requests.head(limit).reset_index().to_dict(orient="records")
    return LabellingPlanPublic.model_validate(
        {"project": project, **plan.summary(), "requests": rows}
    )


@api_router.get("/plan", responses={404: {}})
def plan_json(
    ws: WS, _account: Reviewer, figures: Figures, limit: Limit = 50
) -> LabellingPlanPublic:
    """Where `budget` removes most expected errors: more lay answers for some items, a
    doctor's review for others (a proposal; nothing is written)."""
    return _public(figures.project, figures.plan(ws), limit=limit)


@api_router.post("/plan/publish", responses={404: {}})
def publish_plan_json(ws: WS, account: Reviewer, figures: Figures) -> PublishedPlanPublic:
    """Plan as `/api/plan` does and open the requests for people: labelling tasks for
    more lay answers, review requests at the head of the doctors' queue (audited)."""
    published = publish_plan(
        ws, project=figures.project, plan=figures.plan(ws), actor=account.username
    )
    return PublishedPlanPublic(project=figures.project, **dataclasses.asdict(published))


@router.get("/dashboard/plan")
def plan_panel(request: Request, ws: WS, account: ReviewerPage, figures: Figures) -> Response:
    """The plan as a dashboard panel (htmx swaps it in; without htmx, the whole page)."""
    try:
        plan = figures.plan(ws)
    except MedloopError as error:
        return error_page(request, account, error)
    return _plan_response(request, ws, account, _public(figures.project, plan, limit=20))


@router.post("/dashboard/plan/publish")
def publish_plan_panel(
    request: Request,
    ws: WS,
    account: ReviewerPage,
    project: VisibleFormProject,
    budget: Annotated[float, Form(ge=0, le=1e9)],
    lay_cost: Annotated[float, Form(gt=0, le=1e6)],
    doctor_cost: Annotated[float, Form(gt=0, le=1e6)],
) -> Response:
    """Plan again with the panel's figures and open the requests for people."""
    try:
        plan = plan_requests(
            ws, project=project, budget=budget, lay_cost=lay_cost, doctor_cost=doctor_cost
        )
        published = publish_plan(ws, project=project, plan=plan, actor=account.username)
    except MedloopError as error:
        return error_page(request, account, error)
    return _plan_response(
        request, ws, account, _public(project, plan, limit=20), published=published
    )


def _plan_response(
    request: Request,
    ws: WS,
    account: Account,
    plan: LabellingPlanPublic,
    published: PublishedPlan | None = None,
) -> Response:
    if request.headers.get("HX-Request"):
        return render(request, "_plan.html", account, plan=plan, published=published)
    return _dashboard(request, ws, account, plan.project, plan, published)
