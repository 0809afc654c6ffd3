"""The JSON API under /api: health, login, tasks, item images and doctor review."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from fastapi.responses import StreamingResponse

from medloop import __version__
from medloop.web import schemas
from medloop.web.deps import (
    WS,
    Annotator,
    Bearer,
    CurrentAccount,
    Limiter,
    OptionalVisibleProject,
    Reviewer,
    VisibleItem,
    VisibleProject,
    VisibleTask,
)
from medloop.web.security import SESSION_COOKIE, LoginRefused
from medloop.workflows import accounts, annotate, export, review

router = APIRouter(prefix="/api")


def image_url(item_id: int) -> str:
    return f"/api/items/{item_id}/image"


#: Why a login was refused before its password was checked, by status code.
LOGIN_REFUSED = {
    429: "too many failed logins; try again later",
    503: "too many logins at once; try again in a moment",
}


def client_of(request: Request) -> str:
    return request.client.host if request.client else "unknown"


@router.get("/health", tags=["meta"])
def health(ws: WS) -> schemas.HealthPublic:
    """Liveness: the process answers and the database is reachable."""
    with ws.db.session() as s:
        s.connection()
    return schemas.HealthPublic(version=__version__)


@router.post(
    "/auth/login",
    tags=["auth"],
    responses={
        401: {"description": "Wrong username or password"},
        429: {"description": "Too many failed logins (see Retry-After)"},
        503: {"description": "Too many logins at once (see Retry-After)"},
    },
)
def login(
    body: schemas.LoginCreate, request: Request, ws: WS, limiter: Limiter
) -> schemas.TokenPublic:
    """Exchange a username and password for a bearer token."""
    try:
        account = limiter.authenticate(body.username, body.password, client_of(request))
    except LoginRefused as refused:
        raise HTTPException(
            refused.status,
            detail=LOGIN_REFUSED[refused.status],
            headers={"Retry-After": str(refused.retry_after)},
        ) from None
    if account is None:
        raise HTTPException(401, detail="wrong username or password")
    token = accounts.issue_token(ws, account, purpose="api")
    return schemas.TokenPublic(
        token=token, expires_in=accounts.TOKEN_TTL, username=account.username, role=account.role
    )


@router.post("/auth/logout", tags=["auth"], status_code=204, responses={401: {}})
def logout(request: Request, ws: WS, account: CurrentAccount, bearer: Bearer) -> Response:
    """End the token this request signed in with (the bearer token, else the session
    cookie, which is cleared) before its expiry: every server process refuses it from
    then on."""
    response = Response(status_code=204)
    if bearer is not None:
        accounts.revoke_token(ws, bearer.credentials, purpose="api")
    else:
        accounts.revoke_token(ws, request.cookies.get(SESSION_COOKIE, ""), purpose=accounts.SESSION)
        response.delete_cookie(SESSION_COOKIE)
    return response


@router.post("/auth/activity", tags=["auth"], status_code=204, responses={401: {}})
def activity(_account: CurrentAccount) -> Response:
    """Someone is using the signed-in page (a key press, click, scroll or touch that sent
    no request of its own; `idle.js` reports it): the session cookie comes back renewed,
    so the server's idle sign-out counts from now. 401 once the session has gone idle
    for longer than `MEDLOOP_IDLE_SIGN_OUT_MINUTES`. An API token is not renewed."""
    return Response(status_code=204)


@router.get("/me", tags=["auth"])
def me(account: CurrentAccount) -> schemas.UserPublic:
    return schemas.UserPublic(username=account.username, role=account.role)


@router.get(
    "/tasks/next",
    tags=["tasks"],
    response_model=schemas.TaskPublic,
    responses={204: {"description": "No open task for you right now"}},
)
def next_task(
    ws: WS, account: Annotator, project: OptionalVisibleProject
) -> schemas.TaskPublic | Response:
    """Your next labelling task (active-learning priority, redundancy, gold questions) in
    the projects you may open.
    It is held for you until you answer or skip it, so others are not handed it past its
    redundancy; asking again before that gives the same task."""
    task = annotate.next_task(ws, account=account, project=project)
    if task is None:
        return Response(status_code=status.HTTP_204_NO_CONTENT)
    return schemas.TaskPublic(
        task_id=task.task_id,
        item_id=task.item_id,
        image_url=image_url(task.item_id),
        choices=task.choices,
        project=task.project,
    )


@router.post(
    "/tasks/{task_id}/answer",
    tags=["tasks"],
    status_code=201,
    responses={
        404: {},
        409: {
            "description": "Not the task GET /api/tasks/next handed you last, the task is "
            "closed, or you already answered its image (then the body's `code` is "
            '"already_answered": a resent answer, stored the first time)'
        },
    },
)
def answer(
    task_id: VisibleTask, body: schemas.AnswerCreate, ws: WS, account: Annotator
) -> schemas.AnswerPublic:
    """Answer the task `GET /api/tasks/next` handed you last (any other is a 409, so
    nobody picks tasks or gold questions by id); committed before this returns. Gold
    questions get feedback.

    A second answer to the same task (a double submit, even a concurrent one) is a 409
    and stores nothing: the first answer stands."""
    result = annotate.submit_answer(
        ws, account=account, task_id=task_id, label=body.label, box=body.box
    )
    progress = result.progress
    return schemas.AnswerPublic(
        answer_id=result.answer_id,
        task_id=result.task_id,
        label=result.label,
        gold=None
        if result.gold is None
        else schemas.GoldFeedbackPublic(correct=result.gold.correct, expected=result.gold.expected),
        progress=_progress(progress),
    )


def _progress(progress: annotate.AnnotatorProgress) -> schemas.ProgressPublic:
    return schemas.ProgressPublic(
        answered=progress.answered,
        gold_answered=progress.gold_answered,
        gold_correct=progress.gold_correct,
        gold_accuracy=progress.gold_accuracy,
    )


@router.post("/tasks/{task_id}/skip", tags=["tasks"], status_code=204, responses={404: {}})
def skip(
    task_id: VisibleTask,
    ws: WS,
    account: Annotator,
    body: schemas.SkipCreate | None = None,
) -> Response:
    """Skip a task (or mark it 'unsure'): it will not be offered to you again."""
    reason = body.reason if body is not None else "skip"
    annotate.skip_task(ws, account=account, task_id=task_id, reason=reason)
    return Response(status_code=204)


@router.get("/me/progress", tags=["tasks"])
def my_progress(ws: WS, account: Annotator) -> schemas.ProgressPublic:
    """How many tasks you answered and your accuracy on gold questions."""
    return _progress(annotate.annotator_progress(ws, account=account))


@router.get(
    "/items/{item_id}/image",
    tags=["items"],
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}, 404: {}},
)
def item_image(item_id: VisibleItem, ws: WS, account: CurrentAccount) -> Response:
    """The item's de-identified PNG image."""
    data = annotate.item_image(ws, account=account, item_id=item_id)
    return Response(
        data,
        media_type="image/png",
        headers={"Cache-Control": "no-store"},  # not kept in a shared browser after sign-out
    )


