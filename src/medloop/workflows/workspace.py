"""The workspace every workflow runs in: settings, database and blobs under MEDLOOP_HOME."""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Generic, TypeVar, cast

from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError

from medloop.config import Settings
from medloop.exceptions import ConfigError
from medloop.ingest.dateshift import load_or_create_key
from medloop.ingest.deid import pseudonymize
from medloop.store import BlobStore, Database

logger = logging.getLogger(__name__)

T = TypeVar("T")
#: How many never-changing objects a workspace keeps (`Workspace.recent`).
RECENT_LIMIT = 4
#: Threads that recompute outdated figures behind the pages (`Workspace.figures`).
FIGURE_WORKERS = 2


def date_shift_key(settings: Settings) -> bytes:
    """The key of patients' date shifts (`medloop.ingest.dateshift`), for their FHIR facts
    and their DICOM images alike: MEDLOOP_DATE_SHIFT_KEY, else the key file in the home
    (`Settings.date_shift_key_file`, created once with a random key). Never stored in the
    database nor in an export."""
    if settings.date_shift_key:
        return settings.date_shift_key.strip().encode()
    return load_or_create_key(settings.date_shift_key_file)


@dataclass(frozen=True)
class Kept(Generic[T]):
    """A value `Workspace.figures` keeps: what it was computed from, and when."""

    value: T
    #: The state its inputs were read at (e.g. `repository.label_state`).
    state: Hashable
    #: When its computation started (UTC): the moment its inputs are from.
    computed_at: datetime
    #: Served outdated while a recompute is in flight: a later call gets the new value.
    updating: bool = False
    #: Later computations have larger numbers; an earlier one never replaces a later one.
    order: int = field(default=0, repr=False, compare=False)


