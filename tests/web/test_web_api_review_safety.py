"""The JSON API's review as safe as the pages: a two-class model's suggestion with
P(positive class), its cut and its model; an item's final-label history; a signed final
label corrected with a reason (POST /api/review/{item}/correct), refused as the page
refuses it; a refused decision names who signed and when."""

from __future__ import annotations

import pandas as pd
from test_web_pages import sign_in
from test_web_review import crowd_with_boxes
from web_support import Site

from medloop.store import assignments
from medloop.store import repository as repo
from medloop.workflows.audit import audit_log
from medloop.workflows.loop import training_targets


def test_the_review_item_names_the_model_and_the_queue_its_cut(site: Site) -> None:
    crowd_with_boxes(site)
    dora = site.headers("dora")
    item = site.client.get("/api/review/queue", headers=dora).json()[0]["item_id"]
    assert site.client.get(f"/api/review/{item}", headers=dora).json()["model"] is None
    with site.ws.db.session() as s:
        project = repo.get_project(s, name="chest")
        model = repo.add_model_version(
            s,
            project_id=project.id,
            network="cnn",
            checkpoint_path=str(site.ws.settings.model_dir / "chest" / "v1.pt"),
            n_train=24,
            metrics={"threshold": 0.8, "test_auc": 0.91, "test_acc": 0.85, "test_n": 6},
        )
        probabilities = pd.DataFrame([[0.26, 0.74]], index=[item], columns=[0, 1])
        repo.save_predictions(s, model_version_id=model.id, probabilities=probabilities)
    queue = site.client.get("/api/review/queue", headers=dora, params={"limit": 500}).json()
    entry = next(e for e in queue if e["item_id"] == item)
    assert entry["model_label"] == "normal", "P(pneumonia) 0.74 is below the cut 0.8"
    assert (entry["positive_class"], entry["model_positive"], entry["model_threshold"]) == (
        "pneumonia",
        0.74,
        0.8,
    )
    detail = site.client.get(f"/api/review/{item}", headers=dora).json()
    summary = detail["model"]
    assert (summary["version"], summary["n_train"], summary["threshold"]) == (1, 24, 0.8)
    assert summary["positive_class"] == "pneumonia" and summary["test_n"] == 6
    assert (summary["test_auc"], summary["test_accuracy"]) == (0.91, 0.85)
    assert summary["labels_since"] == 0 and summary["trained_at"]
    assert detail["history"] == []
    other = next(e["item_id"] for e in queue if e["item_id"] != item)
    signed = site.client.post(f"/api/review/{other}", headers=dora, json={"label": "pneumonia"})
    assert signed.status_code == 201
    detail = site.client.get(f"/api/review/{item}", headers=dora).json()
    assert detail["model"]["labels_since"] == 1, "signed since: the model has not learnt it"


def test_a_final_label_is_corrected_through_the_api_with_its_history(site: Site) -> None:
    crowd_with_boxes(site)
    dora, adam, alice = site.headers("dora"), site.headers("adam"), site.headers("alice")
    item = site.client.get("/api/review/queue", headers=dora).json()[0]["item_id"]
    url = f"/api/review/{item}/correct"
    reason = "slipped on the key; consolidation on a second look"
    body = {"label": "pneumonia", "replaces": "normal", "reason": reason}
    early = site.client.post(url, headers=dora, json=body)
    assert early.status_code == 409 and "no final label to correct" in early.json()["detail"]
    assert site.client.post(
        f"/api/review/{item}", headers=dora, json={"label": "normal"}
    ).is_success

    assert site.client.post(url, headers=alice, json=body).status_code == 403
    blank = site.client.post(url, headers=dora, json=body | {"reason": "  "})
    assert blank.status_code == 422 and "needs a reason" in blank.json()["detail"]
    same = site.client.post(url, headers=dora, json=body | {"label": "normal"})
    assert same.status_code == 422 and "already 'normal'" in same.json()["detail"]
    done = site.client.post(url, headers=adam, json=body)
    assert done.status_code == 201, done.text
    assert done.json() == {"item_id": item, "project": "chest", "label": "pneumonia"}
    stale = site.client.post(url, headers=dora, json=body | {"reason": "again"})
    assert stale.status_code == 409 and "changed it meanwhile" in stale.json()["detail"]
    assert "signed by adam at" in stale.json()["detail"]

    history = site.client.get(f"/api/review/{item}", headers=dora).json()["history"]
    assert [(h["label"], h["by"], h["replaced"], h["reason"]) for h in history] == [
        ("normal", "dora", None, None),
        ("pneumonia", "adam", "normal", reason),
    ]
    (entry,) = audit_log(site.ws, action="label.final.corrected").entries
    assert entry.actor == "adam" and entry.detail["reason"] == reason
    assert training_targets(site.ws, project="chest").loc[item].tolist() == [0.0, 1.0]

    # a browser's session cookie must come with its CSRF token, as for every write
    csrf = sign_in(site.client, "dora")
    back = {"label": "normal", "replaces": "pneumonia", "reason": "the first look was right"}
    assert site.client.post(url, json=back).status_code == 403
    with site.ws.db.session() as s:
        assert len(assignments.final_label_history(s, item_id=item)) == 2
    fixed = site.client.post(url, json=back, headers={"X-CSRF-Token": csrf})
    assert fixed.status_code == 201 and fixed.json()["label"] == "normal"


def test_a_refused_decision_names_who_signed_and_when(site: Site) -> None:
    crowd_with_boxes(site)
    dora, adam = site.headers("dora"), site.headers("adam")
    item = site.client.get("/api/review/queue", headers=dora).json()[0]["item_id"]
    first = site.client.post(f"/api/review/{item}", headers=dora, json={"label": "normal"})
    again = site.client.post(f"/api/review/{item}", headers=dora, json={"label": "normal"})
    assert first.status_code == again.status_code == 201, "her own decision, sent twice"
    taken = site.client.post(f"/api/review/{item}", headers=adam, json={"label": "pneumonia"})
    detail = taken.json()["detail"]
    assert taken.status_code == 409 and "already has a final label: 'normal'" in detail
    assert "signed by dora at 20" in detail and " UTC" in detail
