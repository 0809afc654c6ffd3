"""The server-rendered pages: login with CSRF, session cookies, role-aware pages."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from web_support import PASSWORD, Site

from medloop.store import repository as repo
from medloop.types import LabelKind
from medloop.web.routes import pages
from medloop.workflows import accounts, aggregate, review


def form_token(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "the form carries a CSRF token"
    return match.group(1)


def sign_in(client: TestClient, username: str) -> str:
    """Sign in through the login form; returns the session's CSRF token."""
    page = client.get("/login")
    response = client.post(
        "/login",
        data={"username": username, "password": PASSWORD, "csrf_token": form_token(page.text)},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    cookie = response.headers["set-cookie"]
    assert "medloop_session=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie
    home = client.get("/", follow_redirects=True)
    match = re.search(r'<meta name="csrf-token" content="([^"]+)">', home.text)
    assert match
    return match.group(1)


def test_pages_need_a_login(site: Site) -> None:
    for url in ("/", "/annotate", "/review", "/review/1"):
        response = site.client.get(url, follow_redirects=False)
        back = "" if url == "/" else "?next=" + url.replace("/", "%2F")
        assert response.status_code == 303 and response.headers["location"] == f"/login{back}"


def test_login_form_needs_its_csrf_token_and_the_right_password(site: Site) -> None:
    site.client.get("/login")
    forged = site.client.post(
        "/login",
        data={"username": "alice", "password": PASSWORD, "csrf_token": "forged"},
        follow_redirects=False,
    )
    assert forged.status_code == 403 and "medloop_session" not in forged.headers.get(
        "set-cookie", ""
    )
    page = site.client.get("/login")
    wrong = site.client.post(
        "/login",
        data={"username": "alice", "password": "nope-nope", "csrf_token": form_token(page.text)},
        follow_redirects=False,
    )
    assert wrong.status_code == 401 and "Wrong username or password" in wrong.text


def test_annotator_workspace_and_cookie_api_calls_need_csrf(site: Site) -> None:
    csrf = sign_in(site.client, "alice")
    page = site.client.get("/annotate")
    assert page.status_code == 200
    assert "/static/annotate.js" in page.text and "Draw box" in page.text
    assert 'Images waiting for you: <span id="waiting">10</span>.' in page.text  # 8 + 2 gold
    assert page.headers["Content-Security-Policy"].startswith("default-src 'self'")
    task = site.client.get("/api/tasks/next").json()  # the session cookie signs GETs
    url = f"/api/tasks/{task['task_id']}/answer"
    assert site.client.post(url, json={"label": "normal"}).status_code == 403
    assert (
        site.client.post(url, json={"label": "normal"}, headers={"X-CSRF-Token": "x"}).status_code
        == 403
    )
    ok = site.client.post(url, json={"label": "normal"}, headers={"X-CSRF-Token": csrf})
    assert ok.status_code == 201
    assert site.client.get("/review").status_code == 403
    for asset in (
        "/static/htmx.min.js",
        "/static/viewer.js",
        "/static/annotate.js",
        "/static/app.css",
    ):
        assert site.client.get(asset).status_code == 200


def test_doctor_reviews_in_the_page(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("alice", "bob"):
        headers = site.headers(name)
        while (response := site.client.get("/api/tasks/next", headers=headers)).status_code == 200:
            site.client.post(
                f"/api/tasks/{response.json()['task_id']}/answer",
                headers=headers,
                json={"label": 1},
            )
    aggregate(site.ws, project="chest", method="majority_vote")
    csrf = sign_in(site.client, "dora")
    queue = site.client.get("/review")
    assert queue.status_code == 200
    item_id = int(re.findall(r'href="/review/(\d+)"', queue.text)[0])
    # the count is the whole queue's, and a page too short for it leads to the rest
    waiting = len(review.review_entries(site.ws, limit=None))
    assert waiting >= 2 and f"{waiting} items waiting" in queue.text
    monkeypatch.setattr(pages, "QUEUE_PAGE", 1)
    first = site.client.get("/review").text
    assert f"{waiting} items waiting" in first and "Showing 1\u20131." in first
    assert 'href="/review?offset=1">Next' in first and "Previous" not in first
    second = site.client.get("/review", params={"offset": 1}).text
    assert re.findall(r'href="/review/(\d+)"', second) != [str(item_id)]
    assert "<td>2</td>" in second and 'href="/review?offset=0">Previous' in second
    past = site.client.get("/review", params={"offset": waiting + 5}).text  # queue shrank
    assert f"Showing {waiting}\u2013{waiting}." in past and "Nothing waits" not in past
    page = site.client.get(f"/review/{item_id}")
    assert page.status_code == 200
    assert "alice" in page.text and "bob" in page.text and "Accept" in page.text
    assert site.client.get("/annotate").status_code == 403
    missing = site.client.post(f"/review/{item_id}", data={"label": "normal"})
    assert missing.status_code == 403
    # a form from before the latest sign-in: said as such, not as a matter of role
    stale = site.client.post(
        f"/review/{item_id}",
        data={"label": "normal", "csrf_token": "from-an-earlier-session"},
        headers={"Accept": "text/html"},
    )
    assert stale.status_code == 403 and "This page is out of date" in stale.text
    assert "Not for your role" not in stale.text and "Reload the page" in stale.text
    decided = site.client.post(
        f"/review/{item_id}",
        data={"label": "normal", "csrf_token": csrf},
        follow_redirects=False,
    )
    assert decided.status_code == 303
    with site.ws.db.session() as s:
        project = repo.get_project(s, name="chest")
        finals = repo.current_labels(s, project_id=project.id, kind=LabelKind.FINAL)
    assert int(finals.loc[item_id, "label"]) == 0
    # a second, different decision is not saved, and its doctor sees what was signed
    # (by her, a moment ago) instead of a bare "already has a final label"
    twice = site.client.post(
        f"/review/{item_id}",
        data={"label": "pneumonia", "csrf_token": csrf},
        follow_redirects=False,
    )
    assert twice.headers["location"] == f"/review/{item_id}?taken=1"
    shown = site.client.get(twice.headers["location"]).text
    assert "You already signed this item at" in shown and "correct it below" in shown
    assert "Final label: <strong>normal</strong>" in shown


def test_a_form_sent_after_the_session_ended_says_so_and_signing_in_leads_back(
    site: Site,
) -> None:
    """A doctor's decision sent after signing out elsewhere went to a plain sign-in page
    with no word that nothing was saved, and signing in landed on the queue."""
    csrf = sign_in(site.client, "dora")
    site.client.cookies.delete("medloop_session")  # the session ended meanwhile
    sent = site.client.post(
        "/review/1",
        data={"label": "normal", "csrf_token": csrf},
        headers={"Referer": "http://testserver/review/1"},
        follow_redirects=False,
    )
    assert sent.headers["location"] == "/login?next=%2Freview%2F1&ended=1"
    page = site.client.get(sent.headers["location"]).text
    assert "what you sent was not saved" in page and 'name="next" value="/review/1"' in page
    wrong = site.client.post(
        "/login",
        data={
            "username": "dora",
            "password": "not-it",
            "csrf_token": form_token(page),
            "next": "/review/1",
        },
    )
    assert 'name="username" autocomplete="username" required value="dora"' in wrong.text
    assert 'name="next" value="/review/1"' in wrong.text
    back = site.client.post(
        "/login",
        data={
            "username": "dora",
            "password": PASSWORD,
            "csrf_token": form_token(wrong.text),
            "next": "/review/1",
        },
        follow_redirects=False,
    )
    assert back.headers["location"] == "/review/1"
    # never to another site
    site.client.cookies.delete("medloop_session")
    page = site.client.get("/login", params={"next": "//evil.example/x"}).text
    assert 'name="next"' not in page
    away = site.client.post(
        "/login",
        data={
            "username": "dora",
            "password": PASSWORD,
            "csrf_token": form_token(page),
            "next": "https://evil.example/",
        },
        follow_redirects=False,
    )
    assert away.headers["location"] == "/review"  # her landing page, not "/" and a hop


def test_logout_ends_the_session(site: Site) -> None:
    csrf = sign_in(site.client, "alice")
    out = site.client.post("/logout", data={"csrf_token": csrf}, follow_redirects=False)
    assert out.status_code == 303
    assert site.client.get("/annotate", follow_redirects=False).status_code == 303


def test_an_idle_page_signs_out_and_leads_back(site: Site) -> None:
    """Pages carry the idle sign-out (idle.js, the deployment's minutes on the sign-out
    form); its sign-out revokes the session, says why, and leads back to the page."""
    csrf = sign_in(site.client, "dora")
    review = site.client.get("/review").text
    assert "/static/idle.js?v=" in review and 'data-idle-minutes="15.0"' in review
    out = site.client.post("/logout", data={"csrf_token": csrf, "idle": "1", "next": "/review/3"})
    assert out.url.path == "/login" and dict(out.url.params) == {
        "signed_out": "1",
        "idle": "1",
        "next": "/review/3",
    }
    assert "signed out because this page was left without activity (15 minutes)" in out.text
    assert 'name="next" value="/review/3"' in out.text
    assert site.client.get("/review", follow_redirects=False).status_code == 303
    csrf = sign_in(site.client, "dora")
    away = site.client.post(
        "/logout",
        data={"csrf_token": csrf, "idle": "1", "next": "//evil.example/"},
        follow_redirects=False,
    )
    assert away.headers["location"] == "/login?signed_out=1&idle=1"


def test_a_second_sign_in_page_leaves_the_first_ones_form_working(site: Site) -> None:
    """Two tabs signed out together each load the sign-in page: the second must not
    replace the token the first one's form carries."""
    first = form_token(site.client.get("/login").text)
    second = form_token(site.client.get("/login").text)
    assert first == second
    signed_in = site.client.post(
        "/login",
        data={"username": "dora", "password": PASSWORD, "csrf_token": first},
        follow_redirects=False,
    )
    assert signed_in.status_code == 303
    assert "medloop_login_csrf" not in site.client.cookies  # used up: the next is new


def test_no_idle_sign_out_where_the_deployment_turns_it_off(site: Site) -> None:
    site.ws.settings.idle_sign_out_minutes = 0
    sign_in(site.client, "dora")
    assert "idle.js" not in site.client.get("/review").text


def test_logout_revokes_a_copied_session_cookie(site: Site) -> None:
    """Signing out kills the token itself, not only the browser's cookie: a copy kept
    from before stops working, in this server process and in a fresh one."""
    csrf = sign_in(site.client, "adam")
    copied = site.client.cookies["medloop_session"]
    site.client.post("/logout", data={"csrf_token": csrf}, follow_redirects=False)
    thief = TestClient(site.client.app, cookies={"medloop_session": copied})
    assert thief.get("/audit", follow_redirects=False).status_code == 303
    assert accounts.account_for_token(site.ws, copied, purpose="session") is None
    site.ws.checked_tokens.clear()  # as another server process would see it
    assert accounts.account_for_token(site.ws, copied, purpose="session") is None
    sign_in(site.client, "adam")  # signing in again gives a new session that works
    assert site.client.get("/audit", follow_redirects=False).status_code == 200


def test_pages_are_never_cached(site: Site) -> None:
    """Patient and review pages must not come back from the browser's cache after
    signing out (Back button); static files may be cached."""
    sign_in(site.client, "dora")
    assert site.client.get("/review").headers["cache-control"] == "no-store"
    assert site.client.get("/api/me").headers["cache-control"] == "no-store"
    assert "cache-control" not in site.client.get("/static/app.css").headers


@pytest.mark.parametrize(
    ("username", "landing"),
    [("alice", "/annotate"), ("dora", "/review"), ("adam", "/dashboard")],
)
def test_each_role_lands_on_its_work(site: Site, username: str, landing: str) -> None:
    sign_in(site.client, username)
    response = site.client.get("/", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == landing
    assert site.client.get(landing).status_code == 200
    again = site.client.get("/login", follow_redirects=False)  # signed in already
    assert again.status_code == 303 and again.headers["location"] == landing


def test_a_browser_gets_every_error_as_a_page(site: Site) -> None:
    """Bad addresses, unknown pages and refused requests are pages of the site for a
    browser (the account's menu included); API clients keep getting JSON."""
    sign_in(site.client, "dora")
    browser = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
    for url, status, said in (
        ("/review/abc", 422, "item_id: Input should be a valid integer"),
        ("/nonexistent", 404, "There is no page at /nonexistent."),
        ("/review/999999", 404, "999999"),
        ("/audit", 403, "Not for your role"),
    ):
        page = site.client.get(url, headers=browser)
        assert page.status_code == status, url
        assert page.headers["content-type"].startswith("text/html"), url
        assert said in page.text and "dora" in page.text, url  # with the account's menu
    api = site.client.get("/api/review/abc", headers=browser)
    assert api.status_code == 422 and api.headers["content-type"] == "application/json"
    plain = site.client.get("/nonexistent")
    assert plain.status_code == 404 and plain.json() == {"detail": "Not Found"}
