"""Review flags in the store, on SQLite and PostgreSQL: one open flag per item."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect
from sqlalchemy.exc import IntegrityError

from medloop.store import Database, flags
from medloop.store import repository as repo
from medloop.types import Role


def _item_and_doctors(db: Database) -> tuple[int, int, int, int]:
    """project id, item id and the user ids of two doctors."""
    with db.session() as s:
        project = repo.create_project(s, name="chest", classes=["normal", "lesion"], n_channels=1)
        repo.add_items(
            s,
            project=project,
            items=[repo.NewItem(source_ref="a.png", image_sha256="0" * 64, split="train")],
        )
        item = int(repo.items_frame(s, project_id=project.id).index[0])
        doctors = repo.ensure_users(
            s, usernames=["dora", "dirk"], role=Role.DOCTOR, simulated=False
        )
        return project.id, item, doctors["dora"], doctors["dirk"]


def test_one_open_flag_per_item_until_resolved(database: Database) -> None:
    project, item, dora, dirk = _item_and_doctors(database)
    with database.session() as s:
        assert flags.open_flags_for(s, item_ids=[item]) == {}
        first = flags.add_flag(
            s, project_id=project, item_id=item, reason="image unreadable", flagged_by_id=dora
        ).id
    with pytest.raises(IntegrityError), database.session() as s:
        flags.add_flag(s, project_id=project, item_id=item, reason="again", flagged_by_id=dirk)
    with database.session() as s:
        current = flags.open_flags_for(s, item_ids=[item, item + 1])
        assert list(current) == [item]
        assert (current[item].flag_id, current[item].reason) == (first, "image unreadable")
        assert current[item].flagged_by == "dora" and current[item].flagged_at is not None
        assert flags.resolve_flags(s, item_id=item, resolved_by_id=dirk) == [first]
        assert flags.resolve_flags(s, item_id=item, resolved_by_id=dirk) == []
    with database.session() as s:
        assert flags.open_flags_for(s, item_ids=[item]) == {}
        second = flags.add_flag(
            s, project_id=project, item_id=item, reason="second opinion", flagged_by_id=dirk
        ).id
    with database.session() as s:
        assert flags.open_flags_for(s, item_ids=[item])[item].flag_id == second != first


def test_migration_0005_goes_down_and_up(database: Database) -> None:
    database.downgrade("0004")
    tables = inspect(database.engine).get_table_names()
    assert "review_flags" not in tables and "jobs" in tables
    database.migrate()
    assert "review_flags" in inspect(database.engine).get_table_names()
