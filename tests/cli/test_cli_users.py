"""`medloop users`: list, disable, enable, set-password, set-role, revoke-sessions,
grant, revoke."""

from __future__ import annotations

import getpass
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli_support import run
from medloop.config import Settings
from medloop.exceptions import InvalidInputError
from medloop.store import repository as repo
from medloop.types import Role
from medloop.workflows import Workspace, access, accounts
from medloop.workflows.audit import audit_log

PASSWORD = "correct horse battery"


@pytest.fixture
def ws(home: Path) -> Iterator[Workspace]:
    """The home's workspace with an admin, a doctor and an annotator (and their tokens)."""
    workspace = Workspace.open(Settings())
    for name, role in (("adam", "admin"), ("dora", "doctor"), ("ann", "annotator")):
        accounts.add_user(workspace, username=name, role=role, password=PASSWORD)
    yield workspace
    workspace.close()


def token_of(ws: Workspace, username: str) -> str:
    account = accounts.authenticate(ws, username=username, password=PASSWORD)
    assert account is not None
    return accounts.issue_token(ws, account, purpose="session")


def still_valid(ws: Workspace, token: str) -> bool:
    ws.checked_tokens.clear()  # as a server process would after TOKEN_RECHECK_SECONDS
    return accounts.account_for_token(ws, token, purpose="session") is not None


def test_list_shows_accounts_without_hashes(ws: Workspace, monkeypatch, capsys) -> None:
    code, out, _ = run(monkeypatch, capsys, "users", "disable", "ann")
    assert code == 0
    code, out, _ = run(monkeypatch, capsys, "users", "list", "--json")
    assert code == 0 and "argon2" not in out
    assert json.loads(out) == [
        {
            "username": "adam",
            "role": "admin",
            "disabled": False,
            "simulated": False,
            "projects": [],
        },
        {
            "username": "ann",
            "role": "annotator",
            "disabled": True,
            "simulated": False,
            "projects": [],
        },
        {
            "username": "dora",
            "role": "doctor",
            "disabled": False,
            "simulated": False,
            "projects": [],
        },
    ]
    code, out, _ = run(monkeypatch, capsys, "users", "list")
    assert code == 0 and "users (3)" in out and "annotator" in out and "argon2" not in out


def test_disable_enable_and_revoke_sessions(ws: Workspace, monkeypatch, capsys) -> None:
    token = token_of(ws, "dora")
    code, out, _ = run(monkeypatch, capsys, "users", "disable", "dora")
    assert code == 0 and "disabled 'dora'" in out
    assert not still_valid(ws, token)
    assert accounts.authenticate(ws, username="dora", password=PASSWORD) is None
    with pytest.raises(InvalidInputError, match="'dora' is disabled"):  # signs no decision
        accounts.account_in_role(ws, username="dora", roles=[Role.DOCTOR])
    code, out, _ = run(monkeypatch, capsys, "users", "enable", "dora")
    assert code == 0 and "enabled doctor 'dora'" in out
    assert not still_valid(ws, token)  # enabling brings no ended token back
    token = token_of(ws, "dora")
    code, out, _ = run(monkeypatch, capsys, "users", "revoke-sessions", "dora")
    assert code == 0 and "signed 'dora' out" in out
    assert not still_valid(ws, token)
    assert still_valid(ws, token_of(ws, "dora"))  # the password stays


def test_set_password_prompted_twice_or_generated(ws: Workspace, monkeypatch, capsys) -> None:
    token = token_of(ws, "ann")
    typed = iter(["a new secret 1", "a typo", "a new secret 2", "a new secret 2"])
    monkeypatch.setattr(getpass, "getpass", lambda prompt="": next(typed))
    code, out, err = run(monkeypatch, capsys, "users", "set-password", "ann")
    assert code == 0 and "set the password of 'ann'" in out
    assert "a new secret" not in out + err
    assert not still_valid(ws, token)
    assert accounts.authenticate(ws, username="ann", password="a new secret 2") is not None
    code, out, _ = run(monkeypatch, capsys, "users", "set-password", "ann", "--generate")
    assert code == 0
    generated = out.split("password (shown once):")[1].split()[0]
    assert accounts.authenticate(ws, username="ann", password=generated) is not None
    monkeypatch.setattr(getpass, "getpass", lambda prompt="": "password1")
    code, _, err = run(monkeypatch, capsys, "users", "set-password", "ann")
    assert code == 2 and "first ones guessed" in err
    assert accounts.authenticate(ws, username="ann", password=generated) is not None


