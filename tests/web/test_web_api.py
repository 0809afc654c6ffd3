"""The JSON API as outside checks use it: auth, tasks, images, review, error codes."""

from __future__ import annotations

import io
import re
from collections import Counter

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, func, select
from web_support import CLASSES, PASSWORD, Site, open_tasks

from medloop.store import repository as repo
from medloop.store.models import Answer, AnswerBox, AuditEntry, LoginFailure, Task
from medloop.types import LabelKind
from medloop.web import create_app
from medloop.web.security import LoginLimiter, LoginRefused
from medloop.workflows import aggregate


def answer_count(site: Site, task_id: int | None = None) -> int:
    with site.ws.db.session() as s:
        query = select(func.count()).select_from(Answer)
        if task_id is not None:
            query = query.where(Answer.task_id == task_id)
        return int(s.scalar(query) or 0)


def task_row(site: Site, task_id: int) -> Task:
    with site.ws.db.session() as s:
        task = s.get(Task, task_id)
        assert task is not None
        return task


def test_health_needs_no_login(site: Site) -> None:
    response = site.client.get("/api/health")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def test_login_gives_a_working_token_and_rejects_bad_passwords(site: Site) -> None:
    ok = site.client.post("/api/auth/login", json={"username": "alice", "password": PASSWORD})
    assert ok.status_code == 200
    body = ok.json()
    assert body["role"] == "annotator" and body["token_type"] == "bearer"
    me = site.client.get("/api/me", headers={"Authorization": f"Bearer {body['token']}"})
    assert me.json() == {"username": "alice", "role": "annotator"}
    for username, password in (("alice", "wrong password"), ("nobody", PASSWORD)):
        bad = site.client.post("/api/auth/login", json={"username": username, "password": password})
        assert bad.status_code == 401
    assert site.client.post("/api/auth/login", json={"username": "alice"}).status_code == 422


def test_api_logout_revokes_the_bearer_token_only(site: Site) -> None:
    first, second = site.headers("alice"), site.headers("alice")
    assert site.client.post("/api/auth/logout", headers=first).status_code == 204
    assert site.client.get("/api/me", headers=first).status_code == 401
    assert site.client.post("/api/auth/logout", headers=first).status_code == 401
    assert site.client.get("/api/me", headers=second).status_code == 200  # other sessions live


def test_login_is_rate_limited_per_username(site: Site) -> None:
    for _ in range(5):
        response = site.client.post(
            "/api/auth/login", json={"username": "bob", "password": "guess-guess"}
        )
        assert response.status_code == 401
    blocked = site.client.post("/api/auth/login", json={"username": "bob", "password": PASSWORD})
    assert blocked.status_code == 429
    assert int(blocked.headers["Retry-After"]) > 0
    # other people are not locked out
    assert (
        site.client.post(
            "/api/auth/login", json={"username": "alice", "password": PASSWORD}
        ).status_code
        == 200
    )


def test_no_or_bad_token_is_401_everywhere(site: Site) -> None:
    token = site.token("alice")
    tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    for headers in (
        {},
        {"Authorization": "Bearer nonsense"},
        {"Authorization": f"Bearer {tampered}"},
    ):
        for method, url in (
            ("GET", "/api/tasks/next"),
            ("POST", "/api/tasks/1/answer"),
            ("GET", "/api/items/1/image"),
            ("GET", "/api/review/queue"),
            ("POST", "/api/review/1"),
        ):
            response = site.client.request(method, url, headers=headers, json={"label": "normal"})
            assert response.status_code == 401, (method, url, headers)
            assert response.headers["WWW-Authenticate"] == "Bearer"


def test_roles_are_isolated(site: Site) -> None:
    annotator = site.headers("alice")
    for method, url in (
        ("GET", "/api/review/queue"),
        ("GET", "/api/review/1"),
        ("POST", "/api/review/1"),
    ):
        response = site.client.request(method, url, headers=annotator, json={"label": "normal"})
        assert response.status_code == 403, url
    doctor = site.headers("dora")
    assert site.client.get("/api/tasks/next", headers=doctor).status_code == 403
    assert (
        site.client.post(
            "/api/tasks/1/answer", headers=doctor, json={"label": "normal"}
        ).status_code
        == 403
    )


