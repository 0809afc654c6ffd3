"""The audit log for admins: a filterable, paged page and the same as JSON."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel

from medloop.types import Role
from medloop.web.deps import WS, require
from medloop.web.rendering import AdminPage, render
from medloop.workflows import audit
from medloop.workflows.accounts import Account
from medloop.workflows.audit import AuditRow

router = APIRouter(include_in_schema=False)
api_router = APIRouter(prefix="/api", tags=["audit"])

Admin = Annotated[Account, Depends(require(Role.ADMIN))]
ActorQuery = Annotated[
    str | None, Query(max_length=100, description="Only people whose name starts so (any case).")
]
ActionQuery = Annotated[
    str | None, Query(max_length=50, description="Only actions that start so (e.g. label).")
]
PageQuery = Annotated[int, Query(ge=1, le=1_000_000)]
PerPageQuery = Annotated[int, Query(ge=1, le=audit.MAX_PAGE)]


class AuditPagePublic(BaseModel):
    entries: list[AuditRow]
    total: int
    page: int
    pages: int
    per_page: int


@api_router.get("/audit")
def audit_json(
    ws: WS,
    _account: Admin,
    actor: ActorQuery = None,
    action: ActionQuery = None,
    page: PageQuery = 1,
    per_page: PerPageQuery = 50,
) -> AuditPagePublic:
    """Who did what, when: newest first, filtered by the start of the actor's name and/or
    of the action, in any case."""
    log = audit.audit_log(ws, actor=actor, action=action, page=page, per_page=per_page)
    return AuditPagePublic(
        entries=log.entries, total=log.total, page=log.page, pages=log.pages, per_page=log.per_page
    )


@router.get("/audit")
def audit_page(
    request: Request,
    ws: WS,
    account: AdminPage,
    actor: ActorQuery = None,
    action: ActionQuery = None,
    page: PageQuery = 1,
) -> Response:
    log = audit.audit_log(ws, actor=actor, action=action, page=page)
    return render(request, "audit.html", account, log=log, actor=actor or "", action=action or "")
