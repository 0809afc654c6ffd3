"""The audit page's look-ups by the start of a name in any case use an index (migration
0015), the same one the models declare, and still find what they found (SQLite,
PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import create_engine, text

from medloop.store import Database
from medloop.store import repository as repo
from medloop.store.models import Base

ACTORS = ["dora", "DORA_X", "dorian", "do%", "dorax", "system", "adam"]
INDEXES = {"ix_audit_log_lower_actor_id", "ix_audit_log_lower_action_id"}


def _audit_indexes(connection: Any, *, schema: str = "public") -> dict[str, str]:
    if connection.dialect.name == "sqlite":
        rows = connection.execute(
            text(
                "SELECT name, sql FROM sqlite_master "
                "WHERE tbl_name = 'audit_log' AND type = 'index' AND sql IS NOT NULL"
            )
        )
        return {name: sql for name, sql in rows}
    rows = connection.execute(
        text(
            "SELECT indexname, indexdef FROM pg_indexes "
            "WHERE tablename = 'audit_log' AND schemaname = :s"
        ),
        {"s": schema},
    )
    return {name: sql.replace(f" {schema}.audit_log ", " audit_log ") for name, sql in rows}


@contextmanager
def _from_models(database: Database, tmp_path: Any) -> Iterator[dict[str, str]]:
    """The audit log's indexes as `Base.metadata.create_all` makes them."""
    if database.engine.dialect.name == "sqlite":
        engine = create_engine(f"sqlite:///{tmp_path / 'models.db'}")
        Base.metadata.create_all(engine)
        with engine.connect() as connection:
            yield _audit_indexes(connection)
        engine.dispose()
        return
    with database.engine.begin() as connection:
        connection.execute(text("CREATE SCHEMA fresh"))
        fresh = connection.execution_options(schema_translate_map={None: "fresh"})
        Base.metadata.create_all(fresh)
        yield _audit_indexes(connection, schema="fresh")
        connection.execute(text("DROP SCHEMA fresh CASCADE"))


def test_migrations_and_models_make_the_same_audit_indexes(
    database: Database, tmp_path: Any
) -> None:
    with database.engine.connect() as connection:
        migrated = _audit_indexes(connection)
    with _from_models(database, tmp_path) as declared:
        assert migrated.keys() >= INDEXES
        assert migrated == declared
    assert "ix_audit_log_actor_id" not in migrated, "the index by case-sensitive name went"
    database.downgrade("0014")
    with database.engine.connect() as connection:
        assert not INDEXES & _audit_indexes(connection).keys()
    database.migrate()


def _plans(database: Database, **wanted: str) -> str:
    """The plans of the page's entries and count queries for `wanted`, as words."""
    captured: list[str] = []
    dialect = database.engine.dialect
    with database.session() as s:
        if dialect.name == "postgresql":  # a tiny table: say whether an index could serve
            s.execute(text("SET LOCAL enable_seqscan = off"))
        scalars, scalar = s.scalars, s.scalar

        def spy(run: Any) -> Any:
            def spied(statement: Any, *args: Any, **kwargs: Any) -> Any:
                sql = statement.compile(dialect=dialect, compile_kwargs={"literal_binds": True})
                captured.append(str(sql))
                return run(statement, *args, **kwargs)

            return spied

        s.scalars, s.scalar = spy(scalars), spy(scalar)  # type: ignore[method-assign]
        repo.audit_entries(s, **wanted)
        explain = "EXPLAIN QUERY PLAN " if dialect.name == "sqlite" else "EXPLAIN "
        return "\n".join(
            str(row[-1]) for sql in captured for row in s.execute(text(explain + sql)).all()
        )


#: The people a filter finds, newest first: the start of the name in any case, with
#: % and _ as plain characters.
FOUND = {
    "DO": ["dorax", "do%", "dorian", "DORA_X", "dora"],
    "dora": ["dorax", "DORA_X", "dora"],
    "DORA_": ["DORA_X"],
    "do%": ["do%"],
    "dorax": ["dorax"],
    "z": [],
}


def test_people_and_actions_are_found_by_the_start_of_their_name_through_an_index(
    database: Database,
) -> None:
    with database.session() as s:
        for n, actor in enumerate(ACTORS):
            repo.audit(
                s, actor=actor, action="label.final" if n % 2 else "item.read", entity="item"
            )
    actor_plans = _plans(database, actor="Dora")
    assert actor_plans.count("ix_audit_log_lower_actor_id") == 2, actor_plans
    action_plans = _plans(database, action="LABEL.")
    assert action_plans.count("ix_audit_log_lower_action_id") == 2, action_plans
    with database.session() as s:
        for wanted, found in FOUND.items():
            entries, total = repo.audit_entries(s, actor=wanted)
            assert [e.actor for e in entries] == found and total == len(found), wanted
        entries, total = repo.audit_entries(s, actor="d", action="Label.")
        assert [e.actor for e in entries] == ["do%", "DORA_X"] and total == 2
