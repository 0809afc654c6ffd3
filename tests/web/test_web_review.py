"""Doctor review evidence and actions: estimated reliability, fused boxes, the Grad-CAM
toggle and flags (API and pages)."""

from __future__ import annotations

import re

import pandas as pd
import pytest
from sqlalchemy import select
from test_web_pages import sign_in
from web_support import Site

from medloop.store import assignments, flags
from medloop.store import repository as repo
from medloop.store.models import AuditEntry
from medloop.workflows import aggregate, record_decisions

ALICE_BOX = [0.1, 0.1, 0.4, 0.4]
BOB_BOX = [0.12, 0.12, 0.4, 0.4]  # IoU 0.82 with alice's: one finding


def crowd_with_boxes(site: Site) -> None:
    """alice is right on gold and boxes every ordinary item; bob is wrong on gold and
    boxes a little lower right; then majority-vote consensus."""
    for name, box in (("alice", ALICE_BOX), ("bob", BOB_BOX)):
        headers = site.headers(name)
        while (response := site.client.get("/api/tasks/next", headers=headers)).status_code == 200:
            task = response.json()
            truth = site.gold_items.get(task["item_id"])
            if truth is not None:
                body: dict[str, object] = {"label": truth if name == "alice" else 1 - truth}
            else:
                body = {"label": task["item_id"] % 2 if name == "alice" else 0, "box": box}
            answered = site.client.post(
                f"/api/tasks/{task['task_id']}/answer", headers=headers, json=body
            )
            assert answered.status_code == 201, answered.text
    aggregate(site.ws, project="chest", method="majority_vote")


def test_detail_has_estimated_reliability_and_the_reliability_weighted_fused_box(
    any_site: Site,
) -> None:
    site = any_site
    crowd_with_boxes(site)
    headers = site.headers("dora")
    item = site.client.get("/api/review/queue", headers=headers).json()[0]["item_id"]
    detail = site.client.get(f"/api/review/{item}", headers=headers).json()
    assert detail["reliability_method"] == "dawid_skene"
    assert detail["gradcam_url"] is None, "no model yet"
    by_worker = {a["worker"]: a for a in detail["answers"]}
    alice, bob = by_worker["alice"], by_worker["bob"]
    for a in (alice, bob):
        assert 0 <= a["estimated_low"] <= a["estimated_accuracy"] <= a["estimated_high"] <= 1
    assert alice["estimated_accuracy"] > bob["estimated_accuracy"]
    assert alice["gold_accuracy"] == 1.0 and bob["gold_accuracy"] == 0.0

    (fused,) = detail["fused_boxes"]
    assert fused["annotators"] == 2 and fused["boxes"] == 2
    assert fused["confidence"] == pytest.approx(1.0), "both annotators drew it"
    w_a, w_b = alice["estimated_accuracy"], bob["estimated_accuracy"]
    for got, a, b in zip(fused["box"], ALICE_BOX, BOB_BOX, strict=True):
        assert got == pytest.approx((w_a * a + w_b * b) / (w_a + w_b), abs=1e-3)
    assert abs(fused["box"][0] - ALICE_BOX[0]) < abs(fused["box"][0] - BOB_BOX[0]), (
        "the more reliable annotator pulls the fused box"
    )


def test_no_boxes_no_fused_box(site: Site) -> None:
    headers = site.headers("alice")
    task = site.client.get("/api/tasks/next", headers=headers).json()
    site.client.post(f"/api/tasks/{task['task_id']}/answer", headers=headers, json={"label": 1})
    detail = site.client.get(f"/api/review/{task['item_id']}", headers=site.headers("dora"))
    assert detail.status_code == 200
    assert detail.json()["fused_boxes"] == []
    assert detail.json()["answers"][0]["estimated_accuracy"] is not None


def audit_actions(site: Site, item: int) -> list[str]:
    with site.ws.db.session() as s:
        rows = s.scalars(
            select(AuditEntry.action)
            .where(AuditEntry.entity == "item", AuditEntry.entity_id == str(item))
            .order_by(AuditEntry.id)
        )
        return list(rows)


