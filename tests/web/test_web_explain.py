"""GET /api/review/{item_id}/gradcam.png: reviewers only, 404 without a model, cached."""

from __future__ import annotations

import numpy as np
from web_support import Site

from medloop.ingest import decode_png
from medloop.learning.train import TrainConfig, train_classifier
from medloop.store import repository as repo
from medloop.types import Split
from medloop.workflows import load_images


def add_model(site: Site) -> list[int]:
    """Train a tiny model on project 'chest' and store it as version 1; return item ids."""
    ws = site.ws
    with ws.db.session() as s:
        project = repo.get_project(s, name="chest")
        items = repo.items_frame(s, project_id=project.id)
    images = load_images(ws, shas=items["image_sha256"].tolist(), channels=1)
    labels = items["reference_label"].to_numpy(dtype=int)
    train = (items["split"] == Split.TRAIN).to_numpy()
    checkpoint = ws.settings.model_dir / "chest" / "v1.pt"
    train_classifier(
        images[train],
        labels[train],
        images[~train],
        labels[~train],
        n_classes=2,
        config=TrainConfig(max_epochs=1, batch_size=8, num_threads=1),
        checkpoint_path=checkpoint,
    )
    with ws.db.session() as s:
        project = repo.get_project(s, name="chest")
        repo.add_model_version(
            s,
            project_id=project.id,
            network="cnn",
            checkpoint_path=str(checkpoint),
            n_train=int(train.sum()),
            metrics={},
        )
    return [int(i) for i in items.index]


def test_gradcam_overlay_for_reviewers_only(site: Site) -> None:
    with site.ws.db.session() as s:
        project = repo.get_project(s, name="chest")
        item = int(repo.items_frame(s, project_id=project.id).index[0])
    url = f"/api/review/{item}/gradcam.png"
    doctor = site.headers("dora")
    assert site.client.get(url).status_code == 401
    assert site.client.get(url, headers=site.headers("alice")).status_code == 403
    missing = site.client.get(url, headers=doctor)
    assert missing.status_code == 404 and "no trained model" in missing.json()["detail"]

    add_model(site)
    response = site.client.get(url, headers=doctor)
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    picture = decode_png(response.content)
    assert picture.ndim == 3 and picture.shape[2] == 3 and picture.shape[0] >= 224
    # it shows the image: audited like the image itself, and never kept by the browser
    assert response.headers["cache-control"] == "no-store"
    with site.ws.db.session() as s:
        log = repo.audit_frame(s)
    reads = log[log["action"] == "item.gradcam"]
    assert reads[["actor", "entity_id"]].values.tolist() == [["dora", str(item)]]
    pointers = list((site.ws.settings.model_dir / "chest" / "v1.gradcam").glob("*.sha256"))
    assert [p.name for p in pointers] == [f"{item}-predicted.sha256"]
    assert site.ws.blobs.exists(pointers[0].read_text())
    again = site.client.get(url, headers=site.headers("adam"))  # admins may look too
    assert again.status_code == 200 and again.content == response.content

    named = site.client.get(url, params={"label": "pneumonia"}, headers=doctor)
    assert named.status_code == 200 and decode_png(named.content).shape == picture.shape
    bad = site.client.get(url, params={"label": "fracture"}, headers=doctor)
    assert bad.status_code == 422 and "fracture" in bad.json()["detail"]
    assert site.client.get("/api/review/999999/gradcam.png", headers=doctor).status_code == 404


def test_cached_overlay_survives_a_lost_blob(site: Site) -> None:
    item = add_model(site)[1]
    url = f"/api/review/{item}/gradcam.png"
    first = site.client.get(url, headers=site.headers("dora"))
    pointer = site.ws.settings.model_dir / "chest" / "v1.gradcam" / f"{item}-predicted.sha256"
    site.ws.blobs.path(pointer.read_text()).unlink()
    second = site.client.get(url, headers=site.headers("dora"))
    assert second.status_code == 200 and second.content == first.content
    assert np.array_equal(decode_png(second.content), decode_png(first.content))
