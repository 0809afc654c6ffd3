"""Content-addressed blob storage: files named by their sha256 under a root folder."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from medloop.exceptions import InvalidInputError, NotFoundError


class BlobStore:
    """Stores bytes at `<root>/<sha[:2]>/<sha>`; writing the same bytes twice is a no-op."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, sha256: str) -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise InvalidInputError(f"not a sha256 digest: {sha256!r}")
        return self.root / sha256[:2] / sha256

    def put(self, data: bytes) -> str:
        """Store `data` and return its sha256 hex digest (atomic write)."""
        sha256 = hashlib.sha256(data).hexdigest()
        target = self.path(sha256)
        if target.exists():
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
        target = self.path(sha256)
        if not target.exists():
            raise NotFoundError(f"blob {sha256} not found under {self.root}")
        return target.read_bytes()

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).exists()
