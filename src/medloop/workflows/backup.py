"""A consistent copy of a home while it is in use: `back_up` (`medloop store backup`).

A home is its database, its blobs, its model folder (checkpoints and Grad-CAM
pointers) and its date-shift key file (`ingest.dateshift`), where it has one. Copying
the folder with `cp` while a server writes is not a backup: SQLite keeps recent commits
in ``medloop.db-wal`` until a checkpoint, so a copy of the database file alone misses
them, and a copy of both taken at different moments may not open at all. Here the
database is copied first, as one snapshot (SQLite's online backup; PostgreSQL's is
pg_dump, taken before this command), then the model folder and the blobs: files are
written before the rows that name them are committed, and never changed after, so every
file a row of the snapshot names is there to be copied. Each blob, and each model
version's checkpoint, is checked against its recorded sha256 on the way (a damaged one
is reported by name and left out: a backup must not carry a corrupt model), and the
copy is checked against its own database at the end. The result is a home: point MEDLOOP_HOME at it
(with the same MEDLOOP_SECRET_KEY) to restore.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import sqlite3
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

from medloop.exceptions import InvalidInputError
from medloop.store import BlobStore, Database
from medloop.store import repository as repo
from medloop.workflows.checkpoints import (
    DIGEST_KEY,
    UNFINISHED,
    CheckpointState,
    checkpoint_state,
)
from medloop.workflows.progress import Progress, no_progress
from medloop.workflows.workspace import Workspace

logger = logging.getLogger(__name__)

#: The database file of a backup (the default database of a home).
DATABASE_FILE = "medloop.db"


@dataclass(frozen=True)
class BackupReport:
    """What `back_up` copied into `target`; `database` is False for PostgreSQL (dumped
    apart). `missing`, `damaged` (blobs' digests) and `damaged_models` (checkpoints,
    ``<project>/<file>`` under the model folder) name files the snapshot needs that
    could not be copied whole (the backup is then incomplete)."""

    target: Path
    database: bool
    blobs: int
    blob_bytes: int
    model_files: int
    missing: list[str] = field(default_factory=list)
    damaged: list[str] = field(default_factory=list)
    damaged_models: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not (self.missing or self.damaged or self.damaged_models)


def back_up(ws: Workspace, *, target: Path, progress: Progress = no_progress) -> BackupReport:
    """Copy the home's database (SQLite), model folder and blobs into the new folder
    `target`, consistently while servers and commands go on writing, and check the copy."""
    target = Path(target)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise InvalidInputError(f"{target} exists and is not an empty folder")
    home = ws.settings.home.resolve()
    if target.resolve().is_relative_to(home):
        raise InvalidInputError(f"{target} is inside the home it would copy ({home})")
    target.mkdir(parents=True, exist_ok=True)
    database = _copy_database(ws.db, target / DATABASE_FILE)
    model_files = _copy_models(ws.settings.model_dir, target / "models")
    damaged_models = _drop_damaged_checkpoints(ws, target / "models", progress)
    model_files -= len(damaged_models)
    _copy_date_shift_key(ws.settings.date_shift_key_file, target)
    blobs, size, damaged = _copy_blobs(ws.blobs, BlobStore(target / "blobs"), progress)
    missing: list[str] = []
    if database:
        missing = _missing_files(target)
    report = BackupReport(
        target, database, blobs, size, model_files, missing, damaged, damaged_models
    )
    logger.info(
        "backed up %d blobs and %d model files to %s (%d missing, %d damaged)",
        blobs,
        model_files,
        target,
        len(missing),
        len(damaged) + len(damaged_models),
    )
    return report


def _copy_database(db: Database, target: Path) -> bool:
    """One consistent snapshot of a SQLite database (False: PostgreSQL, not copied)."""
    source = db.engine.url.database
    if db.engine.dialect.name != "sqlite" or source in (None, "", ":memory:"):
        return False
    with closing(sqlite3.connect(source)) as live, closing(sqlite3.connect(target)) as copy:
        live.backup(copy)  # one read transaction: commits made meanwhile are not in it
    return True


def _copy_models(source: Path, target: Path) -> int:
    """The checkpoints and Grad-CAM pointers, less the files of trainings under way."""
    if not source.is_dir():
        return 0
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(*UNFINISHED))
    return sum(1 for path in target.rglob("*") if path.is_file())


def _drop_damaged_checkpoints(ws: Workspace, models: Path, progress: Progress) -> list[str]:
    """Check each model version's checkpoint copied into `models` against the sha256
    recorded when it was trained, and take a damaged one out of the copy: its names
    (``<project>/<file>``). Versions trained before digests were recorded, and files the
    copy lacks (`_missing_files` names them), are not checked."""
    with ws.db.session() as s:  # the rows of every file copied, and maybe a few newer
        stored = repo.model_checkpoints(s)
    damaged: list[str] = []
    for done, (project, version, path, metrics) in enumerate(stored, 1):
        name = Path(*Path(path).parts[-2:])
        copy = models / name
        if checkpoint_state(copy, metrics.get(DIGEST_KEY)) is CheckpointState.DAMAGED:
            copy.unlink()
            damaged.append(name.as_posix())
            logger.error(
                "the checkpoint of model version %d of project %s is damaged; left out",
                version,
                project,
            )
        progress("backup: checking model checkpoints", done, len(stored))
    return damaged


def _copy_date_shift_key(source: Path, target: Path) -> None:
    """The home's date-shift key file, where there is one (`ingest.dateshift`): a home
    restored without it would shift every patient's dates anew, so later imports would
    not line up with the stored ones. Kept readable by its owner only."""
    if source.is_file():
        copy = target / source.name
        shutil.copyfile(source, copy)
        copy.chmod(0o600)


def _copy_blobs(
    source: BlobStore, target: BlobStore, progress: Progress
) -> tuple[int, int, list[str]]:
    """Every blob, each checked against its digest: (copied, bytes, damaged digests)."""
    copied = size = 0
    damaged: list[str] = []
    folders = source.folders()
    for done, folder in enumerate(folders, 1):
        for blob in source.files(folder):
            if blob.sha256 is None:  # an unfinished write
                continue
            data = blob.path.read_bytes()
            if hashlib.sha256(data).hexdigest() != blob.sha256:
                damaged.append(blob.sha256)
                continue
            target.put(data, durable=False)
            copied += 1
            size += len(data)
        progress("backup: copying blobs", done, len(folders))
    target.sync(_all_digests(target))
    return copied, size, damaged


def _all_digests(store: BlobStore) -> list[str]:
    return [b.sha256 for f in store.folders() for b in store.files(f) if b.sha256]


def _missing_files(target: Path) -> list[str]:
    """The blobs and checkpoints the copied database names that the copy lacks."""
    copy = Database(f"sqlite:///{target / DATABASE_FILE}")
    try:
        with copy.session() as s:
            named = set(repo.blob_references(s)["sha256"])
            checkpoints = [path for _, _, path, _ in repo.model_checkpoints(s)]
    finally:
        copy.dispose()
    blobs = BlobStore(target / "blobs")
    missing = sorted(sha for sha in named if not blobs.exists(sha))
    models = target / "models"
    missing += sorted(
        path for path in checkpoints if not (models / Path(*Path(path).parts[-2:])).is_file()
    )
    return missing