def test_next_task_shows_only_what_an_annotator_may_see(site: Site) -> None:
    headers = site.headers("alice")
    response = site.client.get("/api/tasks/next", headers=headers)
    assert response.status_code == 200
    task = response.json()
    assert set(task) == {"task_id", "item_id", "image_url", "choices", "project"}
    assert task["choices"] == CLASSES
    image = site.client.get(task["image_url"], headers=headers)
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    with site.ws.db.session() as s:
        sha = repo.get_item(s, item_id=task["item_id"]).image_sha256
    assert image.content == site.ws.blobs.get(sha)
    assert image.headers["X-Content-Type-Options"] == "nosniff"


def test_annotators_cannot_open_items_never_put_to_them(site: Site) -> None:
    with site.ws.db.session() as s:
        items = repo.items_frame(s, project_id=repo.get_project(s, name="chest").id)
        tasks = repo.tasks_frame(s, project_id=repo.get_project(s, name="chest").id)
    hidden = int(items.index[items["split"] == "val"][0])
    assert hidden not in set(tasks["item"])
    assert (
        site.client.get(f"/api/items/{hidden}/image", headers=site.headers("alice")).status_code
        == 404
    )
    assert (
        site.client.get(f"/api/items/{hidden}/image", headers=site.headers("dora")).status_code
        == 200
    )
    assert (
        site.client.get("/api/items/999999/image", headers=site.headers("dora")).status_code == 404
    )


def test_an_annotator_opens_only_the_images_handed_to_them(site: Site) -> None:
    """Every image put to lay annotators could be read by id (60 for someone handed 3)."""
    alice = site.headers("alice")
    with site.ws.db.session() as s:
        tasks = repo.tasks_frame(s, project_id=repo.get_project(s, name="chest").id)
    task = site.client.get("/api/tasks/next", headers=alice).json()
    others = [int(i) for i in set(tasks["item"]) if i != task["item_id"]]
    assert others, "other items are out for labelling"
    image = site.client.get(task["image_url"], headers=alice)
    assert image.status_code == 200 and image.headers["cache-control"] == "no-store"
    assert site.client.get(f"/api/items/{others[0]}/image", headers=alice).status_code == 404
    site.client.post(f"/api/tasks/{task['task_id']}/answer", headers=alice, json={"label": 1})
    assert site.client.get(task["image_url"], headers=alice).status_code == 200, "answered"


def test_answer_is_stored_once_and_double_submit_is_409(any_site: Site) -> None:
    site = any_site
    headers = site.headers("alice")
    task = site.client.get("/api/tasks/next", headers=headers).json()
    url = f"/api/tasks/{task['task_id']}/answer"
    first = site.client.post(url, headers=headers, json={"label": "pneumonia"})
    assert first.status_code == 201, first.text
    assert first.json()["label"] == "pneumonia"
    assert first.json()["progress"]["answered"] == 1
    again = site.client.post(url, headers=headers, json={"label": "normal"})
    assert again.status_code == 409
    assert answer_count(site, task["task_id"]) == 1
    # committed: a fresh session sees it with the right label
    with site.ws.db.session() as s:
        stored = s.scalar(select(Answer).where(Answer.task_id == task["task_id"]))
        assert stored is not None and stored.label == CLASSES.index("pneumonia")
    # the same task is not offered again
    assert site.client.get("/api/tasks/next", headers=headers).json()["task_id"] != task["task_id"]


def test_bad_answers_are_4xx_and_store_nothing(site: Site) -> None:
    headers = site.headers("alice")
    task = site.client.get("/api/tasks/next", headers=headers).json()
    url = f"/api/tasks/{task['task_id']}/answer"
    for body in (
        {"label": "cancer"},
        {"label": 2},
        {"label": -1},
        {"label": True},
        {"label": 0.5},
        {"label": None},
        {},
        {"label": "normal", "extra": 1},
        {"label": "normal", "box": [0.1, 0.1, 0.2]},
        {"label": "normal", "box": [0.9, 0.9, 0.5, 0.5]},
        {"label": "normal", "box": [0.1, 0.1, 0.0, 0.2]},
    ):
        response = site.client.post(url, headers=headers, json=body)
        assert response.status_code == 422, body
    assert site.client.post(url, headers=headers, content=b"{not json").status_code == 422
    assert answer_count(site, task["task_id"]) == 0
    assert (
        site.client.post(
            "/api/tasks/99999/answer", headers=headers, json={"label": "normal"}
        ).status_code
        == 404
    )
    assert (
        site.client.post(
            "/api/tasks/0/answer", headers=headers, json={"label": "normal"}
        ).status_code
        == 422
    )
    huge = site.client.post(
        url, headers={**headers, "Content-Type": "application/json"}, content=b" " * 2_000_000
    )
    assert huge.status_code == 413


