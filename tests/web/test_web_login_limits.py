"""Login under attack: a limit per client whatever the usernames, limits that hold for
parallel attempts, a cap on concurrent password checks, and HTTPS-only cookies."""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from web_support import PASSWORD, Site

from medloop.store.models import LoginFailure
from medloop.web import create_app
from medloop.web.security import LoginLimiter, LoginRefused
from medloop.workflows import Workspace, accounts


def form_token(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "the form carries a CSRF token"
    return match.group(1)


def login(client: TestClient, username: str, password: str = "guess-guess") -> int:
    body = {"username": username, "password": password}
    return client.post("/api/auth/login", json=body).status_code


def failure_rows(site: Site) -> int:
    with site.ws.db.session() as s:
        return int(s.scalar(select(func.count()).select_from(LoginFailure)) or 0)


def test_one_client_is_limited_whatever_the_usernames(any_site: Site) -> None:
    client = any_site.client
    for _ in range(60):  # a ward behind one address signing in: successes do not count
        assert login(client, "alice", PASSWORD) == 200
    # a new made-up username each time: each is that pair's first failure
    assert [login(client, f"nobody-{i}") for i in range(50)] == [401] * 50
    refused = client.post("/api/auth/login", json={"username": "nobody-50", "password": "x"})
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0
    assert login(client, "alice", PASSWORD) == 429  # this address is shut for a while
    other = TestClient(client.app, client=("192.0.2.7", 50000))
    assert login(other, "alice", PASSWORD) == 200  # other addresses are not


def test_the_client_limit_counts_a_window_and_an_ipv6_host_by_its_64(site: Site) -> None:
    now = 1000.0
    limiter = LoginLimiter(site.ws, max_client_failures=3, window=60.0, clock=lambda: now)
    for i, client in enumerate(("2001:db8::1", "2001:db8::2", "2001:db8::ffff:3")):
        now = 1000.0 + 10 * i
        assert limiter.authenticate(f"user-{i}", "guess-guess", client) is None
    with pytest.raises(LoginRefused) as refused:
        limiter.reserve("user-9", "2001:db8::9")  # the same /64
    assert (refused.value.status, refused.value.retry_after) == (429, 41)  # 1000 + 60 - 1020
    assert limiter.reserve("user-9", "2001:db8:0:1::9")  # the next /64 is another client
    now = 1061.0
    assert limiter.authenticate("user-9", "guess-guess", "2001:db8::9") is None


def test_parallel_wrong_passwords_get_no_more_checks_than_the_limit(
    any_site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every attempt is let in at once; each password check waits until every attempt
    has either reached a check or been refused, so all of them overlap."""
    attempts = 20
    limiter = any_site.client.app.state.limiter  # type: ignore[attr-defined]
    # room for every check, so that only the failure limit can refuse
    monkeypatch.setattr(limiter, "checks", threading.BoundedSemaphore(attempts), raising=False)
    settled = threading.Condition()
    checked, refused = [0], [0]
    authenticate = accounts.authenticate

    def slow_check(ws: Workspace, *, username: str, password: str) -> accounts.Account | None:
        with settled:
            checked[0] += 1
            settled.notify_all()
            # the timeout only ends a hang; the counts below decide the test
            settled.wait_for(lambda: checked[0] + refused[0] == attempts, timeout=60)
        return authenticate(ws, username=username, password=password)

    monkeypatch.setattr(accounts, "authenticate", slow_check)
    start = threading.Barrier(attempts)
    statuses: list[int] = []

    def attempt() -> None:
        start.wait()
        status = login(any_site.client, "bob")
        with settled:
            statuses.append(status)
            if status != 401:  # refused before any check
                refused[0] += 1
                settled.notify_all()

    threads = [threading.Thread(target=attempt) for _ in range(attempts)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert checked[0] == 5
    assert Counter(statuses) == {401: 5, 429: attempts - 5}
    assert failure_rows(any_site) == 10  # five for the pair, five for the client


def test_a_process_with_every_password_check_busy_answers_503(site: Site) -> None:
    limiter: LoginLimiter = site.client.app.state.limiter  # type: ignore[attr-defined]
    held = 0
    while limiter.checks.acquire(blocking=False):  # others' checks, still running
        held += 1
    assert held == 4
    api = site.client.post("/api/auth/login", json={"username": "alice", "password": PASSWORD})
    assert api.status_code == 503 and api.headers["Retry-After"] == "1"
    assert api.json()["detail"] == "too many logins at once; try again in a moment"
    page = site.client.get("/login")
    sent = {"username": "alice", "password": PASSWORD, "csrf_token": form_token(page.text)}
    busy = site.client.post("/login", data=sent, follow_redirects=False)
    assert busy.status_code == 503 and busy.headers["Retry-After"] == "1"
    assert "Too many people are signing in at once" in busy.text
    assert failure_rows(site) == 0  # no password checked, so nothing failed
    for _ in range(held):
        limiter.checks.release()
    for _ in range(held + 2):  # each check gives its place back
        assert login(site.client, "alice", PASSWORD) == 200


def _signed_in(client: TestClient) -> tuple[str, Callable[[str], str | None]]:
    page = client.get("/login")
    sent = {"username": "alice", "password": PASSWORD, "csrf_token": form_token(page.text)}
    response = client.post("/login", data=sent, follow_redirects=False)
    assert response.status_code == 303
    return response.headers["set-cookie"], response.headers.get


def test_cookies_are_https_only_when_the_request_came_over_https(site: Site) -> None:
    app = site.client.app
    plain, _ = _signed_in(TestClient(app))
    assert "medloop_session=" in plain and "secure" not in plain.lower()  # development
    secure, headers = _signed_in(TestClient(app, base_url="https://testserver"))
    assert "medloop_session=" in secure and "; Secure" in secure
    assert headers("Strict-Transport-Security") is None  # not said to be production


def test_production_sends_hsts_over_https(site: Site) -> None:
    settings = site.ws.settings.model_copy(
        update={"environment": "production", "secret_key": "p" * 32}
    )
    ws = Workspace.open(settings)
    try:
        app = create_app(settings, workspace=ws, run_jobs=False)
        with TestClient(app, base_url="https://testserver") as https:
            hsts = https.get("/api/health").headers["Strict-Transport-Security"]
            assert hsts == "max-age=31536000"
            cookie, _ = _signed_in(https)
            assert "; Secure" in cookie
        with TestClient(app) as http:  # browsers ignore it over HTTP: not sent
            assert "Strict-Transport-Security" not in http.get("/api/health").headers
    finally:
        ws.close()
