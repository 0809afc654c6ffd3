"""Accounts: Argon2 hashes, signed tokens (expiry, purpose, password change), CLI."""

from __future__ import annotations

import io
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import func, select

from cli_support import run
from medloop.config import Settings
from medloop.exceptions import ConflictError, InvalidInputError
from medloop.store.models import RevokedToken, User
from medloop.types import Role
from medloop.workflows import Workspace, accounts


@pytest.fixture
def ws(tmp_path: Path) -> Iterator[Workspace]:
    workspace = Workspace.open(Settings(home=tmp_path / "home", secret_key="k" * 32))
    yield workspace
    workspace.close()


def test_passwords_are_argon2_hashed(ws: Workspace) -> None:
    account = accounts.add_user(ws, username="ann", role="annotator", password="long enough")
    assert account.role is Role.ANNOTATOR
    with ws.db.session() as s:
        stored = s.scalar(select(User.password_hash).where(User.username == "ann"))
    assert stored is not None and stored.startswith("$argon2id$")
    assert "long enough" not in stored
    assert accounts.authenticate(ws, username="ann", password="long enough") == account
    assert accounts.authenticate(ws, username="ann", password="long enougH") is None
    assert accounts.authenticate(ws, username="ghost", password="long enough") is None


def test_bad_accounts_are_refused(ws: Workspace) -> None:
    accounts.add_user(ws, username="ann", role=Role.DOCTOR, password="long enough")
    with pytest.raises(ConflictError):
        accounts.add_user(ws, username="ann", role=Role.DOCTOR, password="long enough")
    with pytest.raises(InvalidInputError, match="at least 8"):
        accounts.add_user(ws, username="bo", role=Role.DOCTOR, password="short")
    with pytest.raises(InvalidInputError, match="Did you mean"):
        accounts.add_user(ws, username="bo", role="docter", password="long enough")
    with pytest.raises(InvalidInputError, match="username"):
        accounts.add_user(ws, username="../etc", role=Role.DOCTOR, password="long enough")
    with pytest.raises(ConflictError, match="user 'ann' already exists"):
        accounts.add_user(ws, username="ANN", role=Role.DOCTOR, password="long enough")
    for name in ("system", "Model", "cli"):  # the audit log's automated actors
        with pytest.raises(InvalidInputError, match="automated work"):
            accounts.add_user(ws, username=name, role=Role.ADMIN, password="long enough")
    for guessed in ("password", "password1234", "Qwerty123!", "12345678", "aaaaaaaaaa"):
        with pytest.raises(InvalidInputError, match="first ones guessed"):
            accounts.add_user(ws, username="bo", role=Role.DOCTOR, password=guessed)
    with pytest.raises(InvalidInputError, match="must not contain the username"):
        accounts.add_user(ws, username="dr_house", role=Role.DOCTOR, password="i am dr_house!")
    assert accounts.add_user(ws, username="bo", role=Role.DOCTOR, password="tamoxifen in 2024")
    with pytest.raises(InvalidInputError, match="username"):  # full-width look-alikes
        accounts.add_user(ws, username="\uff41nn", role=Role.DOCTOR, password="long enough")


