"""Queries over long id lists go in chunks: PostgreSQL takes at most 65,535 parameters a
statement (an ingest of 70,000 images, and the review queue of 88,000 items, failed).
Chunks of 2 here, so that every boundary is crossed, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from store_support import project_with_items

from medloop.exceptions import ConflictError
from medloop.store import Database, db, flags
from medloop.store import repository as repo
from medloop.types import Role


def test_long_lists_are_asked_in_chunks(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db, "IN_CHUNK", 2)
    assert list(db.chunks(range(5))) == [[0, 1], [2, 3], [4]]
    with database.session() as s:
        project, items = project_with_items(s, 5)
        dora = repo.create_user(s, username="dora", role=Role.DOCTOR).id
        for item in items[1::2]:
            flags.add_flag(
                s, project_id=project.id, item_id=item, flagged_by_id=dora, reason="look"
            )
        assert sorted(flags.open_flags_for(s, item_ids=items)) == items[1::2]
        # a duplicate in the last chunk of an ingest is still found
        fresh = [
            repo.NewItem(source_ref=name, image_sha256=f"{i:064x}", split="train")
            for i, name in enumerate(["n0.png", "n1.png", "n2.png", "n3.png", "4.png"])
        ]
        with pytest.raises(ConflictError, match=r"'4\.png' is already"):
            repo.add_items(s, project=project, items=fresh)
        cohort = repo.create_project(s, name="cohort", classes=["no event", "event"], n_channels=1)
        ids = repo.ensure_patients(s, project_id=cohort.id, pseudonyms=[f"P{i}" for i in range(5)])
        assert (
            repo.known_patients(s, project_id=cohort.id, pseudonyms=[f"P{i}" for i in range(7)])
            == ids
        )
