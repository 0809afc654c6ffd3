"""Shared set-up for store tests: a project and its items in one call; users in a
schema taken back to an older migration."""

from __future__ import annotations

from sqlalchemy import Boolean, Connection, String, column, insert, table
from sqlalchemy.orm import Session

from medloop.store import repository as repo
from medloop.store.models import Project, UTCDateTime, utcnow

#: `users` as migration 0012 left it (the model names columns added since).
USERS_0012 = table(
    "users",
    column("username", String),
    column("role", String),
    column("is_simulated", Boolean),
    column("created_at", UTCDateTime()),
)


def add_old_users(connection: Connection, *, role: str, usernames: list[str]) -> None:
    """Insert real users with `role` into a schema at migration 0012 or before."""
    rows = [
        {"username": n, "role": role, "is_simulated": False, "created_at": utcnow()}
        for n in usernames
    ]
    connection.execute(insert(USERS_0012), rows)


def project_with_items(session: Session, n_items: int) -> tuple[Project, list[int]]:
    """A binary grey-scale project "chest" with `n_items` training items; their ids."""
    project = repo.create_project(session, name="chest", classes=["a", "b"], n_channels=1)
    repo.add_items(
        session,
        project=project,
        items=[
            repo.NewItem(source_ref=f"{i}.png", image_sha256=f"{i:064x}", split="train")
            for i in range(n_items)
        ],
    )
    return project, repo.items_frame(session, project_id=project.id).index.tolist()
