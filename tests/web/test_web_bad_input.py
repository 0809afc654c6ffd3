"""Bad input never gets a 5xx and never changes the store: oversized and malformed bodies,
wrong labels, unknown ids, path tricks, bad tokens, concurrent double submits; and a real
server keeps serving after malformed HTTP.

Double submits: the first answer is stored (201); every later or concurrent one by the same
person to the same task gets 409 and stores nothing (the database's unique constraint
decides races).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
from sqlalchemy import func, select
from web_support import (
    PASSWORD,
    Site,
    build_project,
    free_port,
    open_tasks,
    start_server,
    stop_server,
)

from medloop.config import Settings
from medloop.store import repository as repo
from medloop.store.models import Answer, AuditEntry, Item, ItemLabel
from medloop.web.app import MAX_BODY_BYTES
from medloop.workflows import Workspace


def answers_stored(site: Site) -> int:
    """Crowd answers in the store (the site's gold labels come with doctors' answers)."""
    with site.ws.db.session() as s:
        query = select(func.count(Answer.id)).where(Answer.source == "crowd")
        return int(s.scalar(query) or 0)


def next_task(site: Site, headers: dict[str, str]) -> dict[str, object]:
    response = site.client.get("/api/tasks/next", headers=headers)
    assert response.status_code == 200, response.text
    task: dict[str, object] = response.json()
    return task


def test_oversized_bodies_are_413_with_or_without_a_length(site: Site) -> None:
    headers = {**site.headers("alice"), "Content-Type": "application/json"}
    url = f"/api/tasks/{next_task(site, headers)['task_id']}/answer"

    def chunks() -> Iterator[bytes]:  # no Content-Length: sent chunked
        yield b'{"label": "normal", "pad": "'
        for _ in range(MAX_BODY_BYTES // 65536 + 2):
            yield b"x" * 65536
        yield b'"}'

    streamed = site.client.post(url, headers=headers, content=chunks())
    assert streamed.status_code == 413, streamed.text
    announced = site.client.post(url, headers=headers, content=b" " * (MAX_BODY_BYTES + 1))
    assert announced.status_code == 413
    # the page forms too (the CSRF check reads the form before any route)
    form = site.client.post(
        "/login",
        content=b"username=" + b"a" * (MAX_BODY_BYTES + 10),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert form.status_code == 413
    assert answers_stored(site) == 0
    assert site.client.get("/api/health").status_code == 200


def test_malformed_json_is_4xx_and_stores_nothing(site: Site) -> None:
    headers = site.headers("alice")
    url = f"/api/tasks/{next_task(site, headers)['task_id']}/answer"
    json_type = {**headers, "Content-Type": "application/json"}
    bodies = [
        b"",
        b"null",
        b"[]",
        b'"normal"',
        b"{not json",
        b'{"label": "normal"',
        b"\xff\xfe\x00garbage",
        b'{"label": "nor\x00mal"}',
        b'{"label": 1e400}',
        b'{"label": ' + b"9" * 5000 + b"}",
        b'{"label": "normal", "box": [NaN, 0.1, 0.2, 0.2]}',
        b'{"label": "normal", "box": [Infinity, 0.1, 0.2, 0.2]}',
        b'{"label": "normal", "box": "0.1,0.1,0.2,0.2"}',
        b'{"label": "normal", "label": "pneumonia", "box": {"x": 1}}',
        b"[" * 50_000 + b"]" * 50_000,
        b'{"label": ' + b'{"a": ' * 10_000 + b"1" + b"}" * 10_001,
        ('{"label": "' + "\u00e9" * 1000 + '"}').encode(),
        b'{"label": "' + b"n" * 500_000 + b'"}',
    ]
    for body in bodies:
        response = site.client.post(url, headers=json_type, content=body)
        assert 400 <= response.status_code < 500, (body[:60], response.status_code, response.text)
    # the right JSON under the wrong media type, or as a form, is not taken either
    for content_type in ("text/plain", "application/x-www-form-urlencoded"):
        response = site.client.post(
            url, headers={**headers, "Content-Type": content_type}, content=b'{"label": "normal"}'
        )
        assert 400 <= response.status_code < 500, content_type
    assert answers_stored(site) == 0
    assert site.client.post(url, headers=headers, json={"label": "normal"}).status_code == 201


def test_wrong_labels_are_422_in_the_api_and_the_review_form(site: Site) -> None:
    headers = site.headers("alice")
    task = next_task(site, headers)
    url = f"/api/tasks/{task['task_id']}/answer"
    for label in ("Normal", " normal", "normal ", "", "0", "pneumonia\n", 2, -1, 10**30):
        response = site.client.post(url, headers=headers, json={"label": label})
        assert response.status_code == 422, label
    doctor = site.headers("dora")
    item = task["item_id"]
    for label in ("cancer", 5, [0], {"x": 1}, None):
        response = site.client.post(f"/api/review/{item}", headers=doctor, json={"label": label})
        assert response.status_code == 422, label
    assert answers_stored(site) == 0


def test_unknown_ids_are_404_and_bad_ids_422(site: Site) -> None:
    annotator, doctor = site.headers("alice"), site.headers("dora")
    missing = 10**9
    cases = [
        ("POST", f"/api/tasks/{missing}/answer", annotator, {"label": "normal"}, 404),
        ("POST", f"/api/tasks/{missing}/skip", annotator, {"reason": "skip"}, 404),
        ("GET", f"/api/items/{missing}/image", doctor, None, 404),
        ("GET", f"/api/items/{missing}/image", annotator, None, 404),
        ("GET", f"/api/review/{missing}", doctor, None, 404),
        ("POST", f"/api/review/{missing}", doctor, {"label": "normal"}, 404),
        ("GET", "/api/export/answers.csv?project=nope", doctor, None, 404),
        ("GET", "/api/tasks/-1/answer", annotator, None, 405),
        ("POST", "/api/tasks/-1/answer", annotator, {"label": "normal"}, 422),
        ("POST", "/api/tasks/1.5/answer", annotator, {"label": "normal"}, 422),
        ("POST", f"/api/tasks/{2**64}/answer", annotator, {"label": "normal"}, 422),
        ("GET", "/api/review/1e3", doctor, None, 422),
        ("GET", "/api/nothing-here", doctor, None, 404),
    ]
    for method, url, headers, body, expected in cases:
        response = site.client.request(method, url, headers=headers, json=body)
        assert response.status_code == expected, (method, url, response.text)
    page = site.client.get(f"/review/{missing}")  # not signed in: the login page
    assert page.status_code == 200 and "Sign in" in page.text


def test_path_tricks_never_reach_files(site: Site, tmp_path: Path) -> None:
    doctor = site.headers("dora")
    urls = [
        "/static/../app.py",
        "/static/..%2fapp.py",
        "/static/..%2f..%2f..%2fpyproject.toml",
        "/static/%2e%2e/%2e%2e/config.py",
        "/static/%252e%252e/app.py",
        "/static/....//app.py",
        "/static//etc/passwd",
        "/static/%2fetc%2fpasswd",
        "/static/..\\app.py",
        "/static/app.css%00.js",
        "/api/items/..%2f..%2fetc%2fpasswd/image",
        "/api/items/1%2f..%2f2/image",
        "/api/items/%2e%2e/image",
        "/api/export/..%2fanswers.csv?project=chest",
        "/api/export/answers.csv?project=../../etc/passwd",
        "/api/review/queue?project=..%2F..%2Fetc",
    ]
    for url in urls:
        response = site.client.get(url, headers=doctor)
        assert response.status_code in (400, 404, 422), (url, response.status_code)
        assert b"root:" not in response.content and b"[project]" not in response.content
    # an item whose image file went missing from the blob store is a 404, not a crash
    with site.ws.db.session() as s:
        item = s.scalars(select(Item).order_by(Item.id)).first()
        assert item is not None
        item_id, sha = item.id, item.image_sha256
    site.ws.blobs.path(sha).rename(tmp_path / "moved")
    assert site.client.get(f"/api/items/{item_id}/image", headers=doctor).status_code == 404
    assert site.client.get("/static/app.css").status_code == 200


def test_bad_tokens_are_401(site: Site) -> None:
    good = site.token("alice")
    for value in (
        "Bearer ",
        "Bearer x",
        "Bearer " + "a" * 50_000,
        "Bearer " + good[:-2],
        "Bearer " + good + ".extra",
        "Bearer ..",
        "Basic YWxpY2U6cGFzcw==",
    ):
        response = site.client.get("/api/me", headers={"Authorization": value})
        assert response.status_code in (401, 403), (value[:40], response.status_code)
    raw = site.client.get("/api/me", headers=[(b"Authorization", b"Bearer \xff\xfe\x80")])
    assert raw.status_code == 401
    site.client.cookies.set("medloop_session", "not.a.session")
    assert site.client.get("/annotate", follow_redirects=False).status_code == 303
    site.client.cookies.clear()
    assert site.client.get("/api/me", headers={"Authorization": f"Bearer {good}"}).is_success


def test_concurrent_double_submits_store_one_answer(any_site: Site) -> None:
    site = any_site
    headers = site.headers("alice")
    task = next_task(site, headers)
    url = f"/api/tasks/{task['task_id']}/answer"

    async def burst() -> list[int]:
        transport = httpx.ASGITransport(app=site.client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            responses = await asyncio.gather(
                *(
                    client.post(url, headers=headers, json={"label": label})
                    for label in ["normal", "pneumonia"] * 4
                )
            )
        return sorted(r.status_code for r in responses)

    assert asyncio.run(burst()) == [201] + [409] * 7
    with site.ws.db.session() as s:
        stored = s.scalars(select(Answer).where(Answer.task_id == task["task_id"])).all()
    assert len(stored) == 1
    again = site.client.post(url, headers=headers, json={"label": "normal"})
    assert again.status_code == 409 and "already answered" in again.json()["detail"]
    assert again.json()["code"] == "already_answered"  # what the page tells a resend by


def test_doctors_signing_one_item_at_once_store_one_final_label(any_site: Site) -> None:
    """Two doctors pressing "sign" on the same item at the same moment, four times each:
    one final label; the signer's own resends are taken as done, and the other doctor is
    told who signed it."""
    site = any_site
    doctors = [site.headers("dora"), site.headers("adam")]
    with site.ws.db.session() as s:
        items = repo.items_frame(s, project_id=repo.get_project(s, name="chest").id)
    item = int(next(i for i in items.index if i not in site.gold_items))

    async def burst() -> list[tuple[int, str]]:
        transport = httpx.ASGITransport(app=site.client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            responses = await asyncio.gather(
                *(
                    client.post(
                        f"/api/review/{item}", headers=doctors[i % 2], json={"label": i % 2}
                    )
                    for i in range(8)
                )
            )
        return sorted((r.status_code, r.text) for r in responses)

    results = asyncio.run(burst())
    assert [code for code, _ in results] == [201] * 4 + [409] * 4
    with site.ws.db.session() as s:
        finals = s.scalars(
            select(ItemLabel).where(ItemLabel.item_id == item, ItemLabel.kind == "final")
        ).all()
        audited = s.scalars(
            select(AuditEntry.detail).where(
                AuditEntry.action == "label.final", AuditEntry.entity_id == str(item)
            )
        ).all()
    assert len(finals) == 1 and len(audited) == 1
    assert audited[0]["class"] == ["normal", "pneumonia"][finals[0].label]  # people read names
    signer = ["dora", "adam"][finals[0].label]
    refused = [text for code, text in results if code == 409]
    assert all(
        f"already has a final label: '{audited[0]['class']}', signed by {signer}" in text
        for text in refused
    )


def test_closed_tasks_and_answered_images_refuse_answers(site: Site) -> None:
    """Task ids are sequential: nobody may add an answer to a task that is done, nor answer
    an image twice through a second task on it (the crowd model would count them twice)."""
    task = next_task(site, site.headers("alice"))
    url = f"/api/tasks/{task['task_id']}/answer"
    site.hand("carol", task["task_id"])  # her hold expires before she answers
    for name in ("alice", "bob"):  # two answers close a task that needs two
        assert next_task(site, site.headers(name))["task_id"] == task["task_id"]
        answered = site.client.post(url, headers=site.headers(name), json={"label": 0})
        assert answered.status_code == 201
    late = site.client.post(url, headers=site.headers("carol"), json={"label": 1})
    assert late.status_code == 409 and "closed" in late.json()["detail"]
    assert "code" not in late.json()  # not a resend: the page says it was not saved
    with site.ws.db.writing() as s:  # a second task on an image alice has answered
        project = repo.get_project(s, name="chest")
        (second,) = repo.create_tasks(
            s, project_id=project.id, item_ids=[task["item_id"]], required_answers=[2]
        )
    again = site.client.post(
        f"/api/tasks/{second}/answer", headers=site.headers("alice"), json={"label": 1}
    )
    assert again.status_code == 409 and "already answered this image" in again.json()["detail"]
    assert again.json()["code"] == "already_answered"
    with site.ws.db.session() as s:
        stored = s.scalars(select(Answer).where(Answer.item_id == task["item_id"])).all()
        expected = sorted(repo.get_user(s, username=n).id for n in ("alice", "bob"))
    assert sorted(a.worker_id for a in stored) == expected


def test_a_real_server_survives_malformed_http(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", secret_key="bad-input-secret")
    ws = Workspace.open(settings)
    build_project(ws)
    open_tasks(ws)
    ws.close()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = start_server(settings.home, secret="bad-input-secret", port=port)
    try:
        raw_requests = [
            b"GARBAGE\r\n\r\n",
            b"GET /api/health HTTP/9.9\r\n\r\n",
            b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET /api/health HTTP/1.1\r\nHost: x\r\nX: " + b"b" * 100_000 + b"\r\n\r\n",
            b"POST /api/auth/login HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{",
            b"POST /api/auth/login HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # a TLS hello
        ]
        for raw in raw_requests:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
                conn.sendall(raw)
                conn.shutdown(socket.SHUT_WR)
                try:
                    reply = conn.recv(200)
                except TimeoutError:
                    reply = b""
            assert not reply.startswith(b"HTTP/1.1 5"), (raw[:40], reply)
        login = httpx.post(
            f"{base}/api/auth/login", json={"username": "alice", "password": PASSWORD}, timeout=10
        )
        assert login.status_code == 200, "the server stays up and keeps serving"
        assert server.poll() is None
    finally:
        stop_server(server)


def test_refused_requests_never_echo_what_was_sent(site: Site) -> None:
    """A 422 says what was wrong, not what was sent: a password (or a patient's data)
    must not travel back into client and proxy logs."""
    secret = "kA1k7N-not-to-be-echoed"
    refusals = [
        site.client.post(
            "/api/auth/login",
            content=f'{{"username": "dora", "password": "{secret}"}}',
            headers={"Content-Type": "text/plain"},
        ),
        site.client.post("/api/auth/login", json={"username": "dora", "password": secret * 300}),
        site.client.post("/api/auth/login", json={"username": secret, "password": 12}),
    ]
    for refused in refusals:
        assert refused.status_code == 422
        assert secret not in refused.text and refused.json()["detail"][0]["msg"]


def test_a_nul_character_is_refused_not_a_server_error(any_site: Site) -> None:
    """PostgreSQL cannot store a NUL in text (SQLite can): before, a username or project
    name holding one was a 500, even before signing in, with the SQL in the log."""
    client = any_site.client
    login = client.post("/api/auth/login", json={"username": "al\x00ice", "password": "x" * 8})
    assert login.status_code in (401, 422), login.text
    doctor = any_site.headers("dora")
    queue = client.get("/api/review/queue", params={"project": "ch\x00est"}, headers=doctor)
    assert queue.status_code in (404, 422), queue.text
    page = client.get(
        "/review", params={"project": "ch\x00est"}, headers={**doctor, "Accept": "text/html"}
    )
    assert page.status_code in (200, 404, 422), page.text
