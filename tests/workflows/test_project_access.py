"""The project rule for accounts (`workflows.access`): open projects, members, admins;
an admin's grants and revocations with their clear errors and audit entries."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from medloop.config import Settings
from medloop.exceptions import ConflictError, InvalidInputError, NotFoundError
from medloop.store import repository as repo
from medloop.types import Role
from medloop.workflows import Workspace, access
from medloop.workflows.accounts import Account
from medloop.workflows.audit import audit_log


@pytest.fixture
def ws(tmp_path: Path) -> Iterator[Workspace]:
    """Projects chest and skin; an admin, two doctors, an annotator and a simulated one."""
    workspace = Workspace.open(Settings(home=tmp_path / "home", secret_key="k"))
    with workspace.db.session() as s:
        for name in ("chest", "skin"):
            repo.create_project(s, name=name, classes=["a", "b"], n_channels=1)
        for name, role in (
            ("adam", Role.ADMIN),
            ("dora", Role.DOCTOR),
            ("otto", Role.DOCTOR),
            ("ann", Role.ANNOTATOR),
        ):
            repo.create_user(s, username=name, role=role)
        repo.create_user(s, username="sim-1", role=Role.ANNOTATOR, simulated=True)
    yield workspace
    workspace.close()


def account(ws: Workspace, username: str) -> Account:
    with ws.db.session() as s:
        user = repo.get_user(s, username=username)
        return Account(id=user.id, username=user.username, role=Role(user.role))


def test_members_and_admins_reach_a_restricted_project_others_do_not(ws: Workspace) -> None:
    dora, otto, adam = (account(ws, n) for n in ("dora", "otto", "adam"))
    assert access.visible_projects(ws, otto) == ["chest", "skin"]  # no members: open
    now = access.grant(ws, username="dora", project="chest", actor="adam")
    assert now == access.ProjectMembers("chest", ["dora"]) and now.restricted
    assert [access.can_access(ws, a, "chest") for a in (dora, otto, adam)] == [True, False, True]
    assert access.visible_projects(ws, otto) == ["skin"]
    assert access.visible_projects(ws, adam) == ["chest", "skin"]
    assert not access.can_access(ws, adam, "nope")
    with pytest.raises(NotFoundError) as hidden:
        access.check(ws, otto, "project", "chest")
    with pytest.raises(NotFoundError) as missing:
        access.check(ws, otto, "project", "nope")
    assert (str(hidden.value), str(missing.value)) == (
        "no project named 'chest'",
        "no project named 'nope'",
    ), "a hidden project is said as one that does not exist, and no other is named"
    access.check(ws, dora, "project", "chest")
    access.check(ws, otto, "project", "skin")


def test_grants_and_revocations_are_audited_with_clear_errors(ws: Workspace) -> None:
    access.grant(ws, username="dora", project="chest", actor="adam")
    access.grant(ws, username="otto", project="chest", actor="adam")
    for change, error, words in (
        (lambda: access.grant(ws, username="ghost", project="chest", actor="adam"),
         NotFoundError, "no user named 'ghost'"),
        (lambda: access.grant(ws, username="dora", project="nope", actor="adam"),
         NotFoundError, "no project named 'nope'"),
        (lambda: access.grant(ws, username="sim-1", project="chest", actor="adam"),
         InvalidInputError, "'sim-1' is simulated"),
        (lambda: access.grant(ws, username="dora", project="chest", actor="adam"),
         ConflictError, "'dora' is already a member of project 'chest'"),
        (lambda: access.revoke(ws, username="ann", project="chest", actor="adam"),
         ConflictError, "'ann' is not a member of project 'chest'"),
    ):  # fmt: skip
        with pytest.raises(error, match=words):
            change()
    assert access.revoke(ws, username="otto", project="chest", actor="adam").members == ["dora"]
    with pytest.raises(ConflictError, match=r"last member of project 'chest'.*--open"):
        access.revoke(ws, username="dora", project="chest", actor="adam")
    assert access.project_members(ws, project="chest").members == ["dora"]  # nothing changed
    opened = access.revoke(ws, username="dora", project="chest", actor="adam", open_project=True)
    assert not opened.restricted
    assert access.can_access(ws, account(ws, "otto"), "chest")
    log = audit_log(ws, action="access.").entries
    ids = {u: account(ws, u).id for u in ("dora", "otto")}
    chest = log[0].detail["project"]
    assert [(e.actor, e.action, e.entity, e.entity_id, e.detail) for e in reversed(log)] == [
        ("adam", "access.grant", "user", str(ids["dora"]), {"project": chest}),
        ("adam", "access.grant", "user", str(ids["otto"]), {"project": chest}),
        ("adam", "access.revoke", "user", str(ids["otto"]), {"project": chest}),
        ("adam", "access.revoke", "user", str(ids["dora"]), {"project": chest, "opened": True}),
    ]
