"""Who reaches which project: the rule of `store.members` for a signed-in account, and
an admin's grants and revocations (each audited).

A project without members is open to every account of the right role; once it has a
member it is restricted to its members and the admins; admins reach every project. The
web asks `check` before any request that names a project or something inside one (an
item, a task, a job, a recommendation), and lists across projects keep to
`visible_projects`. Something hidden from an account is refused in the very words used
for something that does not exist, so its existence does not leak.

    >>> # access.grant(ws, username="dora", project="chest", actor="cli")
    >>> # access.can_access(ws, account, "chest")  ->  True for dora and the admins only
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from medloop.exceptions import ConflictError, InvalidInputError, NotFoundError
from medloop.store import members
from medloop.store import repository as repo
from medloop.store.members import Owned
from medloop.store.models import Project
from medloop.workflows.accounts import Account
from medloop.workflows.workspace import Workspace

logger = logging.getLogger(__name__)

#: How a missing (or hidden) thing is said: the words the workflows use when it does not
#: exist, without naming the projects that do.
MISSING: dict[Owned, str] = {
    "project": "no project named {key!r}",
    "item": "no item with id {key}",
    "task": "no labelling task with id {key}",
    "job": "no job with id {key}",
    "recommendation": "no recommendation {key}",
}


def _reaches(ws: Workspace, account: Account, kind: Owned, key: str | int) -> bool:
    with ws.db.session() as s:
        return members.reaches(s, user_id=account.id, role=account.role, kind=kind, key=key)


def can_access(ws: Workspace, account: Account, project: str) -> bool:
    """Whether `account` may reach project `project` (False too when there is none)."""
    return _reaches(ws, account, "project", project)


def check(ws: Workspace, account: Account, kind: Owned, key: str | int) -> None:
    """Refuse `kind` `key` (a project by name; an item, task, job or recommendation by
    id) unless it exists and `account` may reach its project: NotFoundError, worded as
    for one that does not exist."""
    if not _reaches(ws, account, kind, key):
        raise NotFoundError(MISSING[kind].format(key=key))


def visible_projects(ws: Workspace, account: Account) -> list[str]:
    """Names of the projects `account` may reach, in the order they were made."""
    with ws.db.session() as s:
        ids = members.visible_project_ids(s, user_id=account.id, role=account.role)
        return [p.name for p in repo.list_projects(s) if p.id in ids]


# --- an admin's changes ------------------------------------------------------------------


@dataclass(frozen=True)
class ProjectMembers:
    """Who is named on a project: none means it is open to every account."""

    project: str
    members: list[str]

    @property
    def restricted(self) -> bool:
        return bool(self.members)


def project_members(ws: Workspace, *, project: str) -> ProjectMembers:
    """The members of `project` (NotFoundError for no such project)."""
    with ws.db.session() as s:
        record = repo.get_project(s, name=project)
        return ProjectMembers(record.name, members.member_names(s, project_id=record.id))


def grant(ws: Workspace, *, username: str, project: str, actor: str) -> ProjectMembers:
    """Name `username` on `project`, audited under `actor`: from then on the project is
    restricted to its members and the admins. Unknown user or project: NotFoundError; a
    simulated account: InvalidInputError; already a member: ConflictError."""

    def change(s: Session, record: Project, user_id: int) -> None:
        if not members.add_member(s, project_id=record.id, user_id=user_id):
            raise ConflictError(f"{username!r} is already a member of project {project!r}")

    return _change(
        ws, username=username, project=project, actor=actor, action="access.grant", change=change
    )


def revoke(
    ws: Workspace, *, username: str, project: str, actor: str, open_project: bool = False
) -> ProjectMembers:
    """Take `username` off `project`, audited under `actor`. Taking off its last member
    opens the project to every account, so that needs `open_project`; without it,
    ConflictError (as for someone who is not a member)."""

    def change(s: Session, record: Project, user_id: int) -> None:
        if not members.remove_member(s, project_id=record.id, user_id=user_id):
            raise ConflictError(f"{username!r} is not a member of project {project!r}")
        if not open_project and not members.member_names(s, project_id=record.id):
            raise ConflictError(
                f"{username!r} is the last member of project {project!r}: without members it "
                "is open to every account; grant someone else first, or revoke with --open "
                "to open it"
            )

    return _change(
        ws, username=username, project=project, actor=actor, action="access.revoke", change=change
    )


def _change(
    ws: Workspace,
    *,
    username: str,
    project: str,
    actor: str,
    action: str,
    change: Callable[[Session, Project, int], None],
) -> ProjectMembers:
    """Apply `change` to the members of `project` for the person `username` and audit it
    as `action` (on the user, naming the project; `opened` when it is left without
    members) in one transaction. Changes to one project's members take turns on its row."""
    with ws.db.session() as s:
        record = repo.get_project(s, name=project)
        user = repo.get_user(s, username=username)
        if user.is_simulated:
            raise InvalidInputError(f"user {username!r} is simulated; it cannot sign in")
        repo.lock_row(s, Project, record.id)
        change(s, record, user.id)
        now = members.member_names(s, project_id=record.id)
        detail: dict[str, Any] = {"project": record.id}
        if not now:
            detail["opened"] = True
        repo.audit(s, actor=actor, action=action, entity="user", entity_id=user.id, detail=detail)
        logger.info("%s of user %d on project %d by %s", action, user.id, record.id, actor)
        return ProjectMembers(record.name, now)
