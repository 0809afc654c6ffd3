"""`Database.writing()`: concurrent short writes all land, rolled back on errors."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from medloop.store import Database
from medloop.store import repository as repo


def test_concurrent_writers_all_commit(database: Database) -> None:
    def write(i: int) -> None:
        with database.writing() as s:
            repo.audit(s, actor=f"writer{i}", action="test.write", entity="test", entity_id=i)

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(write, range(64)))
    with database.session() as s:
        frame = repo.audit_frame(s)
    written = frame.loc[frame["action"] == "test.write", "entity_id"].astype(int)
    assert sorted(written) == list(range(64))


def test_a_failed_write_is_rolled_back_and_the_turn_released(database: Database) -> None:
    with pytest.raises(RuntimeError), database.writing() as s:
        repo.audit(s, actor="x", action="test.lost", entity="test", entity_id=1)
        raise RuntimeError("boom")
    with database.writing() as s:  # the turn is free again (no deadlock)
        repo.audit(s, actor="x", action="test.kept", entity="test", entity_id=2)
    with database.session() as s:
        actions = set(repo.audit_frame(s)["action"])
    assert "test.kept" in actions and "test.lost" not in actions
