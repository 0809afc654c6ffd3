"""Engine, sessions and schema migrations for SQLite (embedded default) and PostgreSQL."""

from __future__ import annotations

import fcntl
import logging
import shlex
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack, closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, Executable, String, Table, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from medloop.exceptions import ConfigError, InvalidInputError

logger = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"
#: PostgreSQL advisory-lock key taken while migrating (any constant left free).
MIGRATION_LOCK_KEY = 0x6D6C6D6967  # "mlmig"


T = TypeVar("T")

#: The most values one query binds in an IN list: PostgreSQL refuses a statement of more
#: than 65,535 parameters (an ingest of 70,000 images failed at its duplicate check).
IN_CHUNK = 30_000


def chunks(values: Iterable[T], size: int | None = None) -> Iterator[list[T]]:
    """`values` in lists of at most `size` (default `IN_CHUNK`), for IN lists that may be
    long."""
    size = size or IN_CHUNK
    batch: list[T] = []
    for value in values:
        batch.append(value)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def make_engine(url: str) -> Engine:
    """Create an engine; SQLite gets WAL, foreign keys and a busy timeout on every connection."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        pool: dict[str, Any] = {}
        if parsed.database and parsed.database != ":memory:":
            # A web server runs up to 40 requests in threads: keep connections open rather
            # than opening (and setting up) a new one whenever more than 5 are busy.
            pool = {"pool_size": 20, "max_overflow": 20}
        engine = create_engine(url, connect_args={"timeout": 30}, hide_parameters=True, **pool)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    # hide_parameters: a failed statement's values (patients' data, passwords' hashes)
    # stay out of error messages and the server's log
    return create_engine(url, pool_pre_ping=True, hide_parameters=True)


def plain_execute(session: Session, statement: Executable, params: Any = None) -> Any:
    """Run `statement` on the session's connection as `session.execute` would (pending
    ORM changes are flushed first) and return its `Result` of plain rows: the ORM's
    result machinery costs more CPU than a hot path's small select itself. (Typed Any:
    callers unpack rows as they would from `Session.execute`.)"""
    session.flush()
    return session.connection().execute(statement, params)


def check_lengths(model: type[Any], rows: Sequence[Mapping[str, Any]]) -> None:
    """Refuse text longer than its column of `model`'s table holds, naming the column and
    its limit: SQLite stores it whatever the declared length, PostgreSQL refuses the whole
    write with a database error, so the same input must fail the same clear way on both."""
    table: Table = model.__table__
    for column in table.columns:
        limit = getattr(column.type, "length", None)
        if not isinstance(column.type, String) or limit is None:
            continue
        longest = max((len(v) for r in rows if isinstance(v := r.get(column.name), str)), default=0)
        if longest > limit:
            raise InvalidInputError(
                f"{table.name}.{column.name} holds at most {limit} characters; "
                f"a value has {longest}"
            )


def select_frame(session: Session, statement: Executable, columns: Sequence[str]) -> pd.DataFrame:
    """The rows of a select as a frame with `columns`, read through `plain_execute`.
    Rows become plain tuples first: pandas probes each SQLAlchemy `Row` for a dtype
    through its attribute lookup (a scratch check, 60,000 rows of 7 columns: 0.37 s for
    the frame from `Row`s, 0.06 s from tuples; benchmarks/README.md has the page)."""
    rows = plain_execute(session, statement).all()
    return pd.DataFrame([tuple(row) for row in rows], columns=list(columns))


@dataclass(frozen=True)
class SchemaState:
    """A database's schema against this code's migrations: at `current` (None: empty),
    the code's newest is `head`, `pending` the migrations an upgrade applies (oldest
    first); `known` False when `current` is newer than this code knows."""

    dialect: str
    current: str | None
    head: str
    pending: list[str]
    known: bool

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head


def pg_dump_command(url: str, *, before: str) -> str:
    """The pg_dump command that backs a PostgreSQL database up before an upgrade (the
    password left out: pg_dump reads PGPASSWORD or ~/.pgpass)."""
    target = make_url(url).set(drivername="postgresql", password=None)
    address = target.render_as_string(hide_password=False)
    return f"pg_dump --format=custom --file=medloop-before-{before}.dump {shlex.quote(address)}"


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


class Database:
    """An engine plus a session factory; `migrate()` brings the schema to the newest revision."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        # SQLite lets one writer in at a time and makes the others retry with growing
        # sleeps (its busy handler), which turns a queue of short writes into long tails;
        # writers of this process wait their turn on a lock instead.
        self._write_turn = threading.RLock() if self.engine.dialect.name == "sqlite" else None

    def migrate(self, *, backed_up: bool = True) -> Path | None:
        """Bring the schema to the newest migration. A SQLite database is copied first,
        beside it (`_back_up`; the copy's path is returned). medloop cannot copy a
        PostgreSQL database: one at an older migration is upgraded only when `backed_up`
        says its owner took a pg_dump (`Workspace.open` says not, so opening never
        upgrades it: `medloop db upgrade` does), else a ConfigError names the pg_dump
        command to run first. A new, empty database is created either way."""
        return self._run_migrations(command.upgrade, "head", backed_up=backed_up)

    def downgrade(self, revision: str) -> None:
        """Take the schema back to `revision` (e.g. "0007"): undoes the migrations after it."""
        self._run_migrations(command.downgrade, revision)

    def schema_state(self) -> SchemaState:
        """Where the database's schema is against this code's migrations (changes nothing)."""
        scripts = ScriptDirectory.from_config(alembic_config())
        with self.engine.connect() as connection:
            current = MigrationContext.configure(connection).get_current_revision()
        head = scripts.get_current_head()
        assert head is not None
        known = {script.revision for script in scripts.walk_revisions()}
        pending = []
        if current is None or current in known:
            steps = scripts.iterate_revisions(head, current or "base")
            pending = [script.revision for script in reversed(list(steps))]
        return SchemaState(
            dialect=self.engine.dialect.name,
            current=current,
            head=head,
            pending=pending,
            known=current is None or current in known,
        )

    def _run_migrations(
        self, step: Callable[[Config, str], None], revision: str, *, backed_up: bool = True
    ) -> Path | None:
        copy = None
        config = alembic_config()
        with self._migration_turn(), self.engine.begin() as connection:
            if self.engine.dialect.name == "postgresql":
                # commands starting together on an older schema take turns: the later ones
                # find it upgraded (without the lock, one added the same column again)
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
                )
            current = MigrationContext.configure(connection).get_current_revision()
            scripts = ScriptDirectory.from_config(config)
            known = {script.revision for script in scripts.walk_revisions()}
            if current is not None and current not in known:
                raise ConfigError(
                    f"the database's schema is at migration {current}, newer than this medloop "
                    f"knows (up to {scripts.get_current_head()}): upgrade medloop, or use "
                    "another database"
                )
            head = scripts.get_current_head()
            before = current if step is command.upgrade and current != head else None
            upgrading = before is not None
            postgresql = self.engine.dialect.name == "postgresql"
            if before is not None and postgresql:
                if not backed_up:
                    raise ConfigError(
                        f"the PostgreSQL database is at migration {current}; this medloop "
                        f"needs {head}. medloop keeps no copy of a PostgreSQL database: "
                        f"back it up first ({pg_dump_command(self.url, before=before)}), "
                        "then run: medloop db upgrade --backed-up"
                    )
                logger.warning(
                    "upgrading the PostgreSQL database from migration %s to %s without a "
                    "copy by medloop: the pg_dump taken before is the way back",
                    current,
                    head,
                )
            elif before is not None:
                copy = self._back_up(before=before)
            config.attributes["connection"] = connection
            step(config, revision)
        if upgrading:
            logger.warning("database schema upgraded from migration %s to %s", current, head)
        logger.info("database schema at %s", revision)
        return copy

    def _back_up(self, *, before: str) -> Path | None:
        """Copy a SQLite database before an upgrade changes it, beside it as
        ``<file>.before-<revision>`` (PostgreSQL has its own backups: pg_dump); the copy's
        path (None: in memory, nothing copied)."""
        database = self.engine.url.database
        if self.engine.dialect.name != "sqlite" or database in (None, "", ":memory:"):
            return None
        target = Path(f"{database}.before-{before}")
        if target.exists():
            return target
        with closing(sqlite3.connect(database)) as source, closing(sqlite3.connect(target)) as copy:
            source.backup(copy)  # consistent even while others read it
        logger.warning("backed up the database to %s before upgrading it", target)
        return target

    @contextmanager
    def _migration_turn(self) -> Iterator[None]:
        """On a SQLite file, processes migrating it take turns on a lock file beside it
        (PostgreSQL takes an advisory lock in the migration's own transaction)."""
        database = self.engine.url.database
        if self.engine.dialect.name != "sqlite" or database in (None, "", ":memory:"):
            yield
            return
        with ExitStack() as stack:
            try:
                handle = stack.enter_context(Path(f"{database}.migrate.lock").open("a"))
            except OSError:  # a read-only home: nothing can be migrated there anyway
                handle = None
            if handle is not None:
                fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes
            yield

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session in one transaction: committed on success, rolled back on any error."""
        session = self._sessions()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    @contextmanager
    def writing(self) -> Iterator[Session]:
        """A `session()` for a short write on a hot path: on SQLite, this process's writers
        take turns (see `__init__`); elsewhere the same as `session()`."""
        if self._write_turn is None:
            with self.session() as session:
                yield session
            return
        with self._write_turn, self.session() as session:
            yield session

    def dispose(self) -> None:
        self.engine.dispose()
