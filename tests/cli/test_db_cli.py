"""`medloop db current` and `medloop db upgrade`, on SQLite and on PostgreSQL: an older
schema is shown, and upgraded only with a copy (SQLite) or once backed up (PostgreSQL)."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from cli_support import run
from medloop.config import Settings
from medloop.exceptions import ConfigError
from medloop.store import Database
from medloop.workflows import Workspace
from medloop.workflows.audit import audit_log

POSTGRES_URL = os.environ.get("MEDLOOP_TEST_POSTGRES_URL")


@pytest.fixture(params=["sqlite", "postgresql"])
def dialect(
    request: pytest.FixtureRequest, home: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """The home's database: SQLite in it, or a throw-away PostgreSQL database."""
    if request.param == "sqlite":
        yield "sqlite"
        return
    if not POSTGRES_URL:
        pytest.skip("MEDLOOP_TEST_POSTGRES_URL is not set (.ci/run sets it)")
    name = f"medloop_db_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    monkeypatch.setenv("MEDLOOP_DATABASE_URL", url)
    try:
        yield "postgresql"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _current(monkeypatch, capsys) -> dict:
    code, out, err = run(monkeypatch, capsys, "db", "current", "--json")
    assert code == 0, err
    return json.loads(out)


def test_an_older_schema_is_shown_and_upgraded_only_with_a_way_back(
    dialect: str, home: Path, monkeypatch, capsys
) -> None:
    """There was no command to see the schema's migration, and opening a PostgreSQL
    database upgraded it with no copy of it anywhere."""
    Workspace.open(Settings()).close()  # a new database: created at once, as before
    state = _current(monkeypatch, capsys)
    assert state["up_to_date"] and state["current"] == state["head"] and state["pending"] == []
    head = state["head"]
    db = Database(Settings().resolved_database_url)
    db.downgrade("0014")
    db.dispose()

    state = _current(monkeypatch, capsys)
    assert (state["dialect"], state["current"], state["up_to_date"]) == (dialect, "0014", False)
    assert "0016" in state["pending"] and state["pending"][-1] == head
    code, out, _ = run(monkeypatch, capsys, "db", "current")
    assert code == 0 and "to apply: 0015, 0016" in out and "medloop db upgrade" in out

    if dialect == "postgresql":
        with pytest.raises(ConfigError, match="medloop db upgrade --backed-up"):
            Workspace.open(Settings())  # opening never upgrades PostgreSQL
        code, out, _ = run(monkeypatch, capsys, "db", "upgrade")
        assert code == 1 and "pg_dump --format=custom --file=medloop-before-0014.dump" in out
        assert _current(monkeypatch, capsys)["current"] == "0014"  # nothing changed
        code, _, err = run(monkeypatch, capsys, "train", "-p", "x")
        assert code == 2 and "pg_dump" in err  # any command says what to do
        code, out, err = run(monkeypatch, capsys, "db", "upgrade", "--backed-up")
        assert code == 0 and "no copy kept by medloop" in out, err
    else:
        code, out, err = run(monkeypatch, capsys, "db", "upgrade")
        assert code == 0 and f"from 0014 to {head}" in out, err
        assert (home / "medloop.db.before-0014").is_file()

    assert _current(monkeypatch, capsys)["up_to_date"]
    code, out, _ = run(monkeypatch, capsys, "db", "upgrade")
    assert code == 0 and "up to date" in out
    ws = Workspace.open(Settings())
    try:
        (entry,) = audit_log(ws, action="db.upgrade").entries
    finally:
        ws.close()
    assert (entry.actor, entry.detail["from"], entry.detail["to"]) == ("cli", "0014", head)
    assert entry.detail["backed_up"] is (dialect == "postgresql")
