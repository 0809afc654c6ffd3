from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from medloop.exceptions import ConflictError, InvalidInputError, NotFoundError
from medloop.store import BlobStore
from medloop.store import blobs as blobs_module
from medloop.store.blobs import TEMPORARY_PREFIX, BlobState


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


def test_blobs_put_in_bulk_are_flushed_once_before_their_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An ingest writes a batch's blobs unflushed, then flushes them together: one
    syncfs on Linux, not one fsync per blob; a single `put` flushes its file and folders."""
    calls: list[str] = []
    monkeypatch.setattr(blobs_module, "_syncfs", lambda path: calls.append("syncfs") or True)
    monkeypatch.setattr(blobs_module, "_fsync", lambda path: calls.append(f"fsync {path.name}"))
    store = BlobStore(tmp_path)
    shas = [store.put(bytes([i]) * 10, durable=False) for i in range(5)]
    assert all(store.check(sha) is BlobState.OK for sha in shas)
    assert calls == [f"fsync {tmp_path.name}"] * len({sha[:2] for sha in shas})  # new folders
    calls.clear()
    store.sync(shas)
    assert calls == ["syncfs"]
    calls.clear()
    sha = store.put(b"one model")  # into a new shard folder, flushed into the root
    assert calls == [f"fsync {tmp_path.name}", f"fsync {sha}", f"fsync {sha[:2]}"]
    calls.clear()
    assert store.put(b"one model") == sha  # already there: flushed again all the same
    assert calls == [f"fsync {sha}", f"fsync {sha[:2]}"]


def test_without_syncfs_each_blob_and_folder_is_fsynced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flushed: list[Path] = []
    monkeypatch.setattr(blobs_module, "_syncfs", lambda path: False)  # not Linux
    monkeypatch.setattr(blobs_module, "_fsync", flushed.append)
    store = BlobStore(tmp_path)
    shas = [store.put(bytes([i]) * 10, durable=False) for i in range(3)]
    store.sync(shas)
    expected = {store.path(s) for s in shas} | {store.path(s).parent for s in shas}
    assert flushed[:3] == [tmp_path] * 3  # a new shard folder each
    assert set(flushed[3:]) == expected and len(flushed[3:]) == len(expected)


def test_the_real_syncfs_flushes(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    shas = [store.put(bytes([i]), durable=False) for i in range(2)]
    store.sync(shas)  # the C library's syncfs, or fsyncs where there is none
    assert [store.get(s) for s in shas] == [b"\x00", b"\x01"]


def test_storing_a_blob_again_marks_it_as_just_used(tmp_path: Path) -> None:
    """`store gc` deletes unused blobs by age: a blob an import stores again must look new,
    or gc could delete it between the import's flush and its commit."""
    store = BlobStore(tmp_path)
    sha = store.put(b"image bytes")
    old = time.time() - 3 * 24 * 3600
    os.utime(store.path(sha), (old, old))
    store.put(b"image bytes", durable=False)
    assert store.path(sha).stat().st_mtime > old + 24 * 3600


def test_check_tells_missing_from_damaged(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    sha = store.put(b"image bytes")
    assert store.check(sha) is BlobState.OK
    store.path(sha).write_bytes(b"image byt\x00s")
    assert store.check(sha) is BlobState.DAMAGED
    store.path(sha).unlink()
    assert store.check(sha) is BlobState.MISSING


def test_files_lists_blobs_and_unfinished_writes_and_remove_spares_fresh_ones(
    tmp_path: Path,
) -> None:
    store = BlobStore(tmp_path)
    kept, gone = store.put(b"kept"), store.put(b"gone")
    unfinished = store.path(kept).parent / f"{TEMPORARY_PREFIX}abc"
    unfinished.write_bytes(b"half a bl")
    (store.path(kept).parent / "notes.txt").write_text("not the store's")
    files = {f.path.name: f for folder in store.folders() for f in store.files(folder)}
    assert set(files) == {kept, gone, unfinished.name}
    assert files[unfinished.name].sha256 is None and files[kept].size == 4
    old = time.time() - 3600
    for path in (store.path(kept), store.path(gone)):
        os.utime(path, (old, old))
    cutoff = time.time() - 60
    store.put(b"kept", durable=False)  # stored again after it was listed
    assert not store.remove(files[kept], unused_since=cutoff)
    assert store.remove(files[gone], unused_since=cutoff)
    assert store.check(kept) is BlobState.OK and store.check(gone) is BlobState.MISSING
    assert not store.remove(files[gone], unused_since=cutoff)  # already gone
