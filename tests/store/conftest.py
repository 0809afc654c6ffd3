"""Store fixtures: every store test runs on SQLite and, where configured, on PostgreSQL."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from medloop.store import Database

POSTGRES_URL = os.environ.get("MEDLOOP_TEST_POSTGRES_URL")


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A migrated, empty database; PostgreSQL gets a throw-away database of its own."""
    if request.param == "sqlite":
        db = Database(f"sqlite:///{tmp_path / 'medloop.db'}")
        db.migrate()
        yield db
        db.dispose()
        return
    if not POSTGRES_URL:
        pytest.skip("MEDLOOP_TEST_POSTGRES_URL is not set (.ci/run sets it)")
    name = f"medloop_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    db = Database(make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False))
    try:
        db.migrate()
        yield db
    finally:
        db.dispose()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
