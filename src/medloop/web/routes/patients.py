"""The doctor's patient pages and their JSON twins under /api/patients.

Doctors and admins only (annotators get 403); only doctors decide. Every read of a
patient (page, JSON, chart) is written to the audit log by `workflows.precision`.
Patients are addressed by pseudonym within a cohort project (`?project=`), which the
account must be able to open (`workflows.access`; 404 otherwise).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Form, HTTPException, Path, Query, Request, Response
from fastapi.responses import RedirectResponse
from pydantic import BaseModel, Field

from medloop.exceptions import InvalidInputError, MedloopError, NotFoundError
from medloop.types import Role
from medloop.web.deps import (
    WS,
    OptionalVisibleProject,
    Reviewer,
    VisibleFormProject,
    VisibleProject,
)
from medloop.web.rendering import DoctorPage, ReviewerPage, error_page, render
from medloop.workflows import access
from medloop.workflows import precision as wf

pages = APIRouter(include_in_schema=False)
api = APIRouter(prefix="/api/patients", tags=["patients"])

Pseudonym = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
Offset = Annotated[int, Query(ge=0, description="Patients to skip (pseudonym order).")]
Limit = Annotated[int, Query(ge=1, le=1000, description="Patients to return.")]
Order = Annotated[
    wf.PatientOrder, Query(description="pseudonym, or risk: highest current model risk first.")
]
PAGE_SIZE = 200
PNG: dict[int | str, dict[str, Any]] = {
    200: {"content": {"image/png": {}}, "description": "PNG chart"}
}


class PatientSummaryPublic(BaseModel):
    """`risk`/`benefit` come with the latest recommendation (computed at `recommended_at`,
    UTC), with why it is `outdated` ([] while it holds or without one: recompute it
    before deciding, as on the patient's page); `model_risk` is the current
    risk model's risk for every patient: a survival model's P(event by `horizon`, in
    `time_unit`), or a classifier's P(`outcome` = 1), with its 95% bootstrap interval
    (`model_risk_lower`, `model_risk_upper`) where the model kept one."""

    patient: str
    features: int
    recommendation: str | None
    risk: float | None
    benefit: float | None
    decisions: int
    recommended_at: datetime | None = None
    outdated: list[str] = Field(default_factory=list)
    model_risk: float | None = None
    model_risk_lower: float | None = None
    model_risk_upper: float | None = None
    outcome: str | None = None
    horizon: float | None = None
    time_unit: str | None = None


class PatientPublic(BaseModel):
    """`outcome` holds the current models' time, event, outcome and treatment columns,
    apart from the `features`; `units` the unit of each column that has one. The
    `recommendation` says when it was `computed_at` (UTC), with which `models`, and why it
    is `outdated` ([] while it holds: it cannot be accepted then); `trained_on` whom its
    models learnt from."""

    patient: str
    features: dict[str, Any]
    outcome: dict[str, Any] = Field(default_factory=dict)
    units: dict[str, str] = Field(default_factory=dict)
    facts: list[dict[str, Any]]
    recommendation: dict[str, Any] | None
    decisions: list[dict[str, Any]]
    trained_on: list[dict[str, Any]] = Field(default_factory=list)


class RecommendationPublic(BaseModel):
    recommendation_id: int
    patient: str
    recommendation: str
    suggested_treatment: str | None
    risk: float | None
    risk_lower: float | None
    risk_upper: float | None
    risk_interval_missing: str | None = None
    horizon: float | None
    time_unit: str | None = None
    outcome: str | None = None
    survival: dict[str, list[float]]
    risk_drivers: list[dict[str, Any]] = Field(default_factory=list)
    benefit: float | None
    benefit_lower: float | None
    benefit_upper: float | None
    effect_outcome: str | None = None
    effect_horizon: float | None = None
    drivers: list[dict[str, Any]]
    options: list[str]
    option_estimates: list[dict[str, Any]]
    heterogeneity_note: str | None = None
    effect_basis: str | None = None
    average_effect: dict[str, Any] | None = None
    computed_at: datetime | None = None
    models: list[str] = Field(default_factory=list)


class DecisionCreate(BaseModel):
    model_config = {"extra": "forbid"}
    recommendation_id: int = Field(ge=1, le=2**53)
    decision: Literal["accept", "override"]
    treatment: str | None = Field(default=None, max_length=200)
    reason: str | None = Field(default=None, max_length=2000)


class DecisionPublic(BaseModel):
    decision_id: int
    recommendation_id: int
    doctor: str
    decision: str
    treatment: str
    reason: str | None


def _back(pseudonym: str, project: str) -> RedirectResponse:
    return RedirectResponse(f"/patients/{pseudonym}?{urlencode({'project': project})}", 303)


def _doctor(role: Role) -> None:
    if role != Role.DOCTOR:
        raise HTTPException(403, detail="only doctors decide on treatment")


# --- JSON ---------------------------------------------------------------------------------


@api.get("")
def api_list(
    ws: WS,
    account: Reviewer,
    project: VisibleProject,
    offset: Offset = 0,
    limit: Limit = PAGE_SIZE,
    order: Order = "pseudonym",
) -> list[PatientSummaryPublic]:
    """The cohort's patients `offset` to `offset + limit` (in `order`) with their latest
    recommendation and the current model's risk (audited read)."""
    rows = wf.list_patients(
        ws, project=project, viewer=account.username, limit=limit, offset=offset, order=order
    )
    return [PatientSummaryPublic(**row) for row in rows]


@api.get("/model", responses={404: {}})
def api_model(ws: WS, account: Reviewer, project: VisibleProject) -> dict[str, Any]:
    """The cohort's risk model, how it was evaluated and its calibration (predicted
    against observed risk per group of patients); 404 before one is trained."""
    return wf.risk_model_card(ws, project=project)


@api.get("/model/calibration.png", response_class=Response, responses=PNG)
def api_calibration(ws: WS, account: Reviewer, project: VisibleProject) -> Response:
    """The cohort risk model's calibration chart: predicted against observed risk."""
    png = wf.calibration_chart(wf.risk_model_card(ws, project=project))
    return Response(png, media_type="image/png")


@api.get("/{pseudonym}")
def api_patient(
    ws: WS, account: Reviewer, pseudonym: Pseudonym, project: VisibleProject
) -> PatientPublic:
    """One patient's features, facts, latest recommendation and decisions (audited read)."""
    page = wf.view_patient(
        ws, project=project, patient=pseudonym, viewer=account.username, view="api"
    )
    return PatientPublic(**page)


@api.get("/{pseudonym}/survival.png", response_class=Response, responses=PNG)
def api_chart(ws: WS, account: Reviewer, pseudonym: Pseudonym, project: VisibleProject) -> Response:
    png = wf.survival_chart(ws, project=project, patient=pseudonym, viewer=account.username)
    return Response(png, media_type="image/png")


@api.post("/{pseudonym}/recommendation")
def api_recommend(
    ws: WS, account: Reviewer, pseudonym: Pseudonym, project: VisibleProject
) -> RecommendationPublic:
    """Compute and store a fresh recommendation for the patient."""
    view = wf.recommend(ws, project=project, patient=pseudonym)
    return RecommendationPublic(**view.as_dict())


@api.post("/{pseudonym}/decision")
def api_decide(
    ws: WS, account: Reviewer, pseudonym: Pseudonym, body: DecisionCreate
) -> DecisionPublic:
    """A doctor accepts or overrides (with a reason) a recommendation; audited."""
    _doctor(account.role)
    access.check(ws, account, "recommendation", body.recommendation_id)
    decision = wf.decide(ws, doctor=account.username, patient=pseudonym, **body.model_dump())
    return DecisionPublic(**decision.__dict__)


# --- pages --------------------------------------------------------------------------------


@pages.get("/patients")
def list_page(
    request: Request,
    ws: WS,
    account: ReviewerPage,
    project: OptionalVisibleProject,
    offset: Offset = 0,
    order: Order = "pseudonym",
) -> Response:
    if not project:
        visible = set(access.visible_projects(ws, account))
        cohorts = [c for c in wf.cohort_overview(ws) if c["project"] in visible]
        return render(request, "patients.html", account, project=None, cohorts=cohorts, rows=[])
    try:
        total = wf.count_patients(ws, project=project)
        rows = wf.list_patients(
            ws,
            project=project,
            viewer=account.username,
            limit=PAGE_SIZE,
            offset=offset,
            order=order,
        )
    except MedloopError as error:
        return error_page(request, account, error)
    pages_ = {"offset": offset, "size": PAGE_SIZE, "total": total, "order": order}
    try:
        model: dict[str, Any] | None = wf.risk_model_card(ws, project=project)
    except NotFoundError:  # no risk model yet: the list without its card
        model = None
    return render(
        request,
        "patients.html",
        account,
        project=project,
        cohorts=[],
        rows=rows,
        paging=pages_,
        model=model,
    )


@pages.get("/patients/model/calibration.png")
def calibration_chart(
    request: Request, ws: WS, account: ReviewerPage, project: VisibleProject
) -> Response:
    try:
        png = wf.calibration_chart(wf.risk_model_card(ws, project=project))
    except MedloopError as error:
        return error_page(request, account, error)
    return Response(png, media_type="image/png")


@pages.get("/patients/{pseudonym}")
def patient_page(
    request: Request, ws: WS, account: ReviewerPage, pseudonym: Pseudonym, project: VisibleProject
) -> Response:
    try:
        page = wf.view_patient(ws, project=project, patient=pseudonym, viewer=account.username)
    except MedloopError as error:
        return error_page(request, account, error)
    return render(request, "patient.html", account, project=project, page=page)


@pages.get("/patients/{pseudonym}/survival.png")
def chart(
    request: Request, ws: WS, account: ReviewerPage, pseudonym: Pseudonym, project: VisibleProject
) -> Response:
    try:
        png = wf.survival_chart(ws, project=project, patient=pseudonym, viewer=account.username)
    except MedloopError as error:
        return error_page(request, account, error)
    return Response(png, media_type="image/png")


@pages.post("/patients/{pseudonym}/recommend")
def recommend(
    request: Request,
    ws: WS,
    account: ReviewerPage,
    pseudonym: Pseudonym,
    project: VisibleFormProject,
) -> Response:
    try:
        wf.recommend(ws, project=project, patient=pseudonym)
    except MedloopError as error:
        return error_page(request, account, error)
    return _back(pseudonym, project)


@pages.post("/patients/{pseudonym}/decision")
def decide(
    request: Request,
    ws: WS,
    account: DoctorPage,
    pseudonym: Pseudonym,
    project: VisibleFormProject,
    recommendation_id: Annotated[int, Form(ge=1, le=2**53)],
    decision: Annotated[Literal["accept", "override"], Form()],
    treatment: Annotated[str | None, Form(max_length=200)] = None,
    reason: Annotated[str | None, Form(max_length=2000)] = None,
) -> Response:
    try:
        access.check(ws, account, "recommendation", recommendation_id)
        wf.decide(
            ws,
            patient=pseudonym,
            recommendation_id=recommendation_id,
            doctor=account.username,
            decision=decision,
            treatment=treatment or None,
            reason=reason or None,
        )
    except InvalidInputError as error:  # said on the form, with what the doctor typed kept
        try:
            page = wf.view_patient(ws, project=project, patient=pseudonym, viewer=account.username)
        except MedloopError:
            return error_page(request, account, error)
        return render(
            request,
            "patient.html",
            account,
            status_code=422,
            project=project,
            page=page,
            decision_error=str(error),
            typed={"treatment": treatment, "reason": reason},
        )
    except MedloopError as error:
        return error_page(request, account, error)
    return _back(pseudonym, project)


#: What app.py registers: the pages and the JSON API.
router = APIRouter()
router.include_router(pages)
router.include_router(api)
