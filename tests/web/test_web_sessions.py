"""The server's own idle sign-out of browser sessions (`web.sessions`): an idle session
cookie is refused, use renews it, polling does not, 12 hours from sign-in stays the
limit, and a page's CSRF token outlives the renewals. Time is a fake clock."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

import httpx
import pytest
from fastapi.testclient import TestClient
from test_web_pages import sign_in
from web_support import Site

from medloop.web.rendering import STATIC
from medloop.web.sessions import POLL_HEADER
from medloop.workflows import accounts

IDLE = 15 * 60  # the default MEDLOOP_IDLE_SIGN_OUT_MINUTES, in seconds
HTMX = {"HX-Request": "true", "HX-Current-URL": "http://testserver/review"}
POLL = HTMX | {POLL_HEADER: "1"}


@dataclass
class Clock:
    now: float

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """The time tokens are issued, checked and renewed at (whole seconds)."""
    fake = Clock(float(int(time.time())))
    monkeypatch.setattr(accounts.time, "time", lambda: fake.now)
    return fake


def session_set(response: httpx.Response) -> str | None:
    """The session token a response gives the browser, if it sets one."""
    for header in response.headers.get_list("set-cookie"):
        if header.startswith("medloop_session="):
            return str(header.split(";")[0].split("=", 1)[1])
    return None


def test_an_idle_session_is_refused_with_the_reason(site: Site, clock: Clock) -> None:
    """15 minutes and a second without a request: a page goes to the sign-in page, which
    says why and leads back; htmx is told to load it; JSON gets a 401 that says why. An
    API token is not a browser session: it keeps working. 0 minutes turns it off."""
    sign_in(site.client, "dora")
    bearer = site.headers("dora")
    clock.advance(IDLE + 1)
    page = site.client.get("/review", follow_redirects=False)
    assert page.status_code == 303
    assert page.headers["location"] == "/login?next=%2Freview&idle=1"
    login = site.client.get(page.headers["location"])
    assert "signed out because this page was left without activity (15 minutes)" in login.text
    assert 'name="next" value="/review"' in login.text
    panel = site.client.get("/review", headers=HTMX)
    assert panel.status_code == 401
    assert panel.headers["HX-Redirect"] == "/login?next=%2Freview&idle=1"
    me = site.client.get("/api/me")
    assert me.status_code == 401
    assert me.json()["detail"] == (
        "signed out after 15 minutes without activity; sign in again to go on"
    )
    assert site.client.get("/api/me", headers=bearer).json()["username"] == "dora"
    site.ws.settings.idle_sign_out_minutes = 0  # off: nothing to renew either
    unlimited = site.client.get("/review", follow_redirects=False)
    assert unlimited.status_code == 200 and session_set(unlimited) is None


def test_use_renews_the_session_and_polling_does_not(site: Site, clock: Clock) -> None:
    sign_in(site.client, "dora")
    first = site.client.cookies["medloop_session"]
    clock.advance(10 * 60)
    used = site.client.get("/review")
    renewed = session_set(used)
    assert used.status_code == 200 and renewed is not None and renewed != first
    clock.advance(10 * 60)  # 20 minutes after signing in, 10 after the last use
    assert site.client.get("/review", follow_redirects=False).status_code == 200
    clock.advance(10 * 60)
    polled = site.client.get("/review", headers=POLL)
    assert polled.status_code == 200 and session_set(polled) is None
    clock.advance(5 * 60 + 1)  # polled all along, but 15:01 since the last use
    polled = site.client.get("/review", headers=POLL)
    assert polled.status_code == 401
    assert polled.headers["HX-Redirect"] == "/login?next=%2Freview&idle=1"


def test_use_the_server_does_not_see_is_reported(site: Site, clock: Clock) -> None:
    """idle.js reports reading, typing or scrolling (no request of their own) with a
    POST that needs the page's CSRF token and renews the session."""
    csrf = sign_in(site.client, "dora")
    clock.advance(14 * 60)
    assert site.client.post("/api/auth/activity").status_code == 403
    reported = site.client.post("/api/auth/activity", headers={"X-CSRF-Token": csrf})
    assert reported.status_code == 204 and session_set(reported) is not None
    clock.advance(14 * 60)
    assert site.client.get("/review", follow_redirects=False).status_code == 200
    clock.advance(IDLE + 1)
    assert site.client.post("/api/auth/activity", headers={"X-CSRF-Token": csrf}).status_code == 401
    fresh = sign_in(site.client, "dora")  # signing out through the API clears the cookie
    out = site.client.post("/api/auth/logout", headers={"X-CSRF-Token": fresh})
    assert out.status_code == 204 and "medloop_session" not in site.client.cookies


def test_a_page_keeps_its_csrf_token_across_renewals_and_sign_out_ends_them_all(
    site: Site, clock: Clock
) -> None:
    """The CSRF token derives from the sign-in, not from the token the cookie holds now: a
    form opened before a renewal still sends a valid one. Signing out revokes the sign-in,
    so a copy of the cookie from before a renewal stops working too."""
    csrf = sign_in(site.client, "dora")
    copied = site.client.cookies["medloop_session"]
    clock.advance(5 * 60)
    later = site.client.get("/review")
    assert session_set(later) not in (None, copied)
    assert f'<meta name="csrf-token" content="{csrf}">' in later.text
    clock.advance(5 * 60)
    out = site.client.post("/logout", data={"csrf_token": csrf}, follow_redirects=False)
    assert out.status_code == 303 and out.headers["location"] == "/login?signed_out=1"
    assert "medloop_session" not in site.client.cookies  # the sign-out's own cookie wins
    assert accounts.account_for_token(site.ws, copied, purpose="session") is None
    thief = TestClient(site.client.app, cookies={"medloop_session": copied})
    assert thief.get("/review", follow_redirects=False).status_code == 303


def test_use_never_keeps_a_session_past_12_hours(site: Site, clock: Clock) -> None:
    sign_in(site.client, "dora")
    token = site.client.cookies["medloop_session"]
    for elapsed in range(10 * 60, accounts.TOKEN_TTL, 10 * 60):
        clock.advance(10 * 60)
        response = site.client.get("/api/me")
        assert response.status_code == 200
        renewed = session_set(response)
        assert renewed is not None and renewed != token
        max_age = re.search(r"Max-Age=(\d+)", response.headers["set-cookie"])
        assert max_age and int(max_age.group(1)) == accounts.TOKEN_TTL - elapsed
        token = renewed
    clock.advance(10 * 60 + 1)  # 12 hours and a second after signing in, 10 minutes after use
    copy = TestClient(site.client.app, cookies={"medloop_session": token})
    refused = copy.get("/api/me")
    assert refused.status_code == 401 and "without activity" not in refused.json()["detail"]


def test_every_timed_refresh_is_marked_as_polling() -> None:
    """app.js marks the requests of a region whose hx-trigger starts with "every" with
    POLL_HEADER: every timed refresh in the templates must be written that way."""
    assert f'"{POLL_HEADER}"' in (STATIC / "app.js").read_text()
    sources = [path.read_text() for path in (STATIC.parent / "templates").glob("*.html")]
    triggers = [t for source in sources for t in re.findall(r'hx-trigger="([^"]*)"', source)]
    timed = [t for t in triggers if re.search(r"\bevery\b|\bdelay:|\bload\b", t)]
    assert timed and all(t.startswith("every ") for t in timed), timed
