"""Repository functions for people working in the web: open tasks, own answers, gold truth.

Keyword-only, session first, like `repository`; these read one person's slice of the
tables so a request never loads a whole project.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from medloop.store.models import (
    Answer,
    AnswerBox,
    ItemLabel,
    ModelVersion,
    Prediction,
    Task,
    User,
)
from medloop.types import LabelKind, TaskKind, TaskStatus


@dataclass(frozen=True)
class OpenTask:
    """An open labelling task a person has not answered yet."""

    task_id: int
    item_id: int
    project_id: int
    is_gold: bool
    round: int
    answers: int
    required: int


def open_tasks_for_worker(
    session: Session,
    *,
    worker_id: int,
    project_ids: Collection[int],
    exclude: Collection[int] = (),
    limit: int | None = None,
    gold: bool | None = None,
) -> list[OpenTask]:
    """Open labelling tasks in `project_ids` that `worker_id` has not answered, most
    answers first, then by task id; task ids in `exclude` are left out; `gold` keeps
    only gold (True) or only ordinary (False) tasks."""
    if not project_ids:
        return []
    answered = select(Answer.task_id).where(Answer.worker_id == worker_id)
    count = (
        select(func.count(Answer.id))
        .where(Answer.task_id == Task.id)
        .correlate(Task)
        .scalar_subquery()
        .label("n")
    )
    query = (
        select(
            Task.id,
            Task.item_id,
            Task.project_id,
            Task.is_gold,
            Task.round,
            Task.required_answers,
            count,
        )
        .where(
            Task.project_id.in_(list(project_ids)),
            Task.kind == str(TaskKind.LABEL),
            Task.status == str(TaskStatus.OPEN),
            Task.id.not_in(answered),
        )
        .order_by(count.desc(), Task.id)
    )
    if exclude:
        query = query.where(Task.id.not_in(list(exclude)))
    if gold is not None:
        query = query.where(Task.is_gold.is_(gold))
    if limit is not None:
        query = query.limit(limit)
    return [
        OpenTask(
            task_id=t,
            item_id=i,
            project_id=p,
            is_gold=bool(g),
            round=int(r),
            answers=int(n),
            required=int(q),
        )
        for t, i, p, g, r, q, n in session.execute(query)
    ]


def count_open_tasks_for_worker(
    session: Session, *, worker_id: int, project_ids: Collection[int]
) -> int:
    """How many open labelling tasks `worker_id` could still answer."""
    if not project_ids:
        return 0
    answered = select(Answer.task_id).where(Answer.worker_id == worker_id)
    return int(
        session.scalar(
            select(func.count(Task.id)).where(
                Task.project_id.in_(list(project_ids)),
                Task.kind == str(TaskKind.LABEL),
                Task.status == str(TaskStatus.OPEN),
                Task.id.not_in(answered),
            )
        )
        or 0
    )


def worker_answer_id(session: Session, *, task_id: int, worker_id: int) -> int | None:
    """The id of `worker_id`'s answer to `task_id`, or None."""
    return session.scalar(
        select(Answer.id).where(Answer.task_id == task_id, Answer.worker_id == worker_id)
    )


def final_labels_for(session: Session, *, item_ids: Collection[int]) -> dict[int, int]:
    """The current final (doctor-signed or gold) label of each given item that has one."""
    if not item_ids:
        return {}
    newest = (
        select(func.max(ItemLabel.id))
        .where(ItemLabel.item_id.in_(list(item_ids)), ItemLabel.kind == str(LabelKind.FINAL))
        .group_by(ItemLabel.item_id)
    )
    rows = session.execute(
        select(ItemLabel.item_id, ItemLabel.label).where(ItemLabel.id.in_(newest))
    )
    return {int(item): int(label) for item, label in rows}


@dataclass(frozen=True)
class WorkerAnswer:
    task_id: int
    item_id: int
    label: int
    is_gold: bool


def worker_answers(
    session: Session, *, worker_id: int, gold_only: bool = False
) -> list[WorkerAnswer]:
    """Labelling answers one person has given (only on gold tasks if asked), oldest first."""
    query = (
        select(Answer.task_id, Answer.item_id, Answer.label, Task.is_gold)
        .join(Task, Task.id == Answer.task_id)
        .where(Answer.worker_id == worker_id, Task.kind == str(TaskKind.LABEL))
        .order_by(Answer.id)
    )
    if gold_only:
        query = query.where(Task.is_gold.is_(True))
    rows = session.execute(query)
    return [
        WorkerAnswer(task_id=t, item_id=i, label=int(lb), is_gold=bool(g)) for t, i, lb, g in rows
    ]


def count_worker_answers(session: Session, *, worker_id: int) -> int:
    """How many labelling answers one person has given."""
    query = (
        select(func.count(Answer.id))
        .join(Task, Task.id == Answer.task_id)
        .where(Answer.worker_id == worker_id, Task.kind == str(TaskKind.LABEL))
    )
    return int(session.scalar(query) or 0)


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


def item_has_label_task(session: Session, *, item_id: int) -> bool:
    """Whether the item has ever been put in front of lay annotators."""
    found = session.scalar(
        select(Task.id).where(Task.item_id == item_id, Task.kind == str(TaskKind.LABEL)).limit(1)
    )
    return found is not None


def latest_predictions_for(
    session: Session, *, project_id: int, item_ids: Sequence[int]
) -> dict[int, list[float]]:
    """The newest model version's probabilities for the given items (those it has)."""
    if not item_ids:
        return {}
    newest = session.scalar(
        select(func.max(ModelVersion.id)).where(ModelVersion.project_id == project_id)
    )
    if newest is None:
        return {}
    rows = session.execute(
        select(Prediction.item_id, Prediction.probabilities).where(
            and_(Prediction.model_version_id == newest, Prediction.item_id.in_(list(item_ids)))
        )
    )
    return {int(item): [float(p) for p in probs] for item, probs in rows}
