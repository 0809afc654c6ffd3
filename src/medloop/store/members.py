"""Project members (migration 0014) and the one rule of who reaches which project.

A project without members is open to every account (of the role a page or command
needs); a project with at least one member is restricted: only its members and the
admins reach it. Admins reach every project. Keyword-only, session first, like
`repository`.
"""

from __future__ import annotations

from typing import Literal

from sqlalchemy import bindparam, delete, exists, or_, select
from sqlalchemy.orm import Session

from medloop.store.models import (
    Item,
    Job,
    Patient,
    Project,
    ProjectMember,
    Recommendation,
    Task,
    User,
)
from medloop.types import Role


def visible_project_ids(session: Session, *, user_id: int, role: str) -> set[int]:
    """Ids of the projects user `user_id` with `role` may reach: every project for an
    admin, else the projects without members and those naming the user."""
    query = select(Project.id)
    if role != Role.ADMIN:
        named = ProjectMember.project_id == Project.id
        query = query.where(
            or_(~exists().where(named), exists().where(named, ProjectMember.user_id == user_id))
        )
    return set(session.scalars(query))


def add_member(session: Session, *, project_id: int, user_id: int) -> bool:
    """Name the user on the project; False when they were named already. Callers hold
    the project's row (`repository.lock_row`), so that changes to one project's members
    take turns."""
    if session.get(ProjectMember, (project_id, user_id)) is not None:
        return False
    session.add(ProjectMember(project_id=project_id, user_id=user_id))
    session.flush()
    return True


def remove_member(session: Session, *, project_id: int, user_id: int) -> bool:
    """Take the user off the project; False when they were not on it."""
    result = session.execute(
        delete(ProjectMember).where(
            ProjectMember.project_id == project_id, ProjectMember.user_id == user_id
        )
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def member_names(session: Session, *, project_id: int) -> list[str]:
    """Usernames of the project's members, by name (empty: the project is open)."""
    query = (
        select(User.username)
        .join(ProjectMember, ProjectMember.user_id == User.id)
        .where(ProjectMember.project_id == project_id)
        .order_by(User.username)
    )
    return list(session.scalars(query))


def memberships(session: Session) -> dict[int, list[str]]:
    """User id -> names of the projects naming them (in project order)."""
    query = (
        select(ProjectMember.user_id, Project.name)
        .join(Project, Project.id == ProjectMember.project_id)
        .order_by(Project.id)
    )
    found: dict[int, list[str]] = {}
    for user_id, name in session.execute(query):
        found.setdefault(user_id, []).append(name)
    return found


#: What lies inside a project, each with the query of its project's id by its key.
_PROJECT_OF = {
    "project": select(Project.id).where(Project.name == bindparam("key")),
    "item": select(Item.project_id).where(Item.id == bindparam("key")),
    "task": select(Task.project_id).where(Task.id == bindparam("key")),
    "job": select(Job.project_id).where(Job.id == bindparam("key")),
    "recommendation": select(Patient.project_id)
    .join(Recommendation, Recommendation.patient_id == Patient.id)
    .where(Recommendation.id == bindparam("key")),
}
Owned = Literal["project", "item", "task", "job", "recommendation"]


def reaches(session: Session, *, user_id: int, role: str, kind: Owned, key: str | int) -> bool:
    """Whether the user reaches `kind` `key` (a project by name, the others by id): it
    exists, and it belongs to no project (a job may not) or to one they may reach."""
    row = session.execute(_PROJECT_OF[kind], {"key": key}).first()
    if row is None:
        return False
    return row[0] is None or row[0] in visible_project_ids(session, user_id=user_id, role=role)
