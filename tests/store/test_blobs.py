from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from medloop.exceptions import InvalidInputError, NotFoundError
from medloop.store import BlobStore


def test_blobs_are_content_addressed_and_deduplicated(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path)
    sha = blobs.put(b"image bytes")
    assert sha == hashlib.sha256(b"image bytes").hexdigest()
    assert blobs.put(b"image bytes") == sha
    assert blobs.get(sha) == b"image bytes"
    assert len([p for p in tmp_path.rglob("*") if p.is_file()]) == 1


def test_bad_and_missing_digests(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path)
    with pytest.raises(InvalidInputError):
        blobs.get("../../etc/passwd")
    with pytest.raises(NotFoundError):
        blobs.get("0" * 64)
