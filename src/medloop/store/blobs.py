"""Content-addressed blob storage: files named by their sha256 under a root folder.

A blob is durable (on disk, surviving a crash) once `put` returns, or, for blobs written
in bulk with ``put(data, durable=False)``, once `sync` has flushed them: a row naming a
blob is committed only after that, so the database never points at a blob a crash lost.
A crash between writing blobs and committing their rows leaves blobs no row names;
`files` lists every stored file for `medloop store gc` to find those.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from medloop.exceptions import ConflictError, InvalidInputError, NotFoundError

logger = logging.getLogger(__name__)

TEMPORARY_PREFIX = ".tmp-"
_HEX = frozenset("0123456789abcdef")


class BlobState(StrEnum):
    """What `BlobStore.check` finds under a digest."""

    OK = "ok"
    MISSING = "missing"
    DAMAGED = "damaged"


@dataclass(frozen=True)
class BlobFile:
    """One file of the store: a blob (``sha256`` set) or the temporary file of a write
    that never finished (``sha256`` None)."""

    path: Path
    sha256: str | None
    size: int
    modified: float  # POSIX time of its last write or `put`


class BlobStore:
    """Stores bytes at `<root>/<sha[:2]>/<sha>`; writing the same bytes twice is a no-op."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, sha256: str) -> Path:
        if not is_digest(sha256):
            raise InvalidInputError(f"not a sha256 digest: {sha256!r}")
        return self.root / sha256[:2] / sha256

    def put(self, data: bytes, *, durable: bool = True) -> str:
        """Store `data` and return its sha256 hex digest (atomic write); a stored copy
        that was damaged since is replaced, an intact one is marked as just used (so
        `medloop store gc` leaves it for the grace period).

        With ``durable=False`` the file may still be only in memory when this returns:
        call `sync` with the digest before committing anything that names it. Many blobs
        then cost one flush instead of one each (an ingest of thousands of images)."""
        sha256 = hashlib.sha256(data).hexdigest()
        target = self.path(sha256)
        if self.check(sha256) is BlobState.OK:
            os.utime(target)
        else:
            if not target.parent.is_dir():  # a new shard folder: at most 256, ever
                target.parent.mkdir(parents=True, exist_ok=True)
                _fsync(self.root)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=TEMPORARY_PREFIX)
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        if durable:
            self.sync([sha256])
        return sha256

    def sync(self, digests: Iterable[str]) -> None:
        """Flush the blobs of `digests`, and the folders naming them, to disk (a new shard
        folder is flushed into the root when `put` makes it). On Linux one
        ``syncfs`` flushes the store's whole file system at once (a few hundred blobs
        flush about ten times faster than with one fsync each on ext4); elsewhere, and for
        a single blob, each file and folder is fsynced."""
        paths = {self.path(sha) for sha in digests}
        if not paths:
            return
        if len(paths) > 1 and _syncfs(self.root):
            return
        for path in paths:
            _fsync(path)
        for folder in {p.parent for p in paths}:
            _fsync(folder)

    def get(self, sha256: str) -> bytes:
        """The bytes stored under `sha256`, checked against it: a file damaged on disk is
        a clear error, never an image or model read as if it were whole."""
        target = self.path(sha256)
        if not target.exists():
            raise NotFoundError(f"blob {sha256} not found under {self.root}")
        data = target.read_bytes()
        if hashlib.sha256(data).hexdigest() != sha256:
            raise ConflictError(
                f"the file {target} is damaged (its content no longer matches its name); "
                "restore it from a backup, or ingest its source again"
            )
        return data

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).exists()

    def check(self, sha256: str) -> BlobState:
        """Whether the blob is there and its content still matches its digest (read in
        chunks: a large DICOM file is never held whole)."""
        try:
            with self.path(sha256).open("rb") as handle:
                found = hashlib.file_digest(handle, "sha256").hexdigest()
        except FileNotFoundError:
            return BlobState.MISSING
        return BlobState.OK if found == sha256 else BlobState.DAMAGED

    def folders(self) -> list[Path]:
        """The store's shard folders (``<root>/<sha[:2]>``), sorted."""
        if not self.root.is_dir():
            return []
        return sorted(
            Path(entry.path)
            for entry in os.scandir(self.root)
            if entry.is_dir(follow_symlinks=False) and len(entry.name) == 2
        )

    def files(self, folder: Path) -> Iterator[BlobFile]:
        """The blobs and unfinished temporary files in one shard `folder`; other files
        (not written by this store) are left out."""
        for entry in os.scandir(folder):
            if not entry.is_file(follow_symlinks=False):
                continue
            if is_digest(entry.name) and entry.name[:2] == folder.name:
                sha256: str | None = entry.name
            elif entry.name.startswith(TEMPORARY_PREFIX):
                sha256 = None
            else:
                continue
            try:
                stat = entry.stat(follow_symlinks=False)
            except FileNotFoundError:  # removed meanwhile
                continue
            yield BlobFile(Path(entry.path), sha256, stat.st_size, stat.st_mtime)

    def remove(self, blob: BlobFile, *, unused_since: float) -> bool:
        """Delete `blob` unless it was written or used (`put`) at `unused_since` or later,
        looked at again now: an import storing it meanwhile keeps it. True if deleted."""
        return _unlink_unused(blob.path, unused_since)

    def discard(self, sha256: str, *, unused_since: float) -> bool:
        """Delete the blob `sha256` as `remove` does (kept if stored again at
        `unused_since` or later); True if deleted, False if kept or not there."""
        return _unlink_unused(self.path(sha256), unused_since)


def _unlink_unused(path: Path, unused_since: float) -> bool:
    try:
        if path.stat().st_mtime >= unused_since:
            return False
        path.unlink()
    except FileNotFoundError:
        return False
    return True


def is_digest(text: str) -> bool:
    """True for a lower-case sha256 hex digest."""
    return len(text) == 64 and all(c in _HEX for c in text)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _syncfs(path: Path) -> bool:
    """Flush the whole file system holding `path` (Linux ``syncfs``); False where the
    call does not exist."""
    function = getattr(_libc(), "syncfs", None)
    if function is None:
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        if function(fd) != 0:
            error = ctypes.get_errno()
            raise OSError(error, os.strerror(error), str(path))
    finally:
        os.close(fd)
    return True


@functools.cache
def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:  # no C library to load (not a POSIX system)
        return None
