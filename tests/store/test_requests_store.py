"""Labelling requests from a plan (more answers, review requests), on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from store_support import project_with_items

from medloop.exceptions import InvalidInputError
from medloop.store import Database
from medloop.store import repository as repo
from medloop.types import LabelSource, Role, TaskKind


def test_more_answers_reopen_the_items_task_and_review_requests_are_answered(
    database: Database,
) -> None:
    with database.session() as s:
        project, (first, second, third) = project_with_items(s, 3)
        (task,) = repo.create_tasks(s, project_id=project.id, item_ids=[first], required_answers=1)
        anna = repo.create_user(s, username="anna", role=Role.ANNOTATOR, password_hash=None).id
        repo.add_answers(
            s, task_ids=[task], worker_ids=[anna], labels=[0], source=LabelSource.CROWD
        )
        project_id = project.id
    with database.session() as s:
        opened = repo.request_answers(
            s, project_id=project_id, item_ids=[first, second], answers=[2, 3]
        )
        assert opened == repo.AnswerRequest(tasks=2, answers=5)
        review = repo.review_tasks(s, project_id=project_id, item_ids=[third])
        assert repo.requested_reviews(s, project_id=project_id) == {third}
        assert repo.pending_items(s, project_id=project_id) == {first, second, third}
    with database.session() as s:
        tasks = repo.tasks_frame(s, project_id=project_id).set_index("item")
    # the answered task opens again for two more; the unanswered item gets a task of three
    assert tasks.loc[first, ["status", "required_answers"]].tolist() == ["open", 3]
    assert tasks.loc[second, ["status", "required_answers"]].tolist() == ["open", 3]
    assert tasks.loc[third, "kind"] == TaskKind.REVIEW
    with database.session() as s:
        # the same plan published again asks nothing more and says so; a smaller one does
        # not lower what is pending
        again = repo.request_answers(
            s, project_id=project_id, item_ids=[first, second], answers=[2, 1]
        )
        assert again == repo.AnswerRequest(0, 0)
        # one more than pending on the first item asks for that one only
        assert repo.request_answers(
            s, project_id=project_id, item_ids=[first], answers=[3]
        ) == repo.AnswerRequest(1, 1)
        tasks = repo.tasks_frame(s, project_id=project_id).set_index("item")
    assert tasks.loc[[first, second], "required_answers"].tolist() == [4, 3]
    with database.session() as s:
        # a decision on the item answers its open request instead of opening another
        assert repo.review_tasks(s, project_id=project_id, item_ids=[third]) == review
        dora = repo.create_user(s, username="dora", role=Role.DOCTOR, password_hash=None).id
        repo.add_answers(
            s, task_ids=review, worker_ids=[dora], labels=[1], source=LabelSource.DOCTOR
        )
    with database.session() as s:
        assert repo.requested_reviews(s, project_id=project_id) == set()
        assert repo.pending_items(s, project_id=project_id) == {first, second}


def test_class_names_a_spreadsheet_would_run_are_refused(database: Database) -> None:
    for bad in ("=1+1", "@SUM(A1)", "+cmd|' /C calc'!A0", "-x", "\tname"):
        with pytest.raises(InvalidInputError, match="would run as a formula"):
            repo.check_class_names(["ok", bad])
    repo.check_class_names(["-1", "+1", "a-b", "1e3"])  # numbers and inner signs are fine
    with database.session() as s, pytest.raises(InvalidInputError, match="formula"):
        repo.create_project(s, name="p", classes=["a", "=b"], n_channels=1)