def test_label_by_index_and_box_is_stored_and_audited(site: Site) -> None:
    headers = site.headers("alice")
    task = site.client.get("/api/tasks/next", headers=headers).json()
    response = site.client.post(
        f"/api/tasks/{task['task_id']}/answer",
        headers=headers,
        json={"label": 1, "box": [0.25, 0.5, 0.5, 0.25]},
    )
    assert response.status_code == 201
    assert response.json()["label"] == "pneumonia"
    with site.ws.db.session() as s:
        entry = s.scalar(select(AuditEntry).where(AuditEntry.action == "answer"))
        assert entry is not None
        assert entry.actor == "alice"
        assert entry.detail == {
            "task": task["task_id"],
            "label": 1,
            "class": "pneumonia",
            "box": [0.25, 0.5, 0.5, 0.25],
        }
        box = s.scalar(select(AnswerBox))
        assert box is not None and box.answer_id == response.json()["answer_id"]
        assert (box.x, box.y, box.width, box.height) == (0.25, 0.5, 0.5, 0.25)
    detail = site.client.get(f"/api/review/{task['item_id']}", headers=site.headers("dora"))
    assert detail.json()["answers"][0]["box"] == [0.25, 0.5, 0.5, 0.25]


def test_started_tasks_come_first_and_close_at_their_redundancy(site: Site) -> None:
    alice, bob, carol = (site.headers(n) for n in ("alice", "bob", "carol"))
    task = site.client.get("/api/tasks/next", headers=alice).json()
    site.client.post(f"/api/tasks/{task['task_id']}/answer", headers=alice, json={"label": 0})
    assert site.client.get("/api/tasks/next", headers=bob).json()["task_id"] == task["task_id"]
    site.client.post(f"/api/tasks/{task['task_id']}/answer", headers=bob, json={"label": 0})
    assert task_row(site, task["task_id"]).status == "done"
    assert site.client.get("/api/tasks/next", headers=carol).json()["task_id"] != task["task_id"]


def test_model_uncertainty_orders_fresh_tasks(site: Site) -> None:
    with site.ws.db.session() as s:
        project = repo.get_project(s, name="chest")
        tasks = repo.tasks_frame(s, project_id=project.id)
        items = repo.items_frame(s, project_id=project.id)
        plain = tasks[(tasks["kind"] == "label") & ~tasks["is_gold"]]
        doubtful = int(plain["item"].iloc[-1])
        probabilities = pd.DataFrame(
            [[0.5, 0.5] if i == doubtful else [0.95, 0.05] for i in items.index],
            index=items.index,
            columns=[0, 1],
        )
        version = repo.add_model_version(
            s, project_id=project.id, network="test", checkpoint_path="-", n_train=0, metrics={}
        )
        repo.save_predictions(s, model_version_id=version.id, probabilities=probabilities)
    task = site.client.get("/api/tasks/next", headers=site.headers("alice")).json()
    assert task["item_id"] == doubtful


def test_nobody_answers_a_task_they_were_not_handed(site: Site) -> None:
    """Gold questions' answers cannot be collected, nor tasks chosen, by id."""
    headers = site.headers("alice")
    with site.ws.db.session() as s:
        tasks = repo.tasks_frame(s, project_id=repo.get_project(s, name="chest").id)
    gold = int(tasks[tasks["is_gold"]]["task_id"].iloc[0])
    handed = site.client.get("/api/tasks/next", headers=headers).json()["task_id"]
    stored = answer_count(site)
    plain = tasks[(tasks["kind"] == "label") & ~tasks["is_gold"]]
    other = int(plain[plain["task_id"] != handed]["task_id"].iloc[0])
    for task_id in (gold, other):
        refused = site.client.post(
            f"/api/tasks/{task_id}/answer", headers=headers, json={"label": 0}
        )
        assert refused.status_code == 409 and "was not handed to you" in refused.text
        assert "expected" not in refused.text
    assert answer_count(site) == stored
    skipped = site.client.post(f"/api/tasks/{other}/skip", headers=headers, json={"reason": "skip"})
    assert skipped.status_code == 409 and "was not handed to you" in skipped.text
    answered = site.client.post(f"/api/tasks/{handed}/answer", headers=headers, json={"label": 0})
    assert answered.status_code == 201
    # once handed another task, the earlier one can no longer be answered
    site.hand("bob", handed)
    site.hand("bob", other)
    late = site.client.post(
        f"/api/tasks/{handed}/answer", headers=site.headers("bob"), json={"label": 0}
    )
    assert late.status_code == 409 and "was not handed to you" in late.text


