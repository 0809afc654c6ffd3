"""Content-addressed blob storage: files named by their sha256 under a root folder."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from medloop.exceptions import ConflictError, InvalidInputError, NotFoundError


class BlobStore:
    """Stores bytes at `<root>/<sha[:2]>/<sha>`; writing the same bytes twice is a no-op."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, sha256: str) -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise InvalidInputError(f"not a sha256 digest: {sha256!r}")
        return self.root / sha256[:2] / sha256

    def put(self, data: bytes) -> str:
        """Store `data` and return its sha256 hex digest (atomic write); a stored copy
        that was damaged since is replaced."""
        sha256 = hashlib.sha256(data).hexdigest()
        target = self.path(sha256)
        if target.exists() and hashlib.sha256(target.read_bytes()).hexdigest() == sha256:
            return sha256
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return sha256

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