@dataclass
class Workspace:
    """A deployment's database and blobs under MEDLOOP_HOME, opened from settings."""

    settings: Settings
    db: Database
    blobs: BlobStore
    #: Sign-in tokens recently checked against the database: a session's sign-in or an API
    #: token's signature -> (account, when) (`accounts.account_for_token`).
    checked_tokens: dict[str, tuple[Any, float]] = field(default_factory=dict, repr=False)
    #: Figures derived from a project's answers and labels (annotator reliability on the
    #: review and dashboard pages), by key (`figures`).
    derived: dict[Hashable, Kept[Any]] = field(default_factory=dict, repr=False)
    #: Computations of `derived` values in flight, by key: at most one each (`figures`).
    computing: dict[Hashable, Future[Kept[Any]]] = field(default_factory=dict, repr=False)
    _figures_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _figure_pool: ThreadPoolExecutor | None = field(default=None, repr=False)
    _computations: Iterator[int] = field(default_factory=lambda: itertools.count(1), repr=False)
    #: Objects that never change once made (models unpickled from content-addressed
    #: blobs): the `RECENT_LIMIT` most recently used, oldest first (`recent`).
    recently_used: OrderedDict[Hashable, Any] = field(default_factory=OrderedDict, repr=False)
    _recent_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def open(cls, settings: Settings) -> Workspace:
        """Create MEDLOOP_HOME if needed (readable by its owner only: it holds patients'
        pseudonymised data) and bring the database up to date: a SQLite one is copied
        before an upgrade; a PostgreSQL one at an older migration is a ConfigError that
        says to pg_dump it and run `medloop db upgrade --backed-up` (`Database.migrate`).
        A database URL that is not one, or a database that cannot be reached, is a
        ConfigError."""
        if not settings.home.exists():
            settings.home.mkdir(mode=0o700, parents=True)
        elif not settings.home.is_dir():
            raise ConfigError(f"MEDLOOP_HOME {settings.home} is a file, not a folder")
        try:
            db = Database(settings.resolved_database_url)
        except (ArgumentError, NoSuchModuleError) as error:
            raise ConfigError(f"MEDLOOP_DATABASE_URL is not a database URL ({error})") from None
        try:
            db.migrate(backed_up=False)  # no copy of PostgreSQL: `medloop db upgrade`
        except OperationalError as error:
            db.dispose()
            where = db.engine.url.render_as_string(hide_password=True)
            raise ConfigError(f"cannot open the database {where}: {error.orig}") from None
        except BaseException:
            db.dispose()
            raise
        return cls(settings=settings, db=db, blobs=BlobStore(settings.blob_dir))

    def kept(self, key: Hashable, state: Hashable, compute: Callable[[], T]) -> T:
        """`compute()`, kept under `key` until `state` changes (e.g. a project's
        `repository.label_state`: its newest answer and label); computed in this thread
        whenever it has (`figures` with ``fresh=True``)."""
        return self.figures(key, state, lambda: (state, compute()), fresh=True).value

    def figures(
        self,
        key: Hashable,
        state: Hashable,
        compute: Callable[[], tuple[Hashable, T]],
        *,
        fresh: bool = True,
    ) -> Kept[T]:
        """The value kept under `key`, as of `state` where it can be. `compute()` returns
        the state it read its inputs at and the value (reading the state first: the value
        is then at least as new as the state says).

        - A value kept at `state`: that one.
        - `fresh`: otherwise computed now, in this thread.
        - Not `fresh`, a value kept at another state: that value at once, marked
          `updating`, while one background thread recomputes it (at most one computation
          per key is in flight: later calls find it). A failure there is logged and the
          kept value stays, so a later call tries again.
        - Not `fresh`, nothing kept: computed now, or the computation in flight awaited
          (many first views do not compute it many times).

        Server threads share the workspace; `settle` waits for the background work."""
        with self._figures_lock:
            found = self.derived.get(key)
            if found is not None and found.state == state:
                return cast(Kept[T], found)
            running = self.computing.get(key)
            if found is not None and not fresh:
                if running is None:
                    done: Future[Kept[Any]] = Future()
                    self.computing[key] = done
                    self._pool().submit(self._compute_quietly, key, compute, done)
                return cast(Kept[T], replace(found, updating=True))
            if running is None or fresh:
                mine: Future[Kept[Any]] = Future()
                self.computing.setdefault(key, mine)  # a background one may be in flight
        if running is not None and not fresh:
            return cast(Kept[T], running.result())
        return self._compute(key, compute, mine)

    def _compute(
        self,
        key: Hashable,
        compute: Callable[[], tuple[Hashable, T]],
        done: Future[Kept[Any]],
        *,
        background: bool = False,
    ) -> Kept[T]:
        """Run `compute`, keep its value unless a later computation's is kept already,
        and tell those awaiting `done`; it is no longer in flight once they hear. In the
        `background` a failure is logged before they hear (`settle` then finds it logged)."""
        if not done.set_running_or_notify_cancel():
            raise CancelledError(f"the workspace closed before computing {key!r}")
        with self._figures_lock:
            order = next(self._computations)
        started = datetime.now(UTC)
        try:
            state, value = compute()
        except BaseException as error:
            if background:
                logger.exception("recomputing %r failed; its older value is served meanwhile", key)
            self._finished(key, done)
            done.set_exception(error)
            raise
        kept = Kept(value=value, state=state, computed_at=started, order=order)
        with self._figures_lock:
            found = self.derived.get(key)
            if found is None or found.order < order:
                self.derived[key] = kept
        self._finished(key, done)
        done.set_result(kept)
        return kept

    def _finished(self, key: Hashable, done: Future[Kept[Any]]) -> None:
        with self._figures_lock:
            if self.computing.get(key) is done:
                del self.computing[key]

    def _compute_quietly(
        self, key: Hashable, compute: Callable[[], tuple[Hashable, Any]], done: Future[Kept[Any]]
    ) -> None:
        """`_compute` in a background thread: a failure goes to the log (the kept value
        stays and the next call tries again)."""
        with contextlib.suppress(Exception):  # logged by `_compute`
            self._compute(key, compute, done, background=True)

    def _pool(self) -> ThreadPoolExecutor:
        """The background threads (`FIGURE_WORKERS`), started when first needed; call
        with `_figures_lock` held."""
        if self._figure_pool is None:
            self._figure_pool = ThreadPoolExecutor(FIGURE_WORKERS, thread_name_prefix="figures")
        return self._figure_pool

    def settle(self) -> None:
        """Wait until no figures are being computed (`figures`): for tests and scripts
        that want what the background threads were recomputing."""
        while True:
            with self._figures_lock:
                running = list(self.computing.values())
            if not running:
                return
            wait(running)

    def recent(self, key: Hashable, make: Callable[[], T]) -> T:
        """`make()`, kept under `key` among the `RECENT_LIMIT` most recently used: for
        what a key always means the same (a blob's sha256), too large to keep them all
        (a survival forest weighs tens of MB)."""
        with self._recent_lock:  # server threads share the workspace
            if key in self.recently_used:
                self.recently_used.move_to_end(key)
                return cast(T, self.recently_used[key])
        value = make()  # outside the lock: two threads may both make it, one is kept
        with self._recent_lock:
            self.recently_used[key] = value
            while len(self.recently_used) > RECENT_LIMIT:
                self.recently_used.popitem(last=False)
        return value

    def file_ref(self, kind: str, name: str) -> str:
        """How an imported file or folder is named in the store and the audit log:
        `kind` and a keyed pseudonym of `name`, never the name itself (a hospital's export
        is often named after its patient). The same name under the same key gives the
        same reference, so whoever holds the key can tell which file it was."""
        return f"{kind}:{pseudonymize(name, key=self.settings.resolved_secret_key, prefix='F')}"

    def checkpoint(self, stored: str) -> Path:
        """The file of a model version's checkpoint as stored in its row: relative to this
        home's model folder (``<project>/v3.pt``). Rows written before that hold the path
        the file had then; the same ``<project>/<file>`` under this home's model folder is
        read where that is there (a home copied, restored or opened from elsewhere)."""
        path = Path(stored)
        here = self.settings.model_dir / Path(*path.parts[-2:])
        return path if path.is_absolute() and path.exists() and not here.exists() else here

    def close(self) -> None:
        """Finish the recomputes running (those waiting are dropped), then let the
        database go."""
        with self._figures_lock:
            pool, self._figure_pool = self._figure_pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        with self._figures_lock:
            for dropped in self.computing.values():
                dropped.cancel()  # never started: whoever awaits it hears so
            self.computing.clear()
        self.db.dispose()