def test_gold_questions_give_feedback_and_count_in_progress(site: Site) -> None:
    headers = site.headers("alice")
    with site.ws.db.session() as s:
        tasks = repo.tasks_frame(s, project_id=repo.get_project(s, name="chest").id)
    gold_tasks = tasks[tasks["is_gold"]]
    assert len(gold_tasks) >= 2
    first, second = (gold_tasks.iloc[i] for i in range(2))
    truth = site.gold_items[int(first["item"])]
    site.hand("alice", int(first["task_id"]))
    right = site.client.post(
        f"/api/tasks/{int(first['task_id'])}/answer", headers=headers, json={"label": truth}
    ).json()
    assert right["gold"] == {"correct": True, "expected": CLASSES[truth]}
    wrong_label = 1 - site.gold_items[int(second["item"])]
    site.hand("alice", int(second["task_id"]))
    wrong = site.client.post(
        f"/api/tasks/{int(second['task_id'])}/answer", headers=headers, json={"label": wrong_label}
    ).json()
    assert wrong["gold"]["correct"] is False
    assert wrong["progress"] == {
        "answered": 2,
        "gold_answered": 2,
        "gold_correct": 1,
        "gold_accuracy": 0.5,
    }
    plain = tasks[~tasks["is_gold"] & (tasks["kind"] == "label")].iloc[0]
    site.hand("alice", int(plain["task_id"]))
    ordinary = site.client.post(
        f"/api/tasks/{int(plain['task_id'])}/answer", headers=headers, json={"label": 0}
    ).json()
    assert ordinary["gold"] is None
    progress = site.client.get("/api/me/progress", headers=headers).json()
    assert progress["answered"] == 3 and progress["gold_answered"] == 2


def test_skip_moves_on_and_unknown_task_is_404(site: Site) -> None:
    headers = site.headers("alice")
    first = site.client.get("/api/tasks/next", headers=headers).json()
    skipped = site.client.post(
        f"/api/tasks/{first['task_id']}/skip", headers=headers, json={"reason": "unsure"}
    )
    assert skipped.status_code == 204
    assert site.client.get("/api/tasks/next", headers=headers).json()["task_id"] != first["task_id"]
    assert site.client.post("/api/tasks/424242/skip", headers=headers).status_code == 404
    with site.ws.db.session() as s:
        entry = s.scalar(select(AuditEntry).where(AuditEntry.action == "task.unsure"))
        assert entry is not None and entry.entity_id == str(first["task_id"])


def test_no_task_left_is_204(site: Site) -> None:
    headers = site.headers("alice")
    for _ in range(100):
        response = site.client.get("/api/tasks/next", headers=headers)
        if response.status_code == 204:
            break
        task_id = response.json()["task_id"]
        site.client.post(f"/api/tasks/{task_id}/answer", headers=headers, json={"label": 0})
    assert response.status_code == 204
    assert response.content == b""


def answer_everything(site: Site) -> None:
    for name in ("alice", "bob"):
        headers = site.headers(name)
        while (response := site.client.get("/api/tasks/next", headers=headers)).status_code == 200:
            task = response.json()
            label = task["item_id"] % 2 if name == "alice" else 0
            site.client.post(
                f"/api/tasks/{task['task_id']}/answer", headers=headers, json={"label": label}
            )


