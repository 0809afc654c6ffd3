"""Server-rendered pages: login, the annotator workspace, the doctor review queue.

Pages sign in with a session cookie (HttpOnly, SameSite=Lax); every form carries the
session's CSRF token. The annotator workspace talks to the JSON API from static JS,
sending the CSRF token in a header.
"""

from __future__ import annotations

import hmac
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Query, Request, Response
from fastapi.responses import RedirectResponse

from medloop.exceptions import ConflictError, InvalidInputError, MedloopError
from medloop.types import Role
from medloop.web import sessions
from medloop.web.deps import WS, Limiter, VisibleItem
from medloop.web.rendering import (
    AnnotatorPage,
    PageAccount,
    ReviewerPage,
    error_page,
    local_path,
    render,
    to_login,
)
from medloop.web.routes.api import client_of, gradcam_url, image_url
from medloop.web.security import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    LoginRefused,
    login_csrf,
)
from medloop.workflows import accounts, annotate, review
from medloop.workflows.accounts import Account
from medloop.workflows.workspace import Workspace

router = APIRouter(include_in_schema=False)
#: Where each role lands after signing in: its main work.
LANDING = {Role.ANNOTATOR: "/annotate", Role.DOCTOR: "/review", Role.ADMIN: "/dashboard"}
#: Suggested reasons for flagging an item in review (any short text is accepted).
FLAG_REASONS = ("needs a second opinion", "image unreadable", "unsure between classes")


@router.get("/")
def home(account: PageAccount) -> Response:
    if account is None:
        return to_login()
    return RedirectResponse(LANDING[account.role], 303)


#: Said on the sign-in page when a login was refused before its password was checked.
LOGIN_REFUSED = {
    429: "Too many failed logins; try again in a few minutes.",
    503: "Too many people are signing in at once; please try again in a moment.",
}
#: Said on the sign-in page when a form came in without a session.
SESSION_ENDED = "Your session ended, so what you sent was not saved. Sign in to go on."
#: Said on the sign-in page after signing out.
SIGNED_OUT = "You have signed out."
#: Said on the sign-in page when a browser was signed out for want of activity (by
#: `idle.js`, or by the server: `web.sessions`).
SIGNED_OUT_IDLE = (
    "You were signed out because this page was left without activity "
    "({minutes:g} minutes). Sign in to go on where you were."
)


@router.get("/login")
def login_page(
    request: Request,
    account: PageAccount,
    next: Annotated[str, Query(max_length=2000)] = "",
    ended: bool = False,
    signed_out: bool = False,
    idle: bool = False,
) -> Response:
    """The sign-in form, leading back to `next` (a page on this site); someone already
    signed in goes there, or to their work, instead. `signed_out`: just signed out
    (`idle`: for want of activity, by the page or by the server)."""
    back = next if local_path(next) else ""
    if account is not None:
        return RedirectResponse(back or LANDING[account.role], 303)
    token = login_csrf(request.cookies.get(LOGIN_CSRF_COOKIE))
    response = render(
        request,
        "login.html",
        account,
        login_csrf=token,
        error=SESSION_ENDED if ended else None,
        notice=(
            SIGNED_OUT_IDLE.format(minutes=request.app.state.ws.settings.idle_sign_out_minutes)
            if idle
            else SIGNED_OUT
            if signed_out
            else None
        ),
        next=back,
        username="",
    )
    _login_cookie(request, response, token)
    return response


def _login_cookie(request: Request, response: Response, token: str) -> None:
    response.set_cookie(
        LOGIN_CSRF_COOKIE, token, httponly=True, samesite="lax", secure=sessions.secure(request)
    )


