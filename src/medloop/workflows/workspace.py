"""The workspace every workflow runs in: settings, database and blobs under MEDLOOP_HOME."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError

from medloop.config import Settings
from medloop.exceptions import ConfigError
from medloop.ingest.deid import pseudonymize
from medloop.store import BlobStore, Database

T = TypeVar("T")
#: How many never-changing objects a workspace keeps (`Workspace.recent`).
RECENT_LIMIT = 4


@dataclass
class Workspace:
    """A deployment's database and blobs under MEDLOOP_HOME, opened from settings."""

    settings: Settings
    db: Database
    blobs: BlobStore
    #: Sign-in tokens recently checked against the database: signature -> (account, when)
    #: (`accounts.account_for_token`).
    checked_tokens: dict[str, tuple[Any, float]] = field(default_factory=dict, repr=False)
    #: Figures derived from a project's answers and labels (annotator reliability on the
    #: review and dashboard pages): key -> (the state they were computed at, value).
    derived: dict[Hashable, tuple[Hashable, Any]] = field(default_factory=dict, repr=False)
    #: Objects that never change once made (models unpickled from content-addressed
    #: blobs): the `RECENT_LIMIT` most recently used, oldest first (`recent`).
    recently_used: OrderedDict[Hashable, Any] = field(default_factory=OrderedDict, repr=False)
    _recent_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def open(cls, settings: Settings) -> Workspace:
        """Create MEDLOOP_HOME if needed (readable by its owner only: it holds patients'
        pseudonymised data) and bring the database up to date; a database URL that is not
        one, or a database that cannot be reached, is a ConfigError."""
        if not settings.home.exists():
            settings.home.mkdir(mode=0o700, parents=True)
        elif not settings.home.is_dir():
            raise ConfigError(f"MEDLOOP_HOME {settings.home} is a file, not a folder")
        try:
            db = Database(settings.resolved_database_url)
        except (ArgumentError, NoSuchModuleError) as error:
            raise ConfigError(f"MEDLOOP_DATABASE_URL is not a database URL ({error})") from None
        try:
            db.migrate()
        except OperationalError as error:
            where = db.engine.url.render_as_string(hide_password=True)
            raise ConfigError(f"cannot open the database {where}: {error.orig}") from None
        return cls(settings=settings, db=db, blobs=BlobStore(settings.blob_dir))

    def kept(self, key: Hashable, state: Hashable, compute: Callable[[], T]) -> T:
        """`compute()`, kept under `key` until `state` changes (e.g. a project's
        `repository.label_state`: its newest answer and label). Two threads may both
        compute a missing value; the later one is kept."""
        found = self.derived.get(key)
        if found is not None and found[0] == state:
            return cast(T, found[1])
        value = compute()
        self.derived[key] = (state, value)
        return value

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
        self.db.dispose()
