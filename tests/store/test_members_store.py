"""Project members and the rule of who reaches which project (migration 0014), on SQLite
and PostgreSQL."""

from __future__ import annotations

from sqlalchemy import inspect, select
from store_support import project_with_items

from medloop.store import Database, members
from medloop.store import jobs as job_store
from medloop.store import patients as prepo
from medloop.store import repository as repo
from medloop.store.models import Job
from medloop.types import Role


def test_a_project_with_members_is_theirs_and_the_admins_only(database: Database) -> None:
    with database.session() as s:
        chest, _ = project_with_items(s, 2)
        skin = repo.create_project(s, name="skin", classes=["a", "b"], n_channels=1)
        ids = {
            name: repo.create_user(s, username=name, role=role).id
            for name, role in (("adam", Role.ADMIN), ("dora", Role.DOCTOR), ("otto", Role.DOCTOR))
        }
        projects = {"chest": chest.id, "skin": skin.id}
    with database.session() as s:
        everyone = set(projects.values())
        for name in ids:  # no members anywhere: every project is open, as before 0014
            assert members.visible_project_ids(s, user_id=ids[name], role="doctor") == everyone
        assert members.add_member(s, project_id=projects["chest"], user_id=ids["dora"])
        assert not members.add_member(s, project_id=projects["chest"], user_id=ids["dora"])
    with database.session() as s:
        assert members.visible_project_ids(s, user_id=ids["otto"], role="doctor") == {
            projects["skin"]
        }
        assert members.visible_project_ids(s, user_id=ids["dora"], role="doctor") == everyone
        assert members.visible_project_ids(s, user_id=ids["adam"], role="admin") == everyone
        assert members.member_names(s, project_id=projects["chest"]) == ["dora"]
        assert members.memberships(s) == {ids["dora"]: ["chest"]}
        assert not members.remove_member(s, project_id=projects["chest"], user_id=ids["otto"])
        assert members.remove_member(s, project_id=projects["chest"], user_id=ids["dora"])
    with database.session() as s:
        assert members.visible_project_ids(s, user_id=ids["otto"], role="doctor") == everyone


def test_things_inside_a_project_are_reached_through_it(database: Database) -> None:
    with database.session() as s:
        chest, items = project_with_items(s, 2)
        dora = repo.create_user(s, username="dora", role=Role.DOCTOR).id
        otto = repo.create_user(s, username="otto", role=Role.DOCTOR).id
        adam = repo.create_user(s, username="adam", role=Role.ADMIN).id
        (task,) = repo.create_tasks(s, project_id=chest.id, item_ids=items[:1], required_answers=3)
        job = job_store.add_job(s, kind="train", project_id=chest.id, requested_by="dora").id
        s.add(Job(kind="other", status="succeeded", requested_by="system"))
        s.flush()
        loose_job = s.scalar(select(Job.id).where(Job.project_id.is_(None)))
        cohort = repo.create_project(s, name="trial", classes=repo.COHORT_CLASSES, n_channels=1)
        (patient,) = repo.ensure_patients(s, project_id=cohort.id, pseudonyms=["p1"]).values()
        rec = prepo.add_recommendation(s, patient_id=patient, recommendation="treat").id
        members.add_member(s, project_id=chest.id, user_id=dora)
        members.add_member(s, project_id=cohort.id, user_id=dora)
    inside = [
        ("project", "chest"),
        ("item", items[0]),
        ("task", task),
        ("job", job),
        ("project", "trial"),
        ("recommendation", rec),
    ]
    with database.session() as s:
        for kind, key in inside:
            assert members.reaches(s, user_id=dora, role="doctor", kind=kind, key=key)
            assert members.reaches(s, user_id=adam, role="admin", kind=kind, key=key)
            assert not members.reaches(s, user_id=otto, role="doctor", kind=kind, key=key), kind
        assert members.reaches(s, user_id=otto, role="doctor", kind="job", key=loose_job)
        for kind, key in (("project", "nope"), ("item", 10**6), ("recommendation", 10**6)):
            assert not members.reaches(s, user_id=adam, role="admin", kind=kind, key=key)


def test_migration_0014_keeps_data_and_opens_every_project(database: Database) -> None:
    database.downgrade("0013")
    assert "project_members" not in inspect(database.engine).get_table_names()
    with database.session() as s:  # projects and users are as 0013 left them
        chest, items = project_with_items(s, 3)
        otto = repo.create_user(s, username="otto", role=Role.ANNOTATOR).id
    database.migrate()
    with database.session() as s:
        assert repo.items_frame(s, project_id=chest.id).index.tolist() == items
        assert repo.get_user(s, username="otto").id == otto
        assert members.visible_project_ids(s, user_id=otto, role="annotator") == {chest.id}
        members.add_member(s, project_id=chest.id, user_id=otto)
    database.downgrade("0013")
    database.migrate()
    with database.session() as s:
        assert members.member_names(s, project_id=chest.id) == []