@router.post("/login")
def login(
    request: Request,
    ws: WS,
    limiter: Limiter,
    username: Annotated[str, Form(max_length=100)],
    password: Annotated[str, Form(max_length=1000)],
    csrf_token: Annotated[str, Form(max_length=200)] = "",
    next: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    error = None
    status_code = 200
    headers: dict[str, str] = {}
    if not expected or not hmac.compare_digest(expected, csrf_token):
        error, status_code = "Your login form expired; please try again.", 403
    else:
        try:
            account = limiter.authenticate(username, password, client_of(request))
        except LoginRefused as refused:
            account, status_code = None, refused.status
            headers["Retry-After"] = str(refused.retry_after)
            error = LOGIN_REFUSED[refused.status]
        if account is not None:
            session = accounts.issue_token(ws, account, purpose=accounts.SESSION)
            landing = next if local_path(next) else LANDING[account.role]  # no second hop via /
            redirect = RedirectResponse(landing, status_code=303)
            redirect.headers.append(
                "set-cookie", sessions.session_cookie(request, session, max_age=accounts.TOKEN_TTL)
            )
            redirect.delete_cookie(LOGIN_CSRF_COOKIE)
            return redirect
        if error is None:
            error, status_code = "Wrong username or password.", 401
    token = login_csrf(request.cookies.get(LOGIN_CSRF_COOKIE))
    response = render(
        request,
        "login.html",
        None,
        status_code=status_code,
        login_csrf=token,
        error=error,
        next=next if local_path(next) else "",
        username=username,  # kept: only the password is typed again
    )
    response.headers.update(headers)
    _login_cookie(request, response, token)
    return response


@router.post("/logout")
def logout(
    request: Request,
    ws: WS,
    account: PageAccount,
    idle: Annotated[bool, Form()] = False,
    next: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """Sign out: the session token is revoked (a copy of the cookie stops working too).
    `idle`: the page signed out for want of activity (`idle.js`), to come back to `next`."""
    session = request.cookies.get(SESSION_COOKIE)
    if account is not None and session:
        accounts.revoke_token(ws, session, purpose="session")
    params = {"signed_out": "1"} | ({"idle": "1"} if idle else {})
    if idle and local_path(next):
        params["next"] = next
    response = RedirectResponse(f"/login?{urlencode(params)}", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response


@router.get("/annotate")
def annotate_page(request: Request, ws: WS, account: AnnotatorPage) -> Response:
    progress = annotate.annotator_progress(ws, account=account)
    waiting = annotate.open_task_count(ws, account=account)
    return render(request, "annotate.html", account, progress=progress, waiting=waiting)


#: Items on one page of the review queue.
QUEUE_PAGE = 200


@router.get("/review")
def review_page(
    request: Request,
    ws: WS,
    account: ReviewerPage,
    offset: Annotated[int, Query(ge=0, description="Queue items to skip.")] = 0,
) -> Response:
    page = review.review_queue_page(ws, offset=offset, size=QUEUE_PAGE, viewer=account)
    return render(request, "review_queue.html", account, queue=page, entries=page.entries)


@router.get("/review/{item_id}")
def review_item_page(
    request: Request, item_id: VisibleItem, ws: WS, account: ReviewerPage, taken: bool = False
) -> Response:
    return _item_page(request, ws, account, item_id, taken=taken)


def _item_page(
    request: Request,
    ws: Workspace,
    account: Account,
    item_id: int,
    status_code: int = 200,
    *,
    taken: bool = False,
    correction_error: str | None = None,
) -> Response:
    """The review page of one item; `correction_error`: why a correction was refused."""
    try:
        detail = review.review_detail(ws, item_id=item_id, actor=account.username, fresh=False)
    except MedloopError as error:
        return error_page(request, account, error)
    return render(
        request,
        "review_item.html",
        account,
        status_code=status_code,
        detail=detail,
        image_url=image_url(item_id),
        gradcam_url=gradcam_url(item_id),
        flag_reasons=FLAG_REASONS,
        error=None,
        taken=taken and detail.final_label is not None,
        correction_error=correction_error,
    )


@router.post("/review/{item_id}")
def review_decide(
    request: Request,
    item_id: VisibleItem,
    ws: WS,
    account: ReviewerPage,
    label: Annotated[str, Form(max_length=200)],
) -> Response:
    try:
        review.decide(ws, account=account, item_id=item_id, label=label)
    except ConflictError:  # signed by someone else meanwhile: show them what was signed
        return RedirectResponse(f"/review/{item_id}?taken=1", status_code=303)
    except MedloopError as error:
        return error_page(request, account, error)
    return _next_item(ws, account)


@router.post("/review/{item_id}/correct")
def review_correct(
    request: Request,
    item_id: VisibleItem,
    ws: WS,
    account: ReviewerPage,
    label: Annotated[str, Form(max_length=200)],
    replaces: Annotated[str, Form(max_length=200)],
    reason: Annotated[str, Form(max_length=review.MAX_CORRECTION_REASON)] = "",
) -> Response:
    """Correct the item's final label (with a reason) and stay on it: the page shows
    the new label and its history; a refusal is said on the form."""
    try:
        review.correct(
            ws, account=account, item_id=item_id, label=label, replaces=replaces, reason=reason
        )
    except (ConflictError, InvalidInputError) as error:
        status = 409 if isinstance(error, ConflictError) else 422
        return _item_page(request, ws, account, item_id, status, correction_error=str(error))
    except MedloopError as error:
        return error_page(request, account, error)
    return RedirectResponse(f"/review/{item_id}", status_code=303)


@router.post("/review/{item_id}/flag")
def review_flag(
    request: Request,
    item_id: VisibleItem,
    ws: WS,
    account: ReviewerPage,
    reason: Annotated[str, Form(min_length=1, max_length=200)],
) -> Response:
    """Flag the item with a reason, then go on to the next unflagged item in the queue."""
    try:
        review.flag_item(ws, account=account, item_id=item_id, reason=reason)
    except MedloopError as error:
        return error_page(request, account, error)
    return _next_item(ws, account)


@router.post("/review/{item_id}/unflag")
def review_unflag(
    request: Request, item_id: VisibleItem, ws: WS, account: ReviewerPage
) -> Response:
    """Take the item's flag back and stay on it."""
    try:
        review.unflag_item(ws, account=account, item_id=item_id)
    except MedloopError as error:
        return error_page(request, account, error)
    return RedirectResponse(f"/review/{item_id}", status_code=303)


def _next_item(ws: Workspace, account: Account) -> RedirectResponse:
    """On to the queue's first unflagged item (flagged ones wait for a second look) in
    the projects `account` may open, or back to the queue when none is left."""
    upcoming = [
        e for e in review.review_entries(ws, limit=50, viewer=account) if e.flag_reason is None
    ]
    target = f"/review/{upcoming[0].item_id}" if upcoming else "/review"
    return RedirectResponse(target, status_code=303)