@router.get("/review/queue", tags=["review"])
def review_queue(
    ws: WS,
    account: Reviewer,
    project: OptionalVisibleProject,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[schemas.ReviewItemPublic]:
    """Items waiting for a doctor in the projects you may open: those a labelling plan
    asked about first, then by the review ranking (highest score first)."""
    return [
        schemas.ReviewItemPublic(
            item_id=e.item_id,
            project=e.project,
            image_url=image_url(e.item_id),
            crowd_label=e.crowd_label,
            crowd_confidence=e.crowd_confidence,
            model_label=e.model_label,
            model_confidence=e.model_confidence,
            score=e.score,
            reason=e.reason,
            flag_reason=e.flag_reason,
            requested=e.requested,
            model_positive=e.model_positive,
            model_threshold=e.model_threshold,
            positive_class=e.positive_class,
        )
        for e in review.review_entries(ws, project=project, limit=limit, viewer=account)
    ]


def gradcam_url(item_id: int) -> str:
    return f"/api/review/{item_id}/gradcam.png"


@router.get("/review/{item_id}", tags=["review"], responses={404: {}})
def review_item(item_id: VisibleItem, ws: WS, account: Reviewer) -> schemas.ReviewDetailPublic:
    """One item's evidence: consensus, model prediction (and its Grad-CAM overlay) with
    the model it is from, crowd answers with each annotator's reliability, the crowd's
    fused boxes, any open flag, and the item's final labels so far."""
    d = review.review_detail(ws, item_id=item_id, actor=account.username, fresh=False)
    return schemas.ReviewDetailPublic(
        item_id=d.item_id,
        project=d.project,
        image_url=image_url(d.item_id),
        choices=d.choices,
        consensus_label=d.consensus_label,
        consensus_probabilities=d.consensus_probabilities,
        model_label=d.model_label,
        model_probabilities=d.model_probabilities,
        final_label=d.final_label,
        answers=[
            schemas.CrowdAnswerPublic(
                worker=a.worker,
                label=a.label,
                gold_answered=a.gold_answered,
                gold_accuracy=a.gold_accuracy,
                agrees_with_consensus=a.agrees_with_consensus,
                box=a.box,
                estimated_accuracy=a.estimated_accuracy,
                estimated_low=a.estimated_low,
                estimated_high=a.estimated_high,
            )
            for a in d.answers
        ],
        reliability_method=d.reliability_method,
        fused_boxes=[
            schemas.FusedBoxPublic(
                box=f.box, confidence=f.confidence, annotators=f.annotators, boxes=f.boxes
            )
            for f in d.fused_boxes
        ],
        gradcam_url=gradcam_url(d.item_id) if d.has_model else None,
        flag=None
        if d.flag is None
        else schemas.FlagPublic(
            item_id=d.item_id,
            project=d.project,
            reason=d.flag.reason,
            flagged_by=d.flag.flagged_by,
            flagged_at=d.flag.flagged_at,
        ),
        figures_as_of=None
        if d.figures_as_of is None
        else schemas.FiguresAgePublic.model_validate(d.figures_as_of),
        model=None if d.model is None else schemas.ModelSummaryPublic.model_validate(d.model),
        history=[schemas.FinalLabelEventPublic.model_validate(h) for h in d.history],
    )


@router.post(
    "/review/{item_id}",
    tags=["review"],
    status_code=201,
    responses={
        404: {},
        409: {"description": "The item already has a final label (named, with who signed it)"},
    },
)
def decide(
    item_id: VisibleItem, body: schemas.DecisionCreate, ws: WS, account: Reviewer
) -> schemas.DecisionPublic:
    """Accept or correct the suggestions: the doctor's label becomes the item's final
    label (the same label sent again by its doctor is taken as done; a signed one is
    changed with POST /api/review/{item_id}/correct)."""
    d = review.decide(ws, account=account, item_id=item_id, label=body.label)
    return schemas.DecisionPublic(item_id=d.item_id, project=d.project, label=d.label)


@router.post(
    "/review/{item_id}/correct",
    tags=["review"],
    status_code=201,
    responses={
        404: {},
        409: {"description": "No final label yet, or it is no longer `replaces`"},
        422: {"description": "No reason, or the same label"},
    },
)
def correct(
    item_id: VisibleItem, body: schemas.CorrectionCreate, ws: WS, account: Reviewer
) -> schemas.DecisionPublic:
    """Correct the item's signed final label, with a reason: the old one stays in the
    item's history, the correction is audited and the next model learns the new label."""
    d = review.correct(
        ws,
        account=account,
        item_id=item_id,
        label=body.label,
        replaces=body.replaces,
        reason=body.reason,
    )
    return schemas.DecisionPublic(item_id=d.item_id, project=d.project, label=d.label)


@router.post(
    "/review/{item_id}/flag",
    tags=["review"],
    status_code=201,
    responses={404: {}, 409: {"description": "Already flagged, or already decided"}},
)
def flag(
    item_id: VisibleItem, body: schemas.FlagCreate, ws: WS, account: Reviewer
) -> schemas.FlagPublic:
    """Flag an item with a short reason (e.g. 'needs a second opinion'): stored and
    audited, shown in the queue, never a final label; the final label resolves it."""
    f = review.flag_item(ws, account=account, item_id=item_id, reason=body.reason)
    return schemas.FlagPublic(
        item_id=f.item_id,
        project=f.project,
        reason=f.reason,
        flagged_by=f.flagged_by,
        flagged_at=f.flagged_at,
    )


@router.delete(
    "/review/{item_id}/flag",
    tags=["review"],
    status_code=204,
    responses={404: {}, 409: {"description": "The item has no open flag"}},
)
def unflag(item_id: VisibleItem, ws: WS, account: Reviewer) -> Response:
    """Take an item's open flag back (closed and audited, not deleted)."""
    review.unflag_item(ws, account=account, item_id=item_id)
    return Response(status_code=204)


def _csv(csv: export.CsvExport, name: str) -> StreamingResponse:
    """The export sent as it is read (audited once its last piece is sent)."""
    return StreamingResponse(
        iter(csv),
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


CsvResponses: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/csv": {}}},
    404: {},
}


@router.get("/export/answers.csv", tags=["export"], response_class=Response, responses=CsvResponses)
def export_answers(ws: WS, account: Reviewer, project: VisibleProject) -> Response:
    """Every answer of a project as CSV: task, item, worker, label, source, time."""
    return _csv(export.export_answers(ws, project=project, actor=account.username), "answers.csv")


@router.get("/export/labels.csv", tags=["export"], response_class=Response, responses=CsvResponses)
def export_labels(ws: WS, account: Reviewer, project: VisibleProject) -> Response:
    """Each labelled item's current label as CSV (final where signed, else consensus)."""
    return _csv(export.export_labels(ws, project=project, actor=account.username), "labels.csv")
