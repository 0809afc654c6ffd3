"""The database's schema: where it stands (`schema_state`) and its explicit upgrade.

Opening a home upgrades a SQLite database itself, after copying it beside itself
(``medloop.db.before-<revision>``). medloop cannot copy a PostgreSQL database, so it
never upgrades one on opening: `upgrade` does, told (`backed_up`) that its owner took a
pg_dump first (`store.db.pg_dump_command` names it); the upgrade is audited.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from medloop.config import Settings
from medloop.exceptions import ConfigError
from medloop.store import repository as repo
from medloop.store.db import Database, SchemaState, pg_dump_command

logger = logging.getLogger(__name__)


def _database(settings: Settings) -> Database:
    settings.home.mkdir(mode=0o700, parents=True, exist_ok=True)
    return Database(settings.resolved_database_url)


def schema_state(settings: Settings) -> SchemaState:
    """Where the database's schema is against this medloop's migrations (nothing changed)."""
    db = _database(settings)
    try:
        return db.schema_state()
    finally:
        db.dispose()


@dataclass(frozen=True)
class Upgrade:
    """What `upgrade` did: from `before` (None: an empty database, created) to `after`;
    `copy` the SQLite copy taken first; `refused` with the pg_dump command to run first
    (a PostgreSQL database not said to be backed up: nothing changed)."""

    dialect: str
    before: str | None
    after: str
    applied: list[str]
    copy: Path | None = None
    refused: str | None = None


def upgrade(settings: Settings, *, backed_up: bool, actor: str) -> Upgrade:
    """Bring the database's schema to this medloop's newest migration, audited under
    `actor`. SQLite is copied first; PostgreSQL is upgraded only when `backed_up`, else
    refused with the pg_dump command to run first."""
    db = _database(settings)
    try:
        state = db.schema_state()
        if not state.known:
            raise ConfigError(
                f"the database's schema is at migration {state.current}, newer than this "
                f"medloop knows (up to {state.head}): upgrade medloop"
            )
        done = Upgrade(state.dialect, state.current, state.head, [])
        if state.up_to_date:
            return done
        existing = state.current is not None
        if existing and state.dialect == "postgresql" and not backed_up:
            command = pg_dump_command(settings.resolved_database_url, before=str(state.current))
            return Upgrade(state.dialect, state.current, state.current or "", [], refused=command)
        copy = db.migrate(backed_up=backed_up)
        with db.session() as s:
            repo.audit(
                s,
                actor=actor,
                action="db.upgrade",
                entity="database",
                detail={
                    "dialect": state.dialect,
                    "from": state.current,
                    "to": state.head,
                    "migrations": state.pending,
                    "copy": None if copy is None else copy.name,
                    "backed_up": backed_up,
                },
            )
        return Upgrade(state.dialect, state.current, state.head, state.pending, copy=copy)
    finally:
        db.dispose()
