"""Web fixtures: a small synthetic project with people, gold items and open tasks."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from web_support import Site, build_project, open_tasks

from medloop.config import Settings
from medloop.web import create_app
from medloop.workflows import Workspace, accounts


@pytest.fixture(autouse=True)
def _cheap_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Argon2 with minimal cost keeps tests fast; the algorithm is the same."""
    monkeypatch.setattr(
        accounts, "_hasher", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    )


POSTGRES_URL = os.environ.get("MEDLOOP_TEST_POSTGRES_URL")


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str | None]:
    """None (SQLite in the home) or a throw-away PostgreSQL database."""
    if request.param == "sqlite":
        yield None
        return
    if not POSTGRES_URL:
        pytest.skip("MEDLOOP_TEST_POSTGRES_URL is not set (.ci/run sets it)")
    name = f"medloop_web_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    """The web app on SQLite (the default)."""
    yield from _site(tmp_path, None)


@pytest.fixture
def any_site(tmp_path: Path, database_url: str | None) -> Iterator[Site]:
    """The web app on SQLite and, where configured, on PostgreSQL."""
    yield from _site(tmp_path, database_url)


def _site(tmp_path: Path, database_url: str | None) -> Iterator[Site]:
    settings = Settings(
        home=tmp_path / "home", secret_key="test-secret-key", database_url=database_url
    )
    ws = Workspace.open(settings)
    gold = build_project(ws)
    open_tasks(ws)
    with TestClient(create_app(settings, workspace=ws)) as client:
        yield Site(ws=ws, client=client, gold_items=gold)
    ws.close()
