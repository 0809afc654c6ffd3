from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from medloop.exceptions import ConflictError, InvalidInputError, NotFoundError
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


def test_a_damaged_blob_is_an_error_and_storing_the_bytes_again_repairs_it(
    tmp_path: Path,
) -> None:
    blobs = BlobStore(tmp_path)
    sha = blobs.put(b"image bytes")
    blobs.path(sha).write_bytes(b"image byt\x00s")  # a bit flipped on disk
    with pytest.raises(ConflictError, match="is damaged"):
        blobs.get(sha)
    assert blobs.put(b"image bytes") == sha  # ingesting the source again
    assert blobs.get(sha) == b"image bytes"