def test_review_queue_and_decisions(any_site: Site) -> None:
    site = any_site
    answer_everything(site)
    aggregate(site.ws, project="chest", method="majority_vote")
    headers = site.headers("dora")
    queue = site.client.get("/api/review/queue", headers=headers)
    assert queue.status_code == 200
    entries = queue.json()
    assert entries, "aggregated items wait for review"
    scores = [e["score"] for e in entries]
    assert scores == sorted(scores, reverse=True)
    assert not {e["item_id"] for e in entries} & set(site.gold_items)
    first = entries[0]
    assert first["crowd_label"] in CLASSES and first["image_url"].endswith("/image")
    detail = site.client.get(f"/api/review/{first['item_id']}", headers=headers).json()
    assert {a["worker"] for a in detail["answers"]} == {"alice", "bob"}
    assert all(a["gold_answered"] >= 1 for a in detail["answers"])
    decided = site.client.post(
        f"/api/review/{first['item_id']}", headers=headers, json={"label": "pneumonia"}
    )
    assert decided.status_code == 201
    assert decided.json()["label"] == "pneumonia"
    again = site.client.post(
        f"/api/review/{first['item_id']}", headers=headers, json={"label": "normal"}
    )
    assert again.status_code == 409
    with site.ws.db.session() as s:
        finals = repo.current_labels(
            s, project_id=repo.get_project(s, name="chest").id, kind=LabelKind.FINAL
        )
    assert int(finals.loc[first["item_id"], "label"]) == 1
    remaining = site.client.get("/api/review/queue", headers=headers).json()
    assert first["item_id"] not in {e["item_id"] for e in remaining}
    admin = site.headers("adam")
    second = remaining[0]["item_id"]
    assert (
        site.client.post(f"/api/review/{second}", headers=admin, json={"label": "x"}).status_code
        == 422
    )
    assert (
        site.client.post("/api/review/987654", headers=admin, json={"label": "normal"}).status_code
        == 404
    )
    assert (
        site.client.post(f"/api/review/{second}", headers=admin, json={"label": 0}).status_code
        == 201
    )


def test_openapi_documents_the_api(site: Site) -> None:
    schema = site.client.get("/openapi.json").json()
    for path in (
        "/api/health",
        "/api/auth/login",
        "/api/tasks/next",
        "/api/tasks/{task_id}/answer",
        "/api/review/queue",
        "/api/review/{item_id}",
        "/api/items/{item_id}/image",
    ):
        assert path in schema["paths"]
    assert not any(p.startswith("/review") or p == "/login" for p in schema["paths"])
    docs = site.client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    # served by us, not by a CDN: an offline hospital network gets the page too
    assets = re.findall(r'(?:src|href)="([^"]+\.(?:js|css))"', docs.text)
    assert len(assets) == 2 and all(a.startswith("/static/docs/") for a in assets), assets
    for asset in assets:
        assert site.client.get(asset).status_code == 200


def test_gold_questions_are_inserted_at_the_gold_rate_and_stay_open(site: Site) -> None:
    open_tasks(site.ws, k=12)  # more ordinary tasks, so the stream is long enough
    with site.ws.db.session() as s:
        tasks = repo.tasks_frame(s, project_id=repo.get_project(s, name="chest").id)
    gold_ids = set(tasks["task_id"][tasks["is_gold"]])
    stream = []
    for name in ("alice", "bob", "carol"):
        headers = site.headers(name)
        seen = []
        for _ in range(11):
            task = site.client.get("/api/tasks/next", headers=headers).json()
            seen.append(task["task_id"] in gold_ids)
            site.client.post(
                f"/api/tasks/{task['task_id']}/answer", headers=headers, json={"label": 0}
            )
        stream.append(seen)
    for seen in stream:
        assert seen == [False] * 9 + [True] + [False], "a gold question after 9 ordinary ones"
    first_gold = min(gold_ids)
    assert task_row(site, first_gold).status == "open", "gold questions stay open"
    assert answer_count(site, first_gold) == 3


def test_odd_requests_get_clear_4xx(site: Site) -> None:
    annotator, doctor = site.headers("alice"), site.headers("dora")
    cases = [
        ("GET", "/api/tasks/next?project=nope", annotator, None, 404),
        ("GET", "/api/review/queue?limit=0", doctor, None, 422),
        ("GET", "/api/review/queue?project=nope", doctor, None, 404),
        ("GET", f"/api/items/{2**60}/image", doctor, None, 422),
        ("GET", "/api/items/abc/image", doctor, None, 422),
        ("POST", "/api/auth/login", {}, {"username": "x" * 101, "password": "p"}, 422),
        ("POST", "/api/auth/login", {}, {"username": ["alice"], "password": "p"}, 422),
        ("POST", "/api/tasks/1/skip", annotator, {"reason": "bored"}, 422),
        ("GET", "/static/../app.py", {}, None, 404),
        ("GET", "/static/%2e%2e/app.py", {}, None, 404),
        ("DELETE", "/api/review/1", doctor, None, 405),
    ]
    for method, url, headers, body, expected in cases:
        response = site.client.request(method, url, headers=headers, json=body)
        assert response.status_code == expected, (method, url, response.text)
    assert site.client.get("/api/health").status_code == 200, "the server stays up"
    unknown = site.client.get("/api/tasks/next?project=nope", headers=annotator).json()
    assert unknown == {"detail": "no project named 'nope'"}, "no list of projects"


