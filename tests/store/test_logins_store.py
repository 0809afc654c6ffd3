"""Failed sign-ins in the database (migration 0008), on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from medloop.store import Database, logins
from medloop.store.models import Base


def test_failures_are_counted_per_key_pruned_and_cleared(database: Database) -> None:
    with database.session() as s:
        for at in (10.0, 20.0, 30.0):
            logins.record_failure(s, key="a", at=at)
        logins.record_failure(s, key="b", at=25.0)
    with database.session() as s:
        assert logins.failures_since(s, key="a", since=15.0) == [20.0, 30.0]
        assert logins.prune_failures(s, before=20.0) == 2
    with database.session() as s:
        assert logins.failures_since(s, key="a", since=0.0) == [30.0]
        logins.clear_failures(s, key="a")
    with database.session() as s:
        assert logins.failures_since(s, key="a", since=0.0) == []
        assert logins.failures_since(s, key="b", since=0.0) == [25.0]


def test_a_recorded_attempt_can_be_taken_back_by_its_id(database: Database) -> None:
    with database.session() as s:
        logins.take_turn(s, key="a")  # an advisory lock on PostgreSQL, nothing on SQLite
        first = logins.record_failure(s, key="a", at=10.0)
        second = logins.record_failure(s, key="a", at=20.0)
        assert first != second
    with database.session() as s:
        logins.remove_failures(s, ids=[first])
        logins.remove_failures(s, ids=[])
    with database.session() as s:
        assert logins.failures_since(s, key="a", since=0.0) == [20.0]


# Neither dialect reflects uq_users_lower_username (an expression index, migration 0011);
# test_repository checks it is there.
@pytest.mark.filterwarnings("ignore:.*expression-based index")
def test_migrations_build_exactly_the_models_and_0008_goes_down_and_up(
    database: Database,
) -> None:
    with database.engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
    database.downgrade("0007")
    tables = inspect(database.engine).get_table_names()
    assert "login_failures" not in tables and "task_holds" in tables
    database.migrate()
    assert "login_failures" in inspect(database.engine).get_table_names()
