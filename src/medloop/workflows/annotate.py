"""Human annotation in the web: publish tasks, hand each person their next task, take answers.

What a lay annotator sees is deliberately narrow: a task id, a de-identified image and
the project's class names. Never other people's answers, model output or patient data.

Which task comes next (`next_task`):

0. a gold question (an item with a known final label) whenever the person's share of
   gold answers would otherwise fall below `gold_rate`: after 9 ordinary answers at the
   default 0.1, then about every tenth. Gold tasks stay open for every annotator, so
   each person's accuracy is measured on them;
1. ordinary tasks that already have answers first (most first), so items reach their
   redundancy and leave the queue;
2. then the active-learning priority: the in-use model's predictive entropy on the item
   (0 without a prediction), among the next `WINDOW` tasks in publication order so a
   request never reads every open task (`publish_tasks` already opened the items with
   the best acquisition scores; without a model only a first `PAGE` of them is read
   unless other people hold every task on it);
3. then the task id (publication order).

When no ordinary task is left, remaining gold questions are still offered. Nobody is
offered an item twice: an item a person answered or skipped (or was unsure about)
through any task, a gold question on an item they labelled earlier or a request for
more answers included, is not offered to them again.

An ordinary task is not handed to more people at once than it still needs answers: it
is held for the person it is handed to (`task_holds`, one task per person, until they
answer or skip it or `HOLD_SECONDS` pass), and the best task in the order above that
fewer others hold than it still needs answers is the one handed out. Holds live in the
database, so concurrent annotators spread over tasks instead of all answering the same
one past its redundancy, whichever server process serves them.

A person may answer only the task they were handed last (gold questions are held
too, though they never run out of places), even after its hold expired, while it is
open: nobody can choose tasks, or collect gold questions' answers, by id.

Answers are committed before the call returns; a second answer by the same person to the
same task raises ConflictError and stores nothing.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from medloop.annotation import plan_tasks
from medloop.exceptions import (
    AlreadyAnsweredError,
    ConflictError,
    InvalidInputError,
    NotFoundError,
)
from medloop.store import assignments, members
from medloop.store import repository as repo
from medloop.types import (
    RECOMMENDED_STRATEGY,
    LabelKind,
    LabelSource,
    Role,
    Split,
    Strategy,
)
from medloop.workflows.accounts import Account
from medloop.workflows.loop import select_items
from medloop.workflows.workspace import Workspace

logger = logging.getLogger(__name__)

#: How many open tasks (most answered first, then publication order) `next_task` ranks.
WINDOW = 256
#: How many of them it reads first when no model ranks them (more than the people who
#: typically hold a task at once).
PAGE = 64
#: Gold questions stay open for every annotator: they ask for this many answers.
GOLD_ANSWERS = 1_000_000
#: Default share of gold questions in each annotator's stream.
GOLD_RATE = 0.1
#: How long a task handed out stays held for its person (seconds) unless answered or skipped.
HOLD_SECONDS = 300.0


@dataclass(frozen=True)
class PublishedRound:
    tasks: int
    gold_tasks: int


def publish_tasks(
    ws: Workspace,
    *,
    project: str,
    k: int,
    strategy: Strategy | str = RECOMMENDED_STRATEGY,
    redundancy: int = 3,
    gold_rate: float = 0.1,
    round: int = 0,
    seed: int = 0,
) -> PublishedRound:
    """Open `k` new labelling tasks for people (active-learning pick of unlabelled training
    items) plus gold questions drawn from final labels of training items that are not
    already an open gold question."""
    chosen = select_items(ws, project=project, k=k, strategy=strategy, seed=seed)
    with ws.db.session() as s:
        record = repo.get_image_project(s, name=project)
        items = repo.items_frame(s, project_id=record.id)
        finals = repo.current_labels(s, project_id=record.id, kind=LabelKind.FINAL)
        tasks = repo.tasks_frame(s, project_id=record.id)
        open_gold = set(tasks["item"][tasks["is_gold"] & (tasks["status"] == "open")])
        gold_pool = [
            int(i)
            for i in finals.index
            if items.loc[i, "split"] == Split.TRAIN and i not in chosen and i not in open_gold
        ]
        plans = plan_tasks(
            chosen,
            redundancy=redundancy,
            gold_item_ids=gold_pool,
            gold_rate=gold_rate if gold_pool else 0.0,
            seed=seed,
        )
        repo.create_tasks(
            s,
            project_id=record.id,
            item_ids=[p.item_id for p in plans],
            required_answers=[GOLD_ANSWERS if p.is_gold else p.redundancy for p in plans],
            is_gold=[p.is_gold for p in plans],
            round=round,
        )
        repo.audit(
            s,
            actor="system",
            action="tasks.publish",
            entity="project",
            entity_id=record.id,
            detail={"tasks": len(plans), "round": round},
        )
    gold = sum(p.is_gold for p in plans)
    logger.info("published %d tasks (%d gold) in project %d", len(plans), gold, record.id)
    return PublishedRound(tasks=len(plans), gold_tasks=gold)


@dataclass(frozen=True)
class NextTask:
    """What an annotator may see of a task."""

    task_id: int
    item_id: int
    project: str
    choices: list[str]


def _entropy(probabilities: Sequence[float]) -> float:
    return -sum(p * math.log(p) for p in probabilities if p > 0)


def _projects(
    session: Any, project: str | None, account: Account
) -> list[assignments.ProjectChoices]:
    """The projects (all, or the one called `project`) that `account` may reach
    (`store.members`); one it may not reach is as unknown as one that does not exist."""
    reached = members.visible_project_ids(session, user_id=account.id, role=account.role)
    found = [
        p for p in assignments.project_choices(session, name=project) if p.project_id in reached
    ]
    if project is not None and not found:  # not naming the others: nobody needs to know them
        raise NotFoundError(f"no labelling project named {project!r}")
    return found


def next_task(
    ws: Workspace,
    *,
    account: Account,
    project: str | None = None,
    gold_rate: float = GOLD_RATE,
    now: float | None = None,
) -> NextTask | None:
    """The task `account` should answer next (see the module docstring) in the projects
    it may reach (all, or `project`), or None.

    An ordinary task is held for them until they answer or skip it, or `HOLD_SECONDS`
    pass (`now`, Unix seconds, defaults to the clock); asking again ends their earlier
    hold, and gives the same task while it stays the best one with room."""
    now = time.time() if now is None else now
    with ws.db.session() as s:
        projects = {p.project_id: p for p in _projects(s, project, account)}
        ids = list(projects)
        tally = assignments.worker_tally(s, worker_id=account.id)
        if tally.gold_answered < math.floor(gold_rate * (tally.answered + 1)):
            gold = assignments.open_tasks_for_worker(
                s, worker_id=account.id, project_ids=ids, limit=1, gold=True
            )
            if gold and _hold(ws, account, [gold[0].task_id], now) is not None:
                return _next(projects[gold[0].project_id], gold[0])
        models = {p: assignments.current_model_id(s, project_id=p) for p in ids}
        # Without a model the query's order is the ranking: read a first page, and the
        # whole window only when other people hold every task on it.
        limits = (WINDOW,) if any(m is not None for m in models.values()) else (PAGE, WINDOW)
        tried = 0
        for limit in limits:
            candidates = assignments.open_tasks_for_worker(
                s, worker_id=account.id, project_ids=ids, limit=limit, gold=False
            )
            priority = _priorities(s, candidates, models)
            ranked = sorted(
                candidates, key=lambda c: (-c.answers, -priority.get(c.item_id, 0.0), c.task_id)
            )[tried:]
            held = _hold(ws, account, [c.task_id for c in ranked], now)
            if held is not None:
                best = next(c for c in ranked if c.task_id == held)
                return _next(projects[best.project_id], best)
            if len(candidates) < limit:
                break
            tried = len(candidates)
        gold = assignments.open_tasks_for_worker(
            s, worker_id=account.id, project_ids=ids, limit=1, gold=True
        )
        if gold and _hold(ws, account, [gold[0].task_id], now) is not None:
            return _next(projects[gold[0].project_id], gold[0])
        return None


def _hold(ws: Workspace, account: Account, task_ids: list[int], now: float) -> int | None:
    """Hold the first of `task_ids` with room for `account` (in a write of its own)."""
    with ws.db.writing() as w:
        return assignments.hold_first(
            w, worker_id=account.id, task_ids=task_ids, now=now, seconds=HOLD_SECONDS
        )


def _priorities(
    session: Any, candidates: list[assignments.OpenTask], models: dict[int, int | None]
) -> dict[int, float]:
    """Item id -> entropy of the prediction of the model its project uses (items it predicted)."""
    priority: dict[int, float] = {}
    for project_id in {c.project_id for c in candidates}:
        model = models[project_id]
        if model is not None:
            items = [c.item_id for c in candidates if c.project_id == project_id]
            predictions = assignments.predictions_for(
                session, model_version_id=model, item_ids=items
            )
            priority.update({item: _entropy(p) for item, p in predictions.items()})
    return priority


def _next(project: assignments.ProjectChoices, task: assignments.OpenTask) -> NextTask:
    return NextTask(
        task_id=task.task_id, item_id=task.item_id, project=project.name, choices=project.choices
    )


def _label_task(session: Any, task_id: int, account: Account) -> assignments.LabelTask:
    task = assignments.label_task(session, task_id=task_id, worker_id=account.id)
    if task is None:
        raise NotFoundError(f"no labelling task with id {task_id}")
    return task


def skip_task(ws: Workspace, *, account: Account, task_id: int, reason: str = "skip") -> None:
    """Record that `account` skipped a labelling task (or was unsure): it is not offered
    to them again, and their hold on it ends. Unknown task -> NotFoundError; a task other
    than the one handed to them last -> ConflictError (nobody steers what comes next by
    skipping tasks by id)."""
    if reason not in ("skip", "unsure"):
        raise InvalidInputError(f"reason must be 'skip' or 'unsure', got {reason!r}")
    with ws.db.writing() as s:
        if not _label_task(s, task_id, account).handed:
            raise ConflictError(
                f"task {task_id} was not handed to you: skip the task you were given"
            )
        assignments.add_skip(s, worker_id=account.id, task_id=task_id, reason=reason)
        assignments.release_hold(s, worker_id=account.id)
        repo.audit(
            s,
            actor=account.username,
            action=f"task.{reason}",
            entity="task",
            entity_id=task_id,
        )


def label_index(label: str | int, choices: Sequence[str]) -> int:
    """The class index of `label`, given as a class name or an index; else InvalidInputError."""
    if isinstance(label, bool):
        raise InvalidInputError(f"label {label!r} is not one of {list(choices)}")
    if isinstance(label, int):
        if 0 <= label < len(choices):
            return label
    elif label in choices:
        return list(choices).index(label)
    raise InvalidInputError(f"label {label!r} is not one of {list(choices)}")


def check_box(box: Sequence[float] | None) -> list[float] | None:
    """A box is [x, y, width, height] as fractions of the image, inside it, not empty."""
    if box is None:
        return None
    if len(box) != 4 or not all(isinstance(v, int | float) and math.isfinite(v) for v in box):
        raise InvalidInputError("box must be four finite numbers [x, y, width, height]")
    x, y, w, h = (float(v) for v in box)
    if not (0 <= x <= 1 and 0 <= y <= 1 and 0 < w <= 1 - x + 1e-9 and 0 < h <= 1 - y + 1e-9):
        raise InvalidInputError("box [x, y, width, height] must lie inside [0, 1] and not be empty")
    return [round(x, 6), round(y, 6), round(w, 6), round(h, 6)]


@dataclass(frozen=True)
class GoldFeedback:
    """Shown after a gold question: was the answer right, and what is right."""

    correct: bool
    expected: str


@dataclass(frozen=True)
class AnnotatorProgress:
    answered: int
    gold_answered: int
    gold_correct: int

    @property
    def gold_accuracy(self) -> float | None:
        return self.gold_correct / self.gold_answered if self.gold_answered else None


@dataclass(frozen=True)
class SubmittedAnswer:
    answer_id: int
    task_id: int
    label: str
    gold: GoldFeedback | None
    progress: AnnotatorProgress


def submit_answer(
    ws: Workspace,
    *,
    account: Account,
    task_id: int,
    label: str | int,
    box: Sequence[float] | None = None,
) -> SubmittedAnswer:
    """Store one person's answer to a labelling task (committed before returning).

    Unknown task -> NotFoundError; label outside the choices or a bad box ->
    InvalidInputError; an image this person has already answered (through this task or
    another), a task other than the one `next_task` handed them last (so nobody can pick
    tasks, gold questions included, by id), or a closed task -> ConflictError. A box is
    stored with the answer (and in its audit entry).
    """
    checked_box = check_box(box)
    with ws.db.writing() as s:
        task = _label_task(s, task_id, account)
        if task.answered:
            raise AlreadyAnsweredError(f"you have already answered this image (task {task_id})")
        if not task.handed:
            raise ConflictError(
                f"task {task_id} was not handed to you: answer the task you were given last "
                "(ask for your next task)"
            )
        if not task.is_open:
            raise ConflictError(f"task {task_id} is closed: it has all the answers it needs")
        choices = task.choices
        index = label_index(label, choices)
        try:  # the unique (task, worker) pair refuses a second answer, even a concurrent one
            (answer_id,) = repo.add_answers(
                s,
                task_ids=[task_id],
                worker_ids=[account.id],
                labels=[index],
                source=LabelSource.CROWD,
            )
        except ConflictError as error:
            raise AlreadyAnsweredError(f"you have already answered task {task_id}") from error
        assignments.release_hold(s, worker_id=account.id)
        detail: dict[str, Any] = {"task": task_id, "label": index, "class": choices[index]}
        if checked_box is not None:
            assignments.add_answer_box(s, answer_id=answer_id, box=checked_box)
            detail["box"] = checked_box
        repo.audit(
            s,
            actor=account.username,
            action="answer",
            entity="answer",
            entity_id=answer_id,
            detail=detail,
        )
        is_gold, item_id = task.is_gold, task.item_id
    # Committed: what follows only reads, outside the write lock other answers wait for.
    with ws.db.session() as s:
        feedback = None
        if is_gold:
            truth = assignments.final_labels_for(s, item_ids=[item_id]).get(item_id)
            if truth is not None:
                feedback = GoldFeedback(correct=truth == index, expected=choices[truth])
        progress = _progress(s, account.id)
    logger.info("answer %d stored for task %d", answer_id, task_id)
    return SubmittedAnswer(
        answer_id=answer_id, task_id=task_id, label=choices[index], gold=feedback, progress=progress
    )


def _progress(session: Any, worker_id: int) -> AnnotatorProgress:
    tally = assignments.worker_tally(session, worker_id=worker_id, score=True)
    return AnnotatorProgress(
        answered=tally.answered, gold_answered=tally.gold_scored, gold_correct=tally.gold_correct
    )


def annotator_progress(ws: Workspace, *, account: Account) -> AnnotatorProgress:
    """How many tasks a person has answered, and how they did on gold questions."""
    with ws.db.session() as s:
        return _progress(s, account.id)


def open_task_count(ws: Workspace, *, account: Account, project: str | None = None) -> int:
    """How many open tasks `account` could still answer (in the projects it may reach)."""
    with ws.db.session() as s:
        ids = [p.project_id for p in _projects(s, project, account)]
        return assignments.count_open_tasks_for_worker(s, worker_id=account.id, project_ids=ids)


def item_image(ws: Workspace, *, account: Account, item_id: int) -> bytes:
    """The de-identified PNG of an item. An annotator may open only the items handed to
    them (the task they hold, those they answered), not every image put to lay annotators
    by its id; other roles may open any item, and each such read is audited. Unknown or
    hidden -> NotFoundError."""
    with ws.db.session() as s:
        item = repo.get_item(s, item_id=item_id)
        if account.role == Role.ANNOTATOR:
            if not assignments.item_handed_to(s, item_id=item_id, worker_id=account.id):
                raise NotFoundError(f"no item with id {item_id}")
        else:
            repo.audit(
                s, actor=account.username, action="item.image", entity="item", entity_id=item_id
            )
        sha = item.image_sha256
    return ws.blobs.get(sha)


__all__ = [
    "AnnotatorProgress",
    "GoldFeedback",
    "NextTask",
    "PublishedRound",
    "SubmittedAnswer",
    "annotator_progress",
    "check_box",
    "item_image",
    "label_index",
    "next_task",
    "open_task_count",
    "publish_tasks",
    "skip_task",
    "submit_answer",
]
