"""Shared set-up for store tests: a project and its items in one call."""

from __future__ import annotations

from sqlalchemy.orm import Session

from medloop.store import repository as repo
from medloop.store.models import Project


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
