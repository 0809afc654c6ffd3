"""Users as an admin manages them: listing, enabled admins, and migration 0013."""

from __future__ import annotations

import pytest
from sqlalchemy import update
from store_support import add_old_users

from medloop.exceptions import InvalidInputError
from medloop.store import Database
from medloop.store import repository as repo
from medloop.store.models import User
from medloop.types import Role


def test_users_are_listed_by_name_and_only_real_enabled_admins_count(database: Database) -> None:
    with database.session() as s:
        for name, role in (("zoe", Role.ADMIN), ("Adam", Role.ADMIN), ("bo", Role.DOCTOR)):
            repo.create_user(s, username=name, role=role)
        repo.create_user(s, username="robot", role=Role.ADMIN, simulated=True)
    with database.session() as s:
        users = repo.list_users(s)
        assert [u.username for u in users] == ["Adam", "bo", "robot", "zoe"]
        assert not any(u.is_disabled or u.token_epoch for u in users)
        ids = {u.username: u.id for u in users}
        assert repo.enabled_admin_ids(s) == sorted([ids["Adam"], ids["zoe"]])
        s.execute(update(User).where(User.username == "zoe").values(is_disabled=True))
        assert repo.enabled_admin_ids(s) == [ids["Adam"]]
        credentials = repo.user_credentials(s, user_id=ids["zoe"])
        assert credentials is not None and credentials.is_disabled
        assert credentials.token_epoch == 0


def test_a_disabled_user_cannot_act_from_the_command_line(database: Database) -> None:
    with database.session() as s:
        repo.create_user(s, username="dr_house", role=Role.DOCTOR)
        s.execute(update(User).values(is_disabled=True))
    with pytest.raises(InvalidInputError, match="'dr_house' is disabled"), database.session() as s:
        repo.get_user_in_role(s, username="dr_house", roles=[Role.DOCTOR])


def test_migration_0013_keeps_users_enabled_and_goes_down_and_up(database: Database) -> None:
    database.downgrade("0012")
    with database.engine.begin() as connection:
        add_old_users(connection, role="admin", usernames=["ann"])
    database.migrate()
    with database.session() as s:
        user = repo.get_user(s, username="ann")
        assert (user.is_disabled, user.token_epoch) == (False, 0)
        assert repo.enabled_admin_ids(s) == [user.id]