def test_flag_through_the_api(any_site: Site) -> None:
    site = any_site
    crowd_with_boxes(site)
    doctor, admin = site.headers("dora"), site.headers("adam")
    queue = site.client.get("/api/review/queue", headers=doctor).json()
    item, other = queue[0]["item_id"], queue[1]["item_id"]
    assert queue[0]["flag_reason"] is None
    url = f"/api/review/{item}/flag"
    assert site.client.post(url, json={"reason": "x"}).status_code == 401
    assert (
        site.client.post(url, headers=site.headers("alice"), json={"reason": "x"}).status_code
        == 403
    )
    for body in (
        {},
        {"reason": ""},
        {"reason": "   "},
        {"reason": "x" * 201},
        {"reason": "bad\x00byte"},
        {"reason": 3},
        {"reason": "ok", "extra": 1},
    ):
        response = site.client.post(url, headers=doctor, json=body)
        assert response.status_code == 422, (body, response.text)
    control = site.client.post(url, headers=doctor, json={"reason": "bad\x00byte"})
    assert "control character" in control.text  # not "at most 200 characters"
    assert (
        site.client.post(
            "/api/review/987654/flag", headers=doctor, json={"reason": "x"}
        ).status_code
        == 404
    )
    assert "review.flag" not in audit_actions(site, item), "nothing stored for refused flags"

    flagged = site.client.post(url, headers=doctor, json={"reason": "  needs a\nsecond opinion "})
    assert flagged.status_code == 201, flagged.text
    body = flagged.json()
    assert (body["item_id"], body["project"], body["flagged_by"]) == (item, "chest", "dora")
    assert body["reason"] == "needs a second opinion"
    again = site.client.post(url, headers=admin, json={"reason": "image unreadable"})
    assert again.status_code == 409

    detail = site.client.get(f"/api/review/{item}", headers=admin).json()
    assert detail["flag"]["reason"] == "needs a second opinion"
    assert detail["flag"]["flagged_by"] == "dora" and detail["final_label"] is None
    queue = site.client.get("/api/review/queue", headers=admin).json()
    marks = {e["item_id"]: e["flag_reason"] for e in queue}
    assert marks[item] == "needs a second opinion" and marks[other] is None
    assert [e["item_id"] for e in queue][:2] == [item, other], "flags keep the ranking"
    with site.ws.db.session() as s:
        assert item not in assignments.final_labels_for(s, item_ids=[item]), "never a label"
    assert audit_actions(site, item).count("review.flag") == 1
    with site.ws.db.session() as s:
        detail = s.scalar(select(AuditEntry.detail).where(AuditEntry.action == "review.flag"))
    assert detail["reason"] == "needs a second opinion", "the audit trail says why"
    no_flag = f"/api/review/{other}/flag"
    assert site.client.delete(no_flag).status_code == 401
    assert site.client.delete(no_flag, headers=site.headers("alice")).status_code == 403
    assert site.client.delete(no_flag, headers=doctor).status_code == 409

    # the final label resolves the flag; a decided item cannot be flagged
    decided = site.client.post(f"/api/review/{item}", headers=admin, json={"label": "normal"})
    assert decided.status_code == 201
    with site.ws.db.session() as s:
        assert flags.open_flags_for(s, item_ids=[item]) == {}
    assert audit_actions(site, item)[-1] == "review.unflag"
    assert site.client.get(f"/api/review/{item}", headers=admin).json()["flag"] is None
    assert site.client.post(url, headers=doctor, json={"reason": "late"}).status_code == 409


