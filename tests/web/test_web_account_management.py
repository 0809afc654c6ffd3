"""Managing accounts: disable, enable, set a password or a role, end every session; the
web refuses what an account may no longer do (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import threading
import time

import pytest
from sqlalchemy import event
from sqlalchemy.orm import Session
from test_web_pages import form_token, sign_in
from web_support import PASSWORD, Site

from medloop.exceptions import ConflictError, InvalidInputError, NotFoundError
from medloop.store import repository as repo
from medloop.types import Role
from medloop.workflows import Workspace, accounts

NEW_PASSWORD = "a brand new passphrase"


def api_login(site: Site, username: str, password: str = PASSWORD) -> int:
    response = site.client.post(
        "/api/auth/login", json={"username": username, "password": password}
    )
    return response.status_code


def signed_out(site: Site, bearer: dict[str, str]) -> bool:
    """Whether the client's session cookie is sent to the login page and `bearer` gets a 401."""
    page = site.client.get("/annotate", follow_redirects=False)
    to_login = page.status_code == 303 and page.headers["location"].startswith("/login")
    return to_login and site.client.get("/api/me", headers=bearer).status_code == 401


def test_users_are_listed_with_role_and_state_never_a_hash(any_site: Site) -> None:
    with any_site.ws.db.session() as s:
        repo.ensure_users(s, usernames=["sim-1"], role=Role.ANNOTATOR, simulated=True)
    accounts.disable_user(any_site.ws, username="bob", actor="cli")
    users = {u.username: u for u in accounts.list_users(any_site.ws)}
    assert list(users) == ["adam", "alice", "bob", "carol", "dora", "sim-1"]
    assert users["dora"] == accounts.UserSummary("dora", Role.DOCTOR, False, False)
    assert users["bob"].disabled and not users["alice"].disabled
    assert users["sim-1"].simulated
    assert "argon2" not in repr(users)


def test_a_disabled_account_cannot_sign_in_and_its_session_and_tokens_end(
    any_site: Site,
) -> None:
    sign_in(any_site.client, "alice")
    bearer = any_site.headers("alice")
    assert not signed_out(any_site, bearer)
    accounts.disable_user(any_site.ws, username="alice", actor="cli")
    assert signed_out(any_site, bearer)
    assert api_login(any_site, "alice") == 401
    page = any_site.client.get("/login")
    form = any_site.client.post(
        "/login",
        data={"username": "alice", "password": PASSWORD, "csrf_token": form_token(page.text)},
        follow_redirects=False,
    )
    assert form.status_code == 401 and "medloop_session" not in form.headers.get("set-cookie", "")
    # enabled again, alice signs in afresh; the tokens she held stay ended
    accounts.enable_user(any_site.ws, username="alice", actor="cli")
    assert any_site.client.get("/api/me", headers=bearer).status_code == 401
    assert any_site.client.get("/api/me", headers=any_site.headers("alice")).status_code == 200


def test_revoking_sessions_ends_a_live_session_and_keeps_the_password(any_site: Site) -> None:
    sign_in(any_site.client, "alice")
    bearer = any_site.headers("alice")
    other = any_site.headers("bob")
    assert any_site.client.get("/annotate", follow_redirects=False).status_code == 200
    accounts.revoke_sessions(any_site.ws, username="alice", actor="cli")
    assert signed_out(any_site, bearer)
    assert any_site.client.get("/api/me", headers=other).status_code == 200  # bob's stays
    sign_in(any_site.client, "alice")  # the same password still works
    assert any_site.client.get("/annotate", follow_redirects=False).status_code == 200


def test_a_new_password_ends_old_sessions_and_follows_the_rules(any_site: Site) -> None:
    sign_in(any_site.client, "alice")
    bearer = any_site.headers("alice")
    accounts.set_password(any_site.ws, username="alice", password=NEW_PASSWORD, actor="cli")
    assert signed_out(any_site, bearer)
    assert api_login(any_site, "alice") == 401
    assert api_login(any_site, "alice", NEW_PASSWORD) == 200
    with pytest.raises(InvalidInputError, match="at least 8"):
        accounts.set_password(any_site.ws, username="alice", password="short", actor="cli")
    with pytest.raises(InvalidInputError, match="must not contain the username"):
        accounts.set_password(any_site.ws, username="alice", password="alice rocks!", actor="cli")
    with pytest.raises(NotFoundError, match="no user named 'ghost'"):
        accounts.set_password(any_site.ws, username="ghost", password=NEW_PASSWORD, actor="cli")


def test_a_new_role_applies_to_the_next_request_of_a_token(any_site: Site) -> None:
    """Tokens name the user, not the role: each request reads the role afresh."""
    dora, adam = any_site.headers("dora"), any_site.headers("adam")
    assert any_site.client.get("/api/review/queue", headers=dora).status_code == 200
    assert any_site.client.get("/api/audit", headers=dora).status_code == 403
    accounts.set_role(any_site.ws, username="dora", role="admin", actor="cli")
    assert any_site.client.get("/api/audit", headers=dora).status_code == 200
    accounts.set_role(any_site.ws, username="adam", role=Role.ANNOTATOR, actor="cli")
    assert any_site.client.get("/api/me", headers=adam).json()["role"] == "annotator"
    assert any_site.client.get("/api/audit", headers=adam).status_code == 403
    assert any_site.client.get("/api/review/queue", headers=adam).status_code == 403
    with pytest.raises(InvalidInputError, match="Did you mean 'doctor'"):
        accounts.set_role(any_site.ws, username="dora", role="docter", actor="cli")


