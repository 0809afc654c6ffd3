"""Clinical safety of the doctor's review pages: the model's suggestion is shown with the
cut it decides at and the model it comes from, a signed final label can be corrected
(with a reason, kept in its history and the audit log, learnt by the next model), and a
form sent twice is not reported as another doctor's decision."""

from __future__ import annotations

import re

import pandas as pd
from sqlalchemy import select
from test_web_pages import sign_in
from test_web_review import crowd_with_boxes
from web_support import Site

from medloop.store import assignments
from medloop.store import repository as repo
from medloop.store.models import AuditEntry
from medloop.workflows.loop import training_targets

CLASSES = ["normal", "pneumonia"]


def first_in_queue(site: Site) -> int:
    queue = site.client.get("/review")
    return int(re.findall(r'href="/review/(\d+)"', queue.text)[0])


def test_a_binary_models_suggestion_comes_with_its_cut_and_its_model(site: Site) -> None:
    crowd_with_boxes(site)
    csrf = sign_in(site.client, "dora")
    item = first_in_queue(site)
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
    queue = site.client.get("/review").text
    row = re.search(rf'<a href="/review/{item}">.*?</tr>', queue, re.S)
    assert row is not None
    # P(pneumonia) 74% is below the tuned cut: the model says "normal", and says why
    assert "normal <small>(P(pneumonia) 74%, cut 80%)</small>" in row.group(0)
    assert "normal (26%)" not in row.group(0), "not a 26% confidence in what it suggests"
    page = site.client.get(f"/review/{item}").text
    suggestion = re.search(r'<dd id="model-suggestion">(.*?)</dd>', page, re.S)
    assert suggestion is not None
    text = " ".join(re.sub(r"<[^>]+>", " ", suggestion.group(1)).split())
    assert text.startswith("normal P(pneumonia) 74.0%, below the cut of 80.0%"), text
    assert "Model v1, trained" in text and "on 24 images" in text
    assert "held-out test AUC 0.91, accuracy 85% (6 images)" in text
    assert "Model suggestion <small>(v1, not a diagnosis)</small>" in page
    # a label signed after the model was trained: the page says the model has not learnt it
    site.client.post(f"/review/{item}", data={"label": "pneumonia", "csrf_token": csrf})
    other = first_in_queue(site)
    behind = site.client.get(f"/review/{other}").text
    assert "1 final label signed since it was trained: it has not learnt from it." in behind


def test_a_signed_label_is_corrected_with_a_reason_and_the_next_model_learns_it(
    site: Site,
) -> None:
    crowd_with_boxes(site)
    csrf = sign_in(site.client, "dora")
    item = first_in_queue(site)
    signed = site.client.post(
        f"/review/{item}", data={"label": "normal", "csrf_token": csrf}, follow_redirects=False
    )
    assert signed.status_code == 303
    page = site.client.get(f"/review/{item}").text
    assert 'id="correct-final"' in page and f'action="/review/{item}/correct"' in page
    assert re.search(r'id="signed">Signed by dora on \d{4}-\d\d-\d\d \d\d:\d\d UTC', page)

    url = f"/review/{item}/correct"
    form = {"csrf_token": csrf, "label": "pneumonia", "replaces": "normal"}
    assert (
        site.client.post(url, data={**form, "reason": "x"} | {"csrf_token": ""}).status_code == 403
    )
    blank = site.client.post(url, data={**form, "reason": "  "})
    assert blank.status_code == 422 and "needs a reason" in blank.text
    reason = "slipped on the key; consolidation on the second look"
    done = site.client.post(url, data={**form, "reason": reason}, follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == f"/review/{item}"
    with site.ws.db.session() as s:
        assert assignments.final_labels_for(s, item_ids=[item]) == {item: 1}
        entry = s.scalars(
            select(AuditEntry).where(
                AuditEntry.action == "label.final.corrected", AuditEntry.entity_id == str(item)
            )
        ).one()
    assert entry.actor == "dora" and entry.detail["reason"] == reason
    assert (entry.detail["from_class"], entry.detail["class"]) == ("normal", "pneumonia")
    targets = training_targets(site.ws, project="chest")
    assert targets.loc[item].tolist() == [0.0, 1.0], "the next model trains on the correction"

    page = site.client.get(f"/review/{item}").text
    assert "Final label: <strong>pneumonia</strong>" in page
    history = re.search(r'<ol class="history" id="label-history">(.*?)</ol>', page, re.S)
    assert history is not None
    assert re.findall(r"<li>(\w+): dora", history.group(1)) == ["normal", "pneumonia"]
    assert f"corrected from normal: {reason}" in history.group(1)
    # a correction based on what is no longer the final label is refused
    stale = site.client.post(url, data={**form, "reason": "again"})
    assert stale.status_code == 409 and "changed it meanwhile" in stale.text
    with site.ws.db.session() as s:
        assert len(assignments.final_label_history(s, item_id=item)) == 2


def test_a_decision_sent_twice_is_not_said_to_be_another_doctors(site: Site) -> None:
    crowd_with_boxes(site)
    csrf = sign_in(site.client, "dora")
    item = first_in_queue(site)
    form = {"label": "normal", "csrf_token": csrf}
    first = site.client.post(f"/review/{item}", data=form, follow_redirects=False)
    again = site.client.post(f"/review/{item}", data=form, follow_redirects=False)
    assert first.status_code == again.status_code == 303
    assert "taken" not in again.headers["location"], "her own decision, saved once"
    with site.ws.db.session() as s:
        assert len(assignments.final_label_history(s, item_id=item)) == 1
    # another reviewer deciding the same item is told who signed it, and when
    site.client.cookies.clear()
    csrf = sign_in(site.client, "adam")
    taken = site.client.post(
        f"/review/{item}", data={"label": "pneumonia", "csrf_token": csrf}, follow_redirects=True
    )
    assert re.search(
        r'id="taken">dora signed this item at \d{4}-\d\d-\d\d \d\d:\d\d UTC', taken.text
    )