def test_tokens_check_signature_purpose_expiry_and_password(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    account = accounts.add_user(ws, username="ann", role="annotator", password="long enough")
    token = accounts.issue_token(ws, account)
    assert accounts.account_for_token(ws, token) == account
    assert accounts.account_for_token(ws, token, purpose="session") is None
    assert accounts.account_for_token(ws, token + "x") is None
    assert accounts.account_for_token(ws, "no-dot") is None
    expired = accounts.issue_token(ws, account, ttl=-1)
    assert accounts.account_for_token(ws, expired) is None
    other = Workspace(
        settings=Settings(home=ws.settings.home, secret_key="z" * 32), db=ws.db, blobs=ws.blobs
    )
    assert accounts.account_for_token(other, token) is None
    with ws.db.session() as s:
        user = s.scalar(select(User).where(User.username == "ann"))
        assert user is not None
        user.password_hash = accounts.hash_password("a new password")
    # the database is asked again only after TOKEN_RECHECK_SECONDS (per token)
    assert accounts.account_for_token(ws, token) == account
    later = accounts.time.time() + accounts.TOKEN_RECHECK_SECONDS + 1
    monkeypatch.setattr(accounts.time, "time", lambda: later)
    assert accounts.account_for_token(ws, token) is None
    assert accounts.account_for_token(ws, accounts.issue_token(ws, account)) == account


def test_revoked_tokens_are_refused_until_they_expire(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    account = accounts.add_user(ws, username="ann", role="annotator", password="long enough")
    token, kept = accounts.issue_token(ws, account), accounts.issue_token(ws, account, ttl=60)
    assert accounts.account_for_token(ws, token) == account  # now in the recheck cache
    assert accounts.revoke_token(ws, token, purpose="api")
    assert accounts.revoke_token(ws, token, purpose="api")  # twice is fine
    assert accounts.account_for_token(ws, token) is None
    assert not accounts.revoke_token(ws, token + "x", purpose="api")  # not a valid token
    assert not accounts.revoke_token(ws, token, purpose="session")
    assert accounts.account_for_token(ws, kept) == account
    # the row is forgotten once the token has expired anyway (at the next revocation)
    later = accounts.time.time() + accounts.TOKEN_TTL + 1
    monkeypatch.setattr(accounts.time, "time", lambda: later)
    accounts.revoke_token(ws, accounts.issue_token(ws, account), purpose="api")
    with ws.db.session() as s:
        assert s.scalar(select(func.count()).select_from(RevokedToken)) == 1


def test_cli_users_add(home: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("a chosen password\n"))
    code, out, _ = run(
        monkeypatch, capsys, "users", "add", "dora", "--role", "doctor", "--password-stdin"
    )
    assert code == 0 and "created doctor 'dora'" in out and "password" not in out.replace("--", "")
    code, out, _ = run(monkeypatch, capsys, "users", "add", "ann", "--role", "annotator")
    assert code == 0
    generated = out.split("password (shown once):")[1].split()[0]
    code, _, err = run(monkeypatch, capsys, "users", "add", "ann", "--role", "annotator")
    assert code == 2 and "already exists" in err
    code, _, _ = run(monkeypatch, capsys, "users", "add", "x", "--role", "boss")
    assert code == 2
    ws = Workspace.open(Settings())
    try:
        assert accounts.authenticate(ws, username="dora", password="a chosen password") is not None
        assert accounts.authenticate(ws, username="ann", password=generated) is not None
    finally:
        ws.close()


def test_cli_serve_defaults_to_loopback(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    import uvicorn

    seen: dict[str, object] = {}

    def fake_run(app: object, **kwargs: object) -> None:
        seen.update(kwargs, app=app)

    monkeypatch.setattr(uvicorn, "run", fake_run)
    code, _, _ = run(monkeypatch, capsys, "serve")
    assert code == 0
    assert seen["host"] == "127.0.0.1" and seen["port"] == 8000
    assert type(seen["app"]).__name__ == "FastAPI"
    code, _, _ = run(monkeypatch, capsys, "serve", "--port", "8123")
    assert seen["port"] == 8123


def test_cli_export_answers_and_labels(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    from web_support import build_project

    ws = Workspace.open(Settings())
    try:
        gold = build_project(ws)
    finally:
        ws.close()
    code, out, _ = run(
        monkeypatch, capsys, "export", "labels", str(tmp_path / "labels.csv"), "-p", "chest"
    )
    assert code == 0 and "wrote 4 labels" in out
    labels = pd.read_csv(tmp_path / "labels.csv")
    assert labels["item"].tolist() == sorted(gold)
    code, out, _ = run(
        monkeypatch, capsys, "export", "answers", str(tmp_path / "answers.csv"), "-p", "chest"
    )
    assert code == 0
    answers = pd.read_csv(tmp_path / "answers.csv")
    assert set(answers["source"]) == {"doctor"} and len(answers) == 4
    code, _, err = run(monkeypatch, capsys, "export", "labels", str(tmp_path / "x.csv"), "-p", "no")
    assert code == 2 and "no project" in err
