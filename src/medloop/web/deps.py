"""Request dependencies: the workspace, who is asking (bearer token or session cookie),
role checks, CSRF protection for cookie-authenticated writes, and the project rule.

A route takes a project, item, task or job as `VisibleProject`, `OptionalVisibleProject`,
`VisibleFormProject`, `VisibleItem`, `VisibleTask` or `VisibleJob`: the request is
refused with a 404 (`workflows.access.check`) unless the signed-in account may reach its
project, the same 404 as for one that does not exist."""

from __future__ import annotations

import hmac
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Form, HTTPException, Path, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from medloop.store.members import Owned
from medloop.types import REVIEWER_ROLES, Role
from medloop.web import sessions
from medloop.web.errors import IDLE_SIGNED_OUT, STALE_PAGE
from medloop.web.security import (
    CSRF_FIELD,
    CSRF_HEADER,
    SESSION_COOKIE,
    LoginLimiter,
    csrf_token,
)
from medloop.workflows import access
from medloop.workflows.accounts import SESSION, Account, account_for_token
from medloop.workflows.workspace import Workspace

SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
# The app-state getters are `async def` only so that FastAPI calls them on the event loop
# instead of a worker thread: they do no I/O, and each thread hop costs every request.
_bearer = HTTPBearer(auto_error=False, description="Token from POST /api/auth/login")


async def get_ws(request: Request) -> Workspace:
    ws: Workspace = request.app.state.ws
    return ws


async def get_limiter(request: Request) -> LoginLimiter:
    limiter: LoginLimiter = request.app.state.limiter
    return limiter


WS = Annotated[Workspace, Depends(get_ws)]
Limiter = Annotated[LoginLimiter, Depends(get_limiter)]


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(401, detail=detail, headers={"WWW-Authenticate": "Bearer"})


async def check_csrf(request: Request, ws: Workspace, session_token: str) -> None:
    """Cookie-authenticated writes must echo the session's CSRF token (header or form field)."""
    if request.method in SAFE_METHODS:
        return
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        value = (await request.form()).get(CSRF_FIELD)
        sent = value if isinstance(value, str) else None
    if not sent or not hmac.compare_digest(sent, csrf_token(ws, session_token)):
        raise HTTPException(403, detail=STALE_PAGE)


Bearer = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


async def optional_account(request: Request, ws: WS, credentials: Bearer) -> Account | None:
    """The signed-in account, or None when the request carries no credentials at all.

    A bearer token wins over a cookie; a bad token is a 401, never a fallback."""
    if credentials is not None:
        account = account_for_token(ws, credentials.credentials, purpose="api")
        if account is None:
            raise _unauthorized("invalid or expired token")
        return account
    session = request.cookies.get(SESSION_COOKIE)
    if not session:
        return None
    account = account_for_token(ws, session, purpose=SESSION)
    if account is None:
        sessions.note_refused(request, ws, session)
        return None
    await check_csrf(request, ws, session)
    sessions.renew(request, ws, session)
    return account


async def current_account(
    request: Request,
    ws: WS,
    account: Annotated[Account | None, Depends(optional_account)],
) -> Account:
    if account is None:
        if sessions.went_idle(request):
            raise _unauthorized(IDLE_SIGNED_OUT.format(minutes=ws.settings.idle_sign_out_minutes))
        raise _unauthorized("not signed in: send 'Authorization: Bearer <token>'")
    return account


CurrentAccount = Annotated[Account, Depends(current_account)]


def require(*roles: Role) -> Callable[..., Coroutine[Any, Any, Account]]:
    """A dependency that lets only `roles` through (403 for other signed-in people)."""

    async def dependency(account: CurrentAccount) -> Account:
        if account.role not in roles:
            raise HTTPException(403, detail=f"this needs the role {' or '.join(roles)}")
        return account

    return dependency


Annotator = Annotated[Account, Depends(require(Role.ANNOTATOR))]
Reviewer = Annotated[Account, Depends(require(*REVIEWER_ROLES))]


# --- the project rule --------------------------------------------------------------------

OptionalAccount = Annotated[Account | None, Depends(optional_account)]
#: Ids in paths: positive and within SQLite's and PostgreSQL's integer range.
Id = Annotated[int, Path(ge=1, le=2**53)]
ProjectName = Annotated[str, Query(min_length=1, max_length=100, description="Project name.")]
OptionalProjectName = Annotated[
    str | None,
    Query(max_length=100, description="Only this project (default: every one you may open)."),
]
FormProjectName = Annotated[str, Form(min_length=1, max_length=100)]


def _reached(ws: Workspace, account: Account | None, kind: Owned, key: str | int) -> None:
    """Refuse `kind` `key` unless `account` may reach it; a signed-out request passes on
    to the route's own account dependency (401, or the login page)."""
    if account is not None:
        access.check(ws, account, kind, key)


def project_in_query(ws: WS, account: OptionalAccount, project: ProjectName) -> str:
    _reached(ws, account, "project", project)
    return project


def optional_project_in_query(
    ws: WS, account: OptionalAccount, project: OptionalProjectName = None
) -> str | None:
    if not project:
        return None
    _reached(ws, account, "project", project)
    return project


def project_in_form(ws: WS, account: OptionalAccount, project: FormProjectName) -> str:
    _reached(ws, account, "project", project)
    return project


def item_in_path(ws: WS, account: OptionalAccount, item_id: Id) -> int:
    _reached(ws, account, "item", item_id)
    return item_id


def task_in_path(ws: WS, account: OptionalAccount, task_id: Id) -> int:
    _reached(ws, account, "task", task_id)
    return task_id


def job_in_path(ws: WS, account: OptionalAccount, job_id: Id) -> int:
    _reached(ws, account, "job", job_id)
    return job_id


VisibleProject = Annotated[str, Depends(project_in_query)]
OptionalVisibleProject = Annotated[str | None, Depends(optional_project_in_query)]
VisibleFormProject = Annotated[str, Depends(project_in_form)]
VisibleItem = Annotated[int, Depends(item_in_path)]
VisibleTask = Annotated[int, Depends(task_in_path)]
VisibleJob = Annotated[int, Depends(job_in_path)]