def test_set_role_and_clear_errors(ws: Workspace, monkeypatch, capsys) -> None:
    code, out, _ = run(monkeypatch, capsys, "users", "set-role", "ann", "doctor")
    assert code == 0 and "'ann' is now doctor" in out
    for args, message in (
        (("disable", "ghost"), "no user named 'ghost'"),
        (("set-password", "ghost", "--generate"), "no user named 'ghost'"),
        (("set-role", "ann", "docter"), "Did you mean 'doctor'?"),
        (("disable", "adam"), "'adam' is the last enabled admin"),
        (("set-role", "adam", "doctor"), "'adam' is the last enabled admin"),
    ):
        code, out, err = run(monkeypatch, capsys, "users", *args)
        assert code == 2 and message in err.replace("\n", " ") and "Traceback" not in err
        assert err.startswith("error:")
    log = audit_log(ws, actor="cli").entries
    assert [(e.actor, e.action, e.detail) for e in log] == [
        ("cli", "user.set_role", {"from": "annotator", "to": "doctor"})
    ]


def test_every_change_is_audited_as_the_command_line(ws: Workspace, monkeypatch, capsys) -> None:
    for args in (
        ("disable", "ann"),
        ("enable", "ann"),
        ("set-password", "ann", "--generate"),
        ("set-role", "ann", "admin"),
        ("revoke-sessions", "ann"),
    ):
        assert run(monkeypatch, capsys, "users", *args)[0] == 0
    log = audit_log(ws, actor="cli").entries
    assert [(e.actor, e.action) for e in reversed(log)] == [
        ("cli", "user.disable"),
        ("cli", "user.enable"),
        ("cli", "user.set_password"),
        ("cli", "user.set_role"),
        ("cli", "user.revoke_sessions"),
    ]


def test_grant_and_revoke_a_project_audited_and_listed(ws: Workspace, monkeypatch, capsys) -> None:
    with ws.db.session() as s:
        repo.create_project(s, name="chest", classes=["a", "b"], n_channels=1)
    code, out, _ = run(monkeypatch, capsys, "users", "grant", "dora", "chest")
    said = " ".join(out.split())
    assert (
        code == 0 and "granted 'dora' project 'chest'; 'chest' is for the admins and dora" in said
    )
    dora, ann = (
        accounts.account_in_role(ws, username=n, roles=list(Role)) for n in ("dora", "ann")
    )
    assert access.can_access(ws, dora, "chest") and not access.can_access(ws, ann, "chest")
    code, out, _ = run(monkeypatch, capsys, "users", "list", "--json")
    assert {u["username"]: u["projects"] for u in json.loads(out)} == {
        "adam": [],
        "ann": [],
        "dora": ["chest"],
    }
    code, out, _ = run(monkeypatch, capsys, "users", "list")
    assert code == 0 and "projects" in out and "chest" in out
    for args, message in (
        (("grant", "ghost", "chest"), "no user named 'ghost'"),
        (("grant", "dora", "nope"), "no project named 'nope'"),
        (("grant", "dora", "chest"), "'dora' is already a member of project 'chest'"),
        (("revoke", "ann", "chest"), "'ann' is not a member of project 'chest'"),
        (("revoke", "dora", "chest"), "'dora' is the last member of project 'chest'"),
    ):
        code, _, err = run(monkeypatch, capsys, "users", *args)
        assert code == 2 and err.startswith("error:") and message in err.replace("\n", " ")
    assert access.can_access(ws, dora, "chest") and not access.can_access(ws, ann, "chest")
    code, out, _ = run(monkeypatch, capsys, "users", "revoke", "dora", "chest", "--open")
    assert code == 0 and "'chest' has no members: it is open to every account" in " ".join(
        out.split()
    )
    assert access.can_access(ws, ann, "chest")
    log = audit_log(ws, action="access.").entries
    assert [(e.actor, e.action, e.entity_id) for e in reversed(log)] == [
        ("cli", "access.grant", str(dora.id)),
        ("cli", "access.revoke", str(dora.id)),
    ]
