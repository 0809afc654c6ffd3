"""Doctor review in the web: the ranked queue, one item's evidence, and the decision.

Built on `loop.review_queue` (ranking) and `loop.record_decisions` (final labels with
provenance, audited). Labels travel as class names at this edge.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from medloop.annotation import gold_accuracy
from medloop.exceptions import ConflictError
from medloop.store import assignments
from medloop.store import repository as repo
from medloop.store.models import Project
from medloop.types import LabelKind, LabelSource
from medloop.workflows.accounts import Account
from medloop.workflows.annotate import label_index
from medloop.workflows.loop import record_decisions, review_queue
from medloop.workflows.workspace import Workspace

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReviewEntry:
    """One item waiting for a doctor, with why it is ranked where it is."""

    item_id: int
    project: str
    crowd_label: str
    crowd_confidence: float
    model_label: str | None
    model_confidence: float | None
    score: float
    reason: str


def _number(value: Any) -> float | None:
    if value is None or bool(pd.isna(value)):
        return None
    return round(float(value), 4)


def _name(classes: list[str], value: Any) -> str | None:
    number = _number(value)
    return None if number is None else classes[int(number)]


def review_entries(
    ws: Workspace, *, project: str | None = None, limit: int = 50
) -> list[ReviewEntry]:
    """The review queue across projects (or one), highest score first, ties by item id."""
    with ws.db.session() as s:
        projects = [repo.get_project(s, name=project)] if project else repo.list_projects(s)
        names = [(p.name, [str(c) for c in p.classes]) for p in projects]
    entries: list[ReviewEntry] = []
    for name, classes in names:
        queue = review_queue(ws, project=name, limit=limit)
        for item_id, row in queue.iterrows():
            entries.append(
                ReviewEntry(
                    item_id=int(item_id),
                    project=name,
                    crowd_label=str(_name(classes, row["crowd_label"])),
                    crowd_confidence=float(_number(row["crowd_confidence"]) or 0.0),
                    model_label=_name(classes, row.get("model_label")),
                    model_confidence=_number(row.get("model_confidence")),
                    score=float(_number(row["score"]) or 0.0),
                    reason=str(row["reason"]),
                )
            )
    entries.sort(key=lambda e: (-e.score, e.item_id))
    return entries[:limit]


@dataclass(frozen=True)
class CrowdAnswer:
    """One lay annotator's answer with their estimated reliability on gold questions."""

    worker: str
    label: str
    gold_answered: int
    gold_accuracy: float | None
    agrees_with_consensus: float | None
    box: list[float] | None = None


@dataclass(frozen=True)
class ReviewDetail:
    item_id: int
    project: str
    choices: list[str]
    consensus_label: str | None
    consensus_probabilities: list[float] | None
    model_label: str | None
    model_probabilities: list[float] | None
    final_label: str | None
    answers: list[CrowdAnswer]


def review_detail(ws: Workspace, *, item_id: int, actor: str | None = None) -> ReviewDetail:
    """Everything a doctor needs to decide one item; the read is audited under `actor`."""
    with ws.db.session() as s:
        item = repo.get_item(s, item_id=item_id)
        if actor is not None:
            repo.audit(s, actor=actor, action="item.read", entity="item", entity_id=item_id)
        project = s.get(Project, item.project_id)
        assert project is not None
        classes = [str(c) for c in project.classes]
        consensus = repo.current_labels(s, project_id=project.id, kind=LabelKind.CONSENSUS)
        finals = assignments.final_labels_for(s, item_ids=[item_id])
        answers = [a for a in assignments.item_answers(s, item_id=item_id) if a.source == "crowd"]
        project_answers = repo.answers_frame(s, project_id=project.id, sources=[LabelSource.CROWD])
        predictions = assignments.latest_predictions_for(
            s, project_id=project.id, item_ids=[item_id]
        )
        all_finals = repo.current_labels(s, project_id=project.id, kind=LabelKind.FINAL)
    workers = sorted({a.worker for a in answers})
    mine = project_answers[project_answers["worker"].isin(workers)]
    reliability = _reliability(mine, all_finals, consensus)
    row = consensus.loc[item_id] if item_id in consensus.index else None
    model = predictions.get(item_id)
    return ReviewDetail(
        item_id=item_id,
        project=project.name,
        choices=classes,
        consensus_label=None if row is None else classes[int(row["label"])],
        consensus_probabilities=None if row is None else [float(p) for p in row["probabilities"]],
        model_label=None
        if model is None
        else classes[max(range(len(model)), key=model.__getitem__)],
        model_probabilities=model,
        final_label=classes[finals[item_id]] if item_id in finals else None,
        answers=[
            CrowdAnswer(
                worker=a.worker,
                label=classes[a.label],
                gold_answered=reliability.get(a.worker, (0, None, None))[0],
                gold_accuracy=reliability.get(a.worker, (0, None, None))[1],
                agrees_with_consensus=reliability.get(a.worker, (0, None, None))[2],
                box=None if a.box is None else list(a.box),
            )
            for a in answers
        ],
    )


def _reliability(
    answers: pd.DataFrame, finals: pd.DataFrame, consensus: pd.DataFrame
) -> dict[str, tuple[int, float | None, float | None]]:
    """Per worker: (gold questions scored, accuracy on them, agreement with consensus)."""
    if answers.empty:
        return {}
    gold_rows = answers[answers["is_gold"] & answers["task"].isin(finals.index)]
    result: dict[str, tuple[int, float | None, float | None]] = {}
    table = (
        gold_accuracy(gold_rows[["task", "worker", "label"]], finals["label"].astype(int))
        if not gold_rows.empty
        else pd.DataFrame(columns=["worker", "n_gold", "accuracy"])
    )
    gold = {r.worker: (int(r.n_gold), float(r.accuracy)) for r in table.itertuples()}
    plain = answers[~answers["is_gold"] & answers["task"].isin(consensus.index)]
    agree = (
        (plain["label"].to_numpy() == consensus.loc[plain["task"], "label"].to_numpy())
        if not plain.empty
        else []
    )
    agreement = (
        pd.Series(agree, index=plain["worker"].to_numpy()).groupby(level=0).mean()
        if len(plain)
        else pd.Series(dtype=float)
    )
    for worker in answers["worker"].unique():
        n, acc = gold.get(worker, (0, None))
        share = agreement.get(worker)
        result[str(worker)] = (
            n,
            None if acc is None or math.isnan(acc) else round(acc, 4),
            None if share is None else round(float(share), 4),
        )
    return result


@dataclass(frozen=True)
class Decision:
    item_id: int
    project: str
    label: str


def decide(ws: Workspace, *, account: Account, item_id: int, label: str | int) -> Decision:
    """Record a doctor's final label for an item (accept or correct). Unknown item ->
    NotFoundError; label outside the classes -> InvalidInputError; an item that already
    has a final label -> ConflictError (nothing stored twice)."""
    with ws.db.session() as s:
        item = repo.get_item(s, item_id=item_id)
        project = s.get(Project, item.project_id)
        assert project is not None
        classes = [str(c) for c in project.classes]
        if item_id in assignments.final_labels_for(s, item_ids=[item_id]):
            raise ConflictError(f"item {item_id} already has a final label")
        name = project.name
    index = label_index(label, classes)
    record_decisions(
        ws,
        project=name,
        decisions=pd.Series([index], index=[item_id]),
        doctor=account.username,
    )
    logger.info("final label recorded for item %d", item_id)
    return Decision(item_id=item_id, project=name, label=classes[index])
