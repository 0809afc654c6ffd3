"""Repository functions for people working in the web: open tasks, own answers, gold truth.

Keyword-only, session first, like `repository`; these read one person's slice of the
tables so a request never loads a whole project.
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import (
    BindParameter,
    CompoundSelect,
    Executable,
    bindparam,
    case,
    delete,
    exists,
    func,
    insert,
    select,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, aliased

from medloop.store.db import plain_execute
from medloop.store.models import (
    Answer,
    AnswerBox,
    ItemLabel,
    ModelVersion,
    Prediction,
    Project,
    Task,
    TaskHold,
    TaskSkip,
    User,
)
from medloop.types import LabelKind, TaskKind, TaskStatus


class OpenTask(NamedTuple):
    """An open labelling task on an item a person has not answered yet."""

    task_id: int
    item_id: int
    project_id: int
    is_gold: bool
    round: int
    answers: int
    required: int


def _items_seen_by(worker: int | BindParameter[int]) -> CompoundSelect:
    """Items `worker` answered or skipped through any task: an item may have several
    labelling tasks (a gold question on an item labelled earlier, a request for more
    answers), and one person answers an item once, or the crowd model counts them twice."""
    skipped_task = aliased(Task)
    answered = select(Answer.item_id).where(Answer.worker_id == worker)
    skipped = (
        select(skipped_task.item_id)
        .join(TaskSkip, TaskSkip.task_id == skipped_task.id)
        .where(TaskSkip.worker_id == worker)
    )
    return answered.union(skipped)


# The statements a web request runs are built once: building one costs more CPU than
# running it. Values are bound at execution ("expanding" binds take lists). They run on
# the session's connection: plain rows, without the ORM's result machinery.
@functools.cache
def _open_tasks_query(*, gold: bool | None, limited: bool) -> Executable:
    # Matches ix_tasks_queue, so the database reads open tasks in order and stops early.
    query = (
        select(
            Task.id,
            Task.item_id,
            Task.project_id,
            Task.is_gold,
            Task.round,
            Task.answer_count,
            Task.required_answers,
        )
        .where(
            Task.project_id.in_(bindparam("projects", expanding=True)),
            Task.status == str(TaskStatus.OPEN),
            Task.kind == str(TaskKind.LABEL),
            Task.item_id.not_in(_items_seen_by(bindparam("worker"))),
        )
        .order_by(Task.answer_count.desc(), Task.id)
    )
    if gold is not None:
        query = query.where(Task.is_gold.is_(gold))
    return query.limit(bindparam("limit")) if limited else query


def open_tasks_for_worker(
    session: Session,
    *,
    worker_id: int,
    project_ids: Collection[int],
    limit: int | None = None,
    gold: bool | None = None,
) -> list[OpenTask]:
    """Open labelling tasks in `project_ids` whose item `worker_id` has neither answered
    nor skipped (through any task), most answers first, then by task id; `gold` keeps
    only gold (True) or only ordinary (False) tasks."""
    if not project_ids:
        return []
    query = _open_tasks_query(gold=gold, limited=limit is not None)
    values: dict[str, Any] = {"worker": worker_id, "projects": list(project_ids)}
    if limit is not None:
        values["limit"] = limit
    return [OpenTask._make(row) for row in plain_execute(session, query, values)]


def count_open_tasks_for_worker(
    session: Session, *, worker_id: int, project_ids: Collection[int]
) -> int:
    """How many items `worker_id` could still answer through open labelling tasks: items
    they have neither answered nor skipped."""
    if not project_ids:
        return 0
    return int(
        session.scalar(
            select(func.count(Task.item_id.distinct())).where(
                Task.project_id.in_(list(project_ids)),
                Task.kind == str(TaskKind.LABEL),
                Task.status == str(TaskStatus.OPEN),
                Task.item_id.not_in(_items_seen_by(worker_id)),
            )
        )
        or 0
    )


# Holds: who was handed which task and has not answered it yet (one per person).
# PostgreSQL serialises claims on this transaction-level advisory lock; SQLite's single
# writer already does. Without it, two READ COMMITTED claims could both count the same
# free place.
HOLD_LOCK = 0x6D65646C  # any fixed key: "medl"
_HELD_BY_OTHERS = (
    select(func.count())
    .where(TaskHold.task_id == Task.id, TaskHold.expires_at >= bindparam("now"))
    .correlate(Task)
    .scalar_subquery()
)
_ROOM = select(Task.id, Task.required_answers - Task.answer_count - _HELD_BY_OTHERS).where(
    Task.id.in_(bindparam("tasks", expanding=True)), Task.status == str(TaskStatus.OPEN)
)
_ADD_HOLD = insert(TaskHold)
_RELEASE_HOLD = delete(TaskHold).where(TaskHold.worker_id == bindparam("worker"))


def hold_first(
    session: Session, *, worker_id: int, task_ids: Sequence[int], now: float, seconds: float
) -> int | None:
    """Hold for `worker_id`, until `now + seconds`, the first of `task_ids` (best first)
    that is open and held (unexpired) by fewer other people than it still needs answers;
    returns it, or None. Their earlier hold ends either way.

    Run it in a short write transaction of its own: claims take turns, so two people
    asking at once cannot both take a task's last place, and answers committed before
    the claim (which end their person's hold) are counted."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": HOLD_LOCK})
    plain_execute(session, _RELEASE_HOLD, {"worker": worker_id})
    if not task_ids:
        return None
    room = dict(plain_execute(session, _ROOM, {"tasks": list(task_ids), "now": now}).all())
    chosen = next((t for t in task_ids if room.get(t, 0) > 0), None)
    if chosen is not None:
        values = {"worker_id": worker_id, "task_id": chosen, "expires_at": now + seconds}
        plain_execute(session, _ADD_HOLD, values)
    return chosen


def release_hold(session: Session, *, worker_id: int) -> None:
    """End `worker_id`'s hold (they answered or skipped their task)."""
    plain_execute(session, _RELEASE_HOLD, {"worker": worker_id})


def add_skip(session: Session, *, worker_id: int, task_id: int, reason: str) -> None:
    """Remember that `worker_id` skipped `task_id` (or was unsure); skipping it again
    keeps one row with the newest reason."""
    dialect = session.get_bind().dialect.name
    upsert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = upsert(TaskSkip).values(worker_id=worker_id, task_id=task_id, reason=reason)
    session.execute(
        statement.on_conflict_do_update(
            index_elements=[TaskSkip.worker_id, TaskSkip.task_id],
            set_={"reason": statement.excluded.reason},
        )
    )


@functools.cache
def _final_labels_query() -> Executable:
    newest = (
        select(func.max(ItemLabel.id))
        .where(
            ItemLabel.item_id.in_(bindparam("items", expanding=True)),
            ItemLabel.kind == str(LabelKind.FINAL),
        )
        .group_by(ItemLabel.item_id)
    )
    return select(ItemLabel.item_id, ItemLabel.label).where(ItemLabel.id.in_(newest))


def final_labels_for(session: Session, *, item_ids: Collection[int]) -> dict[int, int]:
    """The current final (doctor-signed or gold) label of each given item that has one."""
    if not item_ids:
        return {}
    rows = plain_execute(session, _final_labels_query(), {"items": list(item_ids)})
    return {int(item): int(label) for item, label in rows}


@dataclass(frozen=True)
class WorkerTally:
    """One person's labelling answers: how many, how many on gold questions, and of
    those (when scored) how many have a final label to check against and were right."""

    answered: int
    gold_answered: int
    gold_scored: int = 0
    gold_correct: int = 0


@functools.cache
def _tally_query(*, score: bool) -> Executable:
    columns: list[Any] = [Answer.id, Task.is_gold, Answer.label]
    if score:  # the item's newest final label, looked up for gold answers only
        truth = (
            select(ItemLabel.label)
            .where(ItemLabel.item_id == Answer.item_id, ItemLabel.kind == str(LabelKind.FINAL))
            .order_by(ItemLabel.id.desc())
            .limit(1)
            .correlate(Answer)
            .scalar_subquery()
        )
        columns.append(case((Task.is_gold.is_(True), truth)).label("truth"))
    rows = (
        select(*columns)
        .join(Task, Task.id == Answer.task_id)
        .where(Answer.worker_id == bindparam("worker"), Task.kind == str(TaskKind.LABEL))
        .subquery()
    )
    counts = [func.count(rows.c.id), func.count(case((rows.c.is_gold.is_(True), rows.c.id)))]
    if score:
        counts.append(func.count(rows.c.truth))
        counts.append(func.count(case((rows.c.truth == rows.c.label, rows.c.id))))
    return select(*counts)


def worker_tally(session: Session, *, worker_id: int, score: bool = False) -> WorkerTally:
    """Count one person's labelling answers in one query; `score` also checks their gold
    answers against each item's current final label (the newest one)."""
    counts = plain_execute(session, _tally_query(score=score), {"worker": worker_id}).one()
    return WorkerTally(*(int(n) for n in counts))


@dataclass(frozen=True)
class LabelTask:
    """What answering a labelling task needs to know about it, for one person."""

    task_id: int
    item_id: int
    is_gold: bool
    is_open: bool
    #: the person has answered the task's item already (through this task or another)
    answered: bool
    #: it is the task the person was handed last (their hold, expired or not)
    handed: bool
    choices: list[str]


_LABEL_TASK = (
    select(
        Task.item_id,
        Task.is_gold,
        Task.status,
        exists()
        .where(Answer.worker_id == bindparam("worker"), Answer.item_id == Task.item_id)
        .correlate(Task),
        exists()
        .where(TaskHold.worker_id == bindparam("worker"), TaskHold.task_id == Task.id)
        .correlate(Task),
        Project.classes,
    )
    .join(Project, Project.id == Task.project_id)
    .where(Task.id == bindparam("task"), Task.kind == str(TaskKind.LABEL))
)


def label_task(session: Session, *, task_id: int, worker_id: int) -> LabelTask | None:
    """The labelling task `task_id` with its project's class names, as `worker_id` may
    answer it; None when there is no such task."""
    row = plain_execute(session, _LABEL_TASK, {"task": task_id, "worker": worker_id})
    found = row.one_or_none()
    if found is None:
        return None
    item_id, is_gold, status, answered, handed, classes = found
    return LabelTask(
        task_id=task_id,
        item_id=item_id,
        is_gold=bool(is_gold),
        is_open=status == str(TaskStatus.OPEN),
        answered=bool(answered),
        handed=bool(handed),
        choices=[str(c) for c in classes],
    )


@dataclass(frozen=True)
class ProjectChoices:
    project_id: int
    name: str
    choices: list[str]


_PROJECTS = select(Project.id, Project.name, Project.classes).order_by(Project.id)
_PROJECT_NAMED = _PROJECTS.where(Project.name == bindparam("name"))


def project_choices(session: Session, *, name: str | None = None) -> list[ProjectChoices]:
    """Projects (all, by id, or the one called `name`) with their class names."""
    rows = (
        plain_execute(session, _PROJECTS)
        if name is None
        else plain_execute(session, _PROJECT_NAMED, {"name": name})
    )
    return [
        ProjectChoices(project_id=i, name=n, choices=[str(c) for c in classes])
        for i, n, classes in rows
    ]


def add_answer_box(session: Session, *, answer_id: int, box: Sequence[float]) -> int:
    """Store the box [x, y, width, height] (fractions of the image) drawn with an answer."""
    x, y, width, height = (float(v) for v in box)
    row = AnswerBox(answer_id=answer_id, x=x, y=y, width=width, height=height)
    session.add(row)
    session.flush()
    return row.id


@dataclass(frozen=True)
class ItemAnswer:
    worker: str
    label: int
    source: str
    is_gold: bool
    box: tuple[float, float, float, float] | None = None


def item_answers(session: Session, *, item_id: int) -> list[ItemAnswer]:
    """All answers given for one item (every task) with their box if any, oldest first."""
    rows = session.execute(
        select(
            User.username,
            Answer.label,
            Answer.source,
            Task.is_gold,
            AnswerBox.x,
            AnswerBox.y,
            AnswerBox.width,
            AnswerBox.height,
        )
        .join(User, User.id == Answer.worker_id)
        .join(Task, Task.id == Answer.task_id)
        .outerjoin(AnswerBox, AnswerBox.answer_id == Answer.id)
        .where(Answer.item_id == item_id)
        .order_by(Answer.id)
    )
    return [
        ItemAnswer(
            worker=w,
            label=int(lb),
            source=s,
            is_gold=bool(g),
            box=None if x is None else (float(x), float(y), float(bw), float(bh)),
        )
        for w, lb, s, g, x, y, bw, bh in rows
    ]


def item_handed_to(session: Session, *, item_id: int, worker_id: int) -> bool:
    """Whether the item is on the task `worker_id` holds now, or on one they answered:
    the images a lay annotator has been shown."""
    held = (
        select(TaskHold.task_id)
        .join(Task, Task.id == TaskHold.task_id)
        .where(TaskHold.worker_id == worker_id, Task.item_id == item_id)
    )
    answered = select(Answer.id).where(Answer.worker_id == worker_id, Answer.item_id == item_id)
    return session.scalar(held.limit(1)) is not None or (
        session.scalar(answered.limit(1)) is not None
    )


_MODEL_IN_USE = select(ModelVersion.id).where(
    ModelVersion.project_id == bindparam("project"), ModelVersion.in_use.is_(True)
)
_PREDICTIONS = select(Prediction.item_id, Prediction.probabilities).where(
    Prediction.model_version_id == bindparam("model"),
    Prediction.item_id.in_(bindparam("items", expanding=True)),
)


def current_model_id(session: Session, *, project_id: int) -> int | None:
    """The id of the model version the project uses, or None."""
    return plain_execute(session, _MODEL_IN_USE, {"project": project_id}).scalar()


def predictions_for(
    session: Session, *, model_version_id: int, item_ids: Sequence[int]
) -> dict[int, list[float]]:
    """A model version's probabilities for the given items (those it has)."""
    if not item_ids:
        return {}
    rows = plain_execute(
        session, _PREDICTIONS, {"model": model_version_id, "items": list(item_ids)}
    )
    return {int(item): [float(p) for p in probs] for item, probs in rows}


def current_predictions_for(
    session: Session, *, project_id: int, item_ids: Sequence[int]
) -> dict[int, list[float]]:
    """The probabilities of the model version the project uses for the given items
    (those it has)."""
    if not item_ids:
        return {}
    current = current_model_id(session, project_id=project_id)
    if current is None:
        return {}
    return predictions_for(session, model_version_id=current, item_ids=item_ids)


def final_labels_since(session: Session, *, project_id: int, since: datetime) -> int:
    """How many final labels of the project were signed (or corrected) after `since`."""
    query = select(func.count(ItemLabel.id)).where(
        ItemLabel.project_id == project_id,
        ItemLabel.kind == str(LabelKind.FINAL),
        ItemLabel.created_at > since,
    )
    return int(session.scalar(query) or 0)


@dataclass(frozen=True)
class FinalLabelRecord:
    """One final label an item was given: which class, from where (a doctor's review,
    a correction, gold), by whom and when; the newest is the current one."""

    label_id: int
    label: int
    source: str
    method: str
    decided_by: str | None
    created_at: datetime


def final_label_history(session: Session, *, item_id: int) -> list[FinalLabelRecord]:
    """Every final label of an item, oldest first (rows are appended, never edited)."""
    query = (
        select(
            ItemLabel.id,
            ItemLabel.label,
            ItemLabel.source,
            ItemLabel.method,
            User.username,
            ItemLabel.created_at,
        )
        .outerjoin(User, User.id == ItemLabel.decided_by_id)
        .where(ItemLabel.item_id == item_id, ItemLabel.kind == str(LabelKind.FINAL))
        .order_by(ItemLabel.id)
    )
    return [
        FinalLabelRecord(
            label_id=int(row[0]),
            label=int(row[1]),
            source=str(row[2]),
            method=str(row[3]),
            decided_by=row[4],
            created_at=row[5],
        )
        for row in session.execute(query)
    ]
