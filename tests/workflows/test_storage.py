"""`verify_blobs` finds the rows whose blobs are missing or damaged; `collect_garbage`
finds the blobs no row names and deletes only those older than the grace period."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medloop.config import Settings
from medloop.store import repository as repo
from medloop.store.blobs import TEMPORARY_PREFIX, BlobState
from medloop.workflows import Workspace, ingest, storage
from medloop.workflows.audit import audit_log

HOUR = 3600.0


@pytest.fixture
def ws(tmp_path: Path) -> Iterator[Workspace]:
    workspace = Workspace.open(Settings(home=tmp_path / "home", secret_key="k" * 32))
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(4):
        Image.fromarray(np.full((4, 4), 40 * i, dtype=np.uint8)).save(folder / f"{i}.png")
    ingest.ingest_image_folder(workspace, folder=folder, project="x", classes=["a", "b"])
    yield workspace
    workspace.close()


def _images(ws: Workspace) -> dict[int, str]:
    with ws.db.session() as s:
        items = repo.items_frame(s, project_id=repo.get_project(s, name="x").id)
    return {int(i): str(sha) for i, sha in items["image_sha256"].items()}


def _age(ws: Workspace, sha: str, hours: float) -> None:
    then = time.time() - hours * HOUR
    os.utime(ws.blobs.path(sha), (then, then))


def test_verify_names_the_items_whose_blobs_are_missing_or_damaged(ws: Workspace) -> None:
    assert storage.verify_blobs(ws).problems == []
    (first, lost), (second, damaged) = list(_images(ws).items())[:2]
    ws.blobs.path(lost).unlink()
    ws.blobs.path(damaged).write_bytes(b"\x89PNG damaged")
    report = storage.verify_blobs(ws)
    assert (report.blobs, report.references, report.missing, report.damaged) == (4, 4, 1, 1)
    found = {(p.entity, p.entity_id, p.project, p.role, p.state) for p in report.problems}
    assert found == {
        ("item", first, "x", "image", BlobState.MISSING),
        ("item", second, "x", "image", BlobState.DAMAGED),
    }


def test_gc_lists_unnamed_blobs_and_deletes_only_those_past_the_grace(ws: Workspace) -> None:
    named = _images(ws)
    for sha in named.values():
        _age(ws, sha, 100)  # old, but named by a row: never deleted
    old, fresh, cached = (
        ws.blobs.put(b"old orphan"),
        ws.blobs.put(b"new orphan"),
        ws.blobs.put(b"grad-cam overlay"),
    )
    _age(ws, old, 30)
    _age(ws, cached, 30)
    pointer = ws.settings.model_dir / "x" / "v1.gradcam" / "3-predicted.sha256"
    pointer.parent.mkdir(parents=True)
    pointer.write_text(cached)
    unfinished = ws.blobs.path(old).parent / f"{TEMPORARY_PREFIX}x1"
    unfinished.write_bytes(b"half")
    then = time.time() - 30 * HOUR
    os.utime(unfinished, (then, then))

    listed = storage.collect_garbage(ws, grace_hours=24, actor="ops")
    assert {u.sha256 for u in listed.unused} == {old, fresh, None}
    assert (listed.files, listed.within_grace, listed.deleted) == (8, 1, 0)
    assert all(ws.blobs.check(s) is BlobState.OK for s in (old, fresh)) and unfinished.exists()
    assert audit_log(ws, action="store.gc").entries == []

    deleted = storage.collect_garbage(ws, grace_hours=24, delete=True, actor="ops")
    assert {u.sha256 for u in deleted.unused if u.deleted} == {old, None}
    assert (deleted.deleted, deleted.deleted_bytes) == (2, len(b"old orphan") + len(b"half"))
    assert ws.blobs.check(old) is BlobState.MISSING and not unfinished.exists()
    for sha in (fresh, cached, *named.values()):
        assert ws.blobs.check(sha) is BlobState.OK
    (entry,) = audit_log(ws, action="store.gc").entries
    assert entry.actor == "ops"
    assert entry.detail["sha256"] == [old] and entry.detail["unfinished_writes"] == 1
    assert storage.verify_blobs(ws).problems == []