def test_the_last_enabled_admin_stays_one(any_site: Site) -> None:
    ws = any_site.ws
    with ws.db.session() as s:  # a simulated admin administers nothing
        repo.ensure_users(s, usernames=["robot"], role=Role.ADMIN, simulated=True)
    for refused in (
        lambda: accounts.disable_user(ws, username="adam", actor="cli"),
        lambda: accounts.set_role(ws, username="adam", role="doctor", actor="cli"),
    ):
        with pytest.raises(ConflictError, match="'adam' is the last enabled admin"):
            refused()
    accounts.set_role(ws, username="dora", role="admin", actor="cli")
    accounts.disable_user(ws, username="adam", actor="cli")
    with pytest.raises(ConflictError, match="'dora' is the last enabled admin"):
        accounts.set_role(ws, username="dora", role="doctor", actor="cli")
    accounts.disable_user(ws, username="bob", actor="cli")  # other accounts are free
    accounts.set_role(ws, username="adam", role="doctor", actor="cli")  # a disabled admin
    with pytest.raises(InvalidInputError, match="'robot' is simulated"):
        accounts.disable_user(ws, username="robot", actor="cli")
    assert api_login(any_site, "dora") == 200


def test_two_admins_disabled_at_once_leave_one(any_site: Site) -> None:
    """The second disabling starts while the first is about to commit: each checks that
    another admin is left, and without taking turns both would pass."""
    ws = any_site.ws
    accounts.set_role(ws, username="dora", role="admin", actor="cli")
    committing = threading.Event()

    def pause_first_commit(_session: Session) -> None:
        if threading.current_thread().name == "first" and not committing.is_set():
            committing.set()
            time.sleep(0.5)

    errors: list[Exception] = []

    def disable(username: str) -> None:
        try:
            accounts.disable_user(ws, username=username, actor="cli")
        except ConflictError as error:
            errors.append(error)

    event.listen(Session, "before_commit", pause_first_commit)
    try:
        first = threading.Thread(target=disable, args=("adam",), name="first")
        first.start()
        assert committing.wait(10)
        disable("dora")
        first.join(10)
    finally:
        event.remove(Session, "before_commit", pause_first_commit)
    assert len(errors) == 1
    assert [u.username for u in accounts.list_users(ws) if u.role == "admin" and not u.disabled]


def test_account_changes_are_audited_as_their_actor_without_secrets(any_site: Site) -> None:
    ws = any_site.ws
    accounts.disable_user(ws, username="alice", actor="cli")
    accounts.enable_user(ws, username="alice", actor="cli")
    accounts.set_password(ws, username="alice", password=NEW_PASSWORD, actor="cli")
    accounts.set_role(ws, username="alice", role="doctor", actor="cli")
    accounts.revoke_sessions(ws, username="alice", actor="cli")
    with ws.db.session() as s:
        entries, _ = repo.audit_entries(s, action="user.")
        alice = repo.get_user(s, username="alice")
        logged = [(e.actor, e.action, e.entity, e.entity_id, e.detail) for e in reversed(entries)]
        stored_hash = alice.password_hash
    assert logged == [
        ("cli", "user.disable", "user", str(alice.id), {}),
        ("cli", "user.enable", "user", str(alice.id), {}),
        ("cli", "user.set_password", "user", str(alice.id), {}),
        ("cli", "user.set_role", "user", str(alice.id), {"from": "annotator", "to": "doctor"}),
        ("cli", "user.revoke_sessions", "user", str(alice.id), {}),
    ]
    text = json.dumps(logged)
    assert stored_hash and stored_hash not in text and NEW_PASSWORD not in text


def test_other_server_processes_refuse_the_tokens_within_the_recheck_time(
    any_site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A change made elsewhere (the command line) reaches a server that checked a token
    lately after `TOKEN_RECHECK_SECONDS` at most; in the same process at once."""
    server = any_site.ws
    elsewhere = Workspace(settings=server.settings, db=server.db, blobs=server.blobs)
    doctor = accounts.authenticate(server, username="dora", password=PASSWORD)
    annotator = accounts.authenticate(server, username="alice", password=PASSWORD)
    assert doctor is not None and annotator is not None
    tokens = {a.username: accounts.issue_token(server, a) for a in (doctor, annotator)}
    for token in tokens.values():
        assert accounts.account_for_token(server, token) is not None  # checked: kept a while
    accounts.disable_user(elsewhere, username="dora", actor="cli")
    accounts.revoke_sessions(elsewhere, username="alice", actor="cli")
    assert accounts.account_for_token(server, tokens["dora"]) == doctor
    later = accounts.time.time() + accounts.TOKEN_RECHECK_SECONDS + 1
    monkeypatch.setattr(accounts.time, "time", lambda: later)
    assert accounts.account_for_token(server, tokens["dora"]) is None
    assert accounts.account_for_token(server, tokens["alice"]) is None