def test_exports_are_for_doctors_and_admins(site: Site) -> None:
    headers = site.headers("alice")
    task = site.client.get("/api/tasks/next", headers=headers).json()
    site.client.post(f"/api/tasks/{task['task_id']}/answer", headers=headers, json={"label": 1})
    for url in ("/api/export/answers.csv?project=chest", "/api/export/labels.csv?project=chest"):
        assert site.client.get(url, headers=headers).status_code == 403
    doctor = site.headers("adam")
    answers = site.client.get("/api/export/answers.csv?project=chest", headers=doctor)
    assert answers.status_code == 200 and answers.headers["content-type"].startswith("text/csv")
    frame = pd.read_csv(io.StringIO(answers.text))
    assert list(frame.columns) == ["task", "item", "worker", "label", "source", "time"]
    mine = frame[frame["worker"] == "alice"]
    assert mine[["task", "item", "label", "source"]].values.tolist() == [
        [task["task_id"], task["item_id"], "pneumonia", "crowd"]
    ]
    labels = pd.read_csv(
        io.StringIO(site.client.get("/api/export/labels.csv?project=chest", headers=doctor).text)
    )
    assert dict(zip(labels["item"], labels["label"], strict=True)) == {
        item: CLASSES[label] for item, label in site.gold_items.items()
    }
    assert set(labels["kind"]) == {"final"}
    missing = site.client.get("/api/export/labels.csv?project=nope", headers=doctor)
    assert missing.status_code == 404


def test_failed_logins_are_counted_across_server_processes_and_restarts(site: Site) -> None:
    def fail(client: TestClient) -> int:
        body = {"username": "bob", "password": "guess-guess"}
        return client.post("/api/auth/login", json=body).status_code

    # two more apps on the same database stand for other server processes
    other = TestClient(create_app(site.ws.settings))
    with other:
        assert [fail(site.client), fail(other), fail(site.client), fail(other)] == [401] * 4
        assert fail(site.client) == 401
        assert fail(other) == 429  # five failures, whichever process saw them
    with TestClient(create_app(site.ws.settings)) as restarted:
        assert fail(restarted) == 429
    with site.ws.db.session() as s:
        keys = s.scalars(select(LoginFailure.key)).all()
    # each failure counts for (bob, client) and for the client; refused attempts not at all
    assert sorted(Counter(keys).values()) == [5, 5] and all("bob" not in key for key in keys)
    # a success clears the count
    with site.ws.db.session() as s:
        s.execute(delete(LoginFailure))
    ok = site.client.post("/api/auth/login", json={"username": "bob", "password": PASSWORD})
    assert ok.status_code == 200
    with site.ws.db.session() as s:
        assert s.scalars(select(LoginFailure.key)).all() == []


def test_old_failures_are_forgotten(site: Site) -> None:
    limiter = LoginLimiter(site.ws, max_failures=2, window=60.0, clock=lambda: now)
    now = 1000.0
    limiter.reserve("carol", "1.2.3.4")  # an attempt counts as failed until it succeeds
    now = 1030.0
    limiter.reserve("carol", "1.2.3.4")
    with pytest.raises(LoginRefused) as refused:
        limiter.reserve("carol", "1.2.3.4")
    assert refused.value.retry_after == 31  # the first expires at 1060
    limiter.reserve("carol", "5.6.7.8")  # per client
    now = 1061.0
    limiter.reserve("carol", "1.2.3.4")
    limiter.reserve("dave", "9.9.9.9")  # a new attempt forgets what is past the window
    with site.ws.db.session() as s:
        # (carol, 1.2.3.4) at 1030 and 1061, (carol, 5.6.7.8) at 1030, dave at 1061: each
        # for its pair and its client
        assert len(s.scalars(select(LoginFailure.failed_at)).all()) == 8