def test_review_page_shows_reliability_fused_box_overlay_toggle_and_flags(site: Site) -> None:
    crowd_with_boxes(site)
    csrf = sign_in(site.client, "dora")
    queue = site.client.get("/review")
    first, second = (int(i) for i in re.findall(r'href="/review/(\d+)"', queue.text)[:2])
    page = site.client.get(f"/review/{first}").text

    # reliability columns, explained
    header = re.search(r"<thead>(.*?)</thead>", page, re.S)
    assert header is not None
    titles = re.findall(r'<abbr title="([^"]+)">([^<]+)</abbr>', header.group(1))
    assert [name for _, name in titles] == ["Gold", "Agrees", "Est."]
    assert "dawid-skene" in titles[2][0] and "95% interval" in titles[2][0]
    assert re.search(r'<td class="estimate">\d+%<br><small>\d+\u2013\d+%</small></td>', page)
    # crowd boxes and the fused one, drawn apart
    assert page.count('class="box crowd"') == 2 and page.count('class="box fused"') == 1
    assert page.count('class="drew-box"') == 2
    assert "fused 100%" in page
    # no model: a note instead of the toggle
    assert 'id="gradcam-none"' in page and 'id="gradcam-toggle"' not in page

    with site.ws.db.session() as s:
        project = repo.get_project(s, name="chest")
        repo.add_model_version(
            s,
            project_id=project.id,
            network="cnn",
            checkpoint_path=str(site.ws.settings.model_dir / "chest" / "v1.pt"),
            n_train=1,
            metrics={},
        )
    page = site.client.get(f"/review/{first}").text
    assert 'id="gradcam-toggle"' in page and 'data-toggle-key="g"' in page
    assert f'data-src="/api/review/{first}/gradcam.png"' in page
    assert 'id="gradcam-class"' in page and 'id="gradcam-none"' not in page

    # flag from the page: CSRF needed, a reason needed, then on to the next item
    assert f'action="/review/{first}/flag"' in page and 'name="reason" required' in page
    url = f"/review/{first}/flag"
    assert site.client.post(url, data={"reason": "image unreadable"}).status_code == 403
    assert site.client.post(url, data={"csrf_token": csrf}).status_code == 422
    blank = site.client.post(url, data={"csrf_token": csrf, "reason": "  "})
    assert blank.status_code == 422 and "reason" in blank.text
    done = site.client.post(
        url, data={"csrf_token": csrf, "reason": "image unreadable"}, follow_redirects=False
    )
    assert done.status_code == 303 and done.headers["location"] == f"/review/{second}"
    flagged_page = site.client.get(f"/review/{first}").text
    assert "Flagged by dora" in flagged_page and "image unreadable" in flagged_page
    assert 'class="flag"' not in flagged_page, "no second flag form"
    assert 'class="choices"' in flagged_page, "a flagged item can still be decided"
    queue = site.client.get("/review").text
    row = re.search(
        rf'<tr class="flagged-row">\s*<td>1</td>\s*<td><a href="/review/{first}"', queue
    )
    assert row, "the flagged item keeps its rank and is marked"
    assert "flagged: image unreadable" in queue
    twice = site.client.post(url, data={"csrf_token": csrf, "reason": "again"})
    assert twice.status_code == 409
    # a flag can be taken back: closed (audited), and the item may be flagged again
    assert f'action="/review/{first}/unflag"' in flagged_page
    unflag = f"/review/{first}/unflag"
    assert site.client.post(unflag).status_code == 403  # no CSRF token
    back = site.client.post(unflag, data={"csrf_token": csrf}, follow_redirects=False)
    assert back.status_code == 303 and back.headers["location"] == f"/review/{first}"
    unflagged = site.client.get(f"/review/{first}").text
    assert "Flagged by" not in unflagged and 'class="flag"' in unflagged
    assert site.client.post(unflag, data={"csrf_token": csrf}).status_code == 409
    actions = audit_actions(site, first)
    assert actions.index("review.unflag") > actions.index("review.flag")
    again = site.client.post(
        url, data={"csrf_token": csrf, "reason": "again"}, follow_redirects=False
    )
    assert again.status_code == 303
    # deciding another item moves on to the first unflagged one, past the flagged item
    decided = site.client.post(
        f"/review/{second}", data={"label": "normal", "csrf_token": csrf}, follow_redirects=False
    )
    assert decided.status_code == 303 and decided.headers["location"] not in (
        f"/review/{first}",
        f"/review/{second}",
    )


def test_a_final_label_from_outside_the_web_also_closes_the_flag(site: Site) -> None:
    crowd_with_boxes(site)
    doctor = site.headers("dora")
    item = site.client.get("/api/review/queue", headers=doctor).json()[0]["item_id"]
    flagged = site.client.post(f"/api/review/{item}/flag", headers=doctor, json={"reason": "x"})
    assert flagged.status_code == 201
    record_decisions(site.ws, project="chest", decisions=pd.Series({item: 1}), doctor="dora")
    with site.ws.db.session() as s:
        assert flags.open_flags_for(s, item_ids=[item]) == {}
    assert audit_actions(site, item)[-2:] == ["label.final", "review.unflag"]


def test_a_web_decision_is_recorded_in_the_current_round(site: Site) -> None:
    crowd_with_boxes(site)
    with site.ws.db.session() as s:
        project = repo.get_project(s, name="chest")
        items = repo.items_frame(s, project_id=project.id)
        repo.create_tasks(
            s, project_id=project.id, item_ids=[int(items.index[-1])], required_answers=1, round=3
        )
        assert repo.latest_round(s, project_id=project.id) == 3
    doctor = site.headers("dora")
    item = site.client.get("/api/review/queue", headers=doctor).json()[0]["item_id"]
    decided = site.client.post(f"/api/review/{item}", headers=doctor, json={"label": "pneumonia"})
    assert decided.status_code == 201, decided.text
    with site.ws.db.session() as s:
        entry = s.scalars(
            select(AuditEntry).where(
                AuditEntry.action == "label.final", AuditEntry.entity_id == str(item)
            )
        ).one()
    assert entry.detail["round"] == 3
