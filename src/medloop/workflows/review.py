"""Doctor review in the web: the ranked queue, one item's evidence, and the decision.

Built on `loop.review_queue` (ranking) and `loop.write_decisions` (final labels with
provenance, audited). An item's evidence adds each annotator's reliability (on gold
questions, agreement with the consensus, and the aggregation model's estimate with a
95% interval) and the crowd's boxes fused with those estimates as skills. A doctor may
also flag an item (with a reason) instead of deciding: the flag is stored and audited,
never a label, and is resolved when the item gets its final label. Labels travel as
class names at this edge.
"""

from __future__ import annotations

import logging
import math
import unicodedata
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from medloop.aggregation import DEFAULT_METHOD, make_aggregator
from medloop.aggregation.boxes import fuse_boxes
from medloop.aggregation.reliability import worker_reliability
from medloop.annotation import gold_accuracy
from medloop.exceptions import ConflictError, InvalidInputError, NotFoundError
from medloop.review import model_decisions
from medloop.store import assignments, flags, members
from medloop.store import repository as repo
from medloop.store.models import ModelVersion, Project
from medloop.types import REVIEWER_ROLES, LabelKind, LabelSource
from medloop.workflows.accounts import Account
from medloop.workflows.annotate import label_index
from medloop.workflows.figures import FiguresAge, project_figures
from medloop.workflows.loop import model_threshold, review_queue, write_decisions
from medloop.workflows.workspace import Workspace

logger = logging.getLogger(__name__)


#: Why an item heads the queue when a labelling plan asked a doctor about it.
REQUESTED = "a doctor's review requested by the labelling plan"
#: The crowd label shown for an item answered since the last aggregation.
NO_CONSENSUS = "no consensus yet"


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
    flag_reason: str | None = None
    requested: bool = False
    #: A binary model's P(`positive_class`) and the cut it decides with (tuned on
    #: validation, often far from 0.5); None for other models and without a prediction.
    model_positive: float | None = None
    model_threshold: float | None = None
    positive_class: str | None = None


def _number(value: Any) -> float | None:
    if value is None or bool(pd.isna(value)):
        return None
    return round(float(value), 4)


def _name(classes: list[str], value: Any) -> str | None:
    number = _number(value)
    return None if number is None else classes[int(number)]


def review_entries(
    ws: Workspace,
    *,
    project: str | None = None,
    limit: int | None = 50,
    viewer: Account | None = None,
) -> list[ReviewEntry]:
    """The review queue across projects (or one): items a labelling plan asked a doctor
    about first, then highest score first, ties by item id; the first `limit` (None:
    all of it). With `viewer`, only the projects they may reach (`workflows.access`)."""
    return _entries(ws, _queue_rows(ws, project=project, limit=limit, viewer=viewer))


def _queue_rows(
    ws: Workspace, *, project: str | None, limit: int | None, viewer: Account | None = None
) -> pd.DataFrame:
    """The review queue as one frame in queue order (columns of `ReviewEntry` but the
    flag): ranked and cut with pandas, so that entries are built only for the rows shown
    (a queue of 88,000 items took 8 s to page through as entries)."""
    with ws.db.session() as s:
        if project:
            projects = [repo.get_image_project(s, name=project)]
        else:
            projects = [p for p in repo.list_projects(s) if not repo.is_cohort(p)]
        if viewer is not None:
            reached = members.visible_project_ids(s, user_id=viewer.id, role=viewer.role)
            projects = [p for p in projects if p.id in reached]
        names = [(p.id, p.name, [str(c) for c in p.classes]) for p in projects]
    frames: list[pd.DataFrame] = []
    for project_id, name, classes in names:
        with ws.db.session() as s:
            requested = repo.requested_reviews(s, project_id=project_id)
            cut = _binary_cut(repo.current_model_version(s, project_id=project_id), classes)
        queue = review_queue(ws, project=name, limit=None if requested else limit)
        asked = queue.index.isin(list(requested))
        if requested and limit is not None and not queue.empty:
            queue = pd.concat([queue[asked], queue[~asked].head(limit)])
            asked = queue.index.isin(list(requested))
        reasons = queue["reason"].astype(str)
        frames.append(
            pd.DataFrame(
                {
                    "item_id": queue.index.astype(int),
                    "project": name,
                    "crowd_label": [str(_name(classes, v)) for v in queue["crowd_label"]],
                    "crowd_confidence": _rounded(queue["crowd_confidence"], 0.0),
                    "model_label": [_name(classes, v) for v in queue["model_label"]],
                    "model_confidence": _rounded(queue["model_confidence"], None),
                    "score": _rounded(queue["score"], 0.0),
                    "reason": np.where(asked, REQUESTED + "; " + reasons, reasons),
                    "requested": asked,
                    **_positive(queue, classes, cut),
                }
            )
        )
        # Requested items the stored consensus does not cover yet (answered since the
        # last aggregation) still head the queue.
        waiting = sorted(requested - {int(i) for i in queue.index})
        frames.append(
            pd.DataFrame(
                {
                    "item_id": waiting,
                    "project": name,
                    "crowd_label": NO_CONSENSUS,
                    "crowd_confidence": 0.0,
                    "model_label": None,
                    "model_confidence": None,
                    "score": 0.0,
                    "reason": REQUESTED,
                    "requested": True,
                    **_positive(queue.iloc[:0], classes, None),
                },
                index=range(len(waiting)),
            )
        )
    filled = [frame for frame in frames if len(frame)]
    rows = pd.concat(filled, ignore_index=True) if filled else None
    if rows is None:
        return pd.DataFrame(
            columns=[f.name for f in fields(ReviewEntry) if f.name != "flag_reason"]
        )
    order = np.lexsort(
        (rows["item_id"], -rows["score"].astype(float), ~rows["requested"].astype(bool))
    )
    rows = rows.iloc[order].reset_index(drop=True)
    return rows if limit is None else rows.head(limit)


def _binary_cut(model: ModelVersion | None, classes: list[str]) -> float | None:
    """The cut on P(class 1) a binary project's newest model decides with; None for
    other projects and before a model is trained."""
    return None if model is None or len(classes) != 2 else model_threshold(model)


def _positive(queue: pd.DataFrame, classes: list[str], cut: float | None) -> dict[str, Any]:
    """Queue columns model_positive, model_threshold and positive_class: a binary
    model's P(class 1) (from the probability of the class it decided) and its cut."""
    if cut is None:
        return {"model_positive": None, "model_threshold": None, "positive_class": None}
    label, confidence = queue["model_label"], queue["model_confidence"]
    positive = np.where(label == 1, confidence, 1.0 - confidence).astype(float)
    known = label.notna().to_numpy()
    return {
        "model_positive": [
            round(float(p), 4) if k else None for p, k in zip(positive, known, strict=True)
        ],
        "model_threshold": [round(cut, 4) if k else None for k in known],
        "positive_class": classes[1],
    }


def _rounded(values: pd.Series, missing: float | None) -> list[float | None]:
    """Numbers as `_number` gives them (4 decimals), `missing` where there is none."""
    return [missing if (v := _number(value)) is None else v for value in values]


def _entries(ws: Workspace, rows: pd.DataFrame) -> list[ReviewEntry]:
    """`ReviewEntry`s of queue rows, with the open flags of those items."""
    with ws.db.session() as s:
        flagged = flags.open_flags_for(s, item_ids=[int(i) for i in rows["item_id"]])
    entries = []
    for row in rows.itertuples(index=False):
        flag = flagged.get(int(row.item_id))
        entries.append(
            ReviewEntry(
                item_id=int(row.item_id),
                project=str(row.project),
                crowd_label=str(row.crowd_label),
                crowd_confidence=float(row.crowd_confidence),
                model_label=None if pd.isna(row.model_label) else str(row.model_label),
                model_confidence=None
                if row.model_confidence is None or pd.isna(row.model_confidence)
                else float(row.model_confidence),
                score=float(row.score),
                reason=str(row.reason),
                flag_reason=None if flag is None else flag.reason,
                requested=bool(row.requested),
                model_positive=_number(row.model_positive),
                model_threshold=_number(row.model_threshold),
                positive_class=None if pd.isna(row.positive_class) else str(row.positive_class),
            )
        )
    return entries


@dataclass(frozen=True)
class ReviewQueuePage:
    """Entries `offset` to `offset + len(entries)` of a review queue `total` items long,
    `flagged` of them flagged for a second look."""

    entries: list[ReviewEntry]
    total: int
    flagged: int
    offset: int
    size: int


def review_queue_page(
    ws: Workspace, *, offset: int = 0, size: int = 200, viewer: Account | None = None
) -> ReviewQueuePage:
    """One page of the whole review queue (`review_entries`, `viewer` as there), with its
    length: the queue is ranked whole anyway, so counting it costs nothing more."""
    everything = _queue_rows(ws, project=None, limit=None, viewer=viewer)
    total = len(everything)
    if total and offset >= total:  # the queue shrank under this page
        offset = (total - 1) // size * size
    with ws.db.session() as s:
        flagged = flags.open_flag_items(s) & {int(i) for i in everything["item_id"]}
    return ReviewQueuePage(
        entries=_entries(ws, everything.iloc[offset : offset + size]),
        total=total,
        flagged=len(flagged),
        offset=offset,
        size=size,
    )


@dataclass(frozen=True)
class CrowdAnswer:
    """One lay annotator's answer with their reliability: accuracy on gold questions,
    agreement with the consensus, and the aggregation model's estimated accuracy over
    all their answers in the project with its 95% interval."""

    worker: str
    label: str
    gold_answered: int
    gold_accuracy: float | None
    agrees_with_consensus: float | None
    box: list[float] | None = None
    estimated_accuracy: float | None = None
    estimated_low: float | None = None
    estimated_high: float | None = None


@dataclass(frozen=True)
class FusedBox:
    """The crowd's boxes on one finding, fused with the annotators' estimated accuracy as
    weights: [x, y, width, height] as fractions of the image; `confidence` is the
    (weighted) share of the item's box-drawing annotators who drew it."""

    box: list[float]
    confidence: float
    annotators: int
    boxes: int


@dataclass(frozen=True)
class Flag:
    """An open flag on an item: why, by whom, when."""

    reason: str
    flagged_by: str
    flagged_at: datetime


@dataclass(frozen=True)
class ModelSummary:
    """The newest model version, as a doctor weighs its suggestion: which one and when,
    how it did on held-out images, the cut on P(`positive_class`) a binary model decides
    with (tuned on validation: a suggestion of the other class can come with P above
    0.5), and how many final labels were signed since it was trained (what it has not
    learnt from yet)."""

    version: int
    trained_at: datetime
    n_train: int
    threshold: float | None
    positive_class: str | None
    test_auc: float | None
    test_accuracy: float | None
    test_n: int | None
    labels_since: int
    #: patients erased since whose images it learned from (`workflows.erasure`)
    erased_patients: int = 0


@dataclass(frozen=True)
class FinalLabelEvent:
    """One final label in an item's history: the class, who signed it (None: the
    dataset's gold label), when, the final label it replaced, and for a doctor's
    correction why."""

    label: str
    by: str | None
    at: datetime
    replaced: str | None = None
    reason: str | None = None


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
    has_model: bool = False
    reliability_method: str = str(DEFAULT_METHOD)
    fused_boxes: list[FusedBox] = field(default_factory=list)
    flag: Flag | None = None
    #: How far behind the annotators' reliability (and the fused boxes' weights) are;
    #: None: current.
    figures_as_of: FiguresAge | None = None
    #: The model the prediction is from (None: no model yet).
    model: ModelSummary | None = None
    #: Every final label of the item, oldest first; the last is `final_label`.
    history: list[FinalLabelEvent] = field(default_factory=list)


def review_detail(
    ws: Workspace, *, item_id: int, actor: str | None = None, fresh: bool = True
) -> ReviewDetail:
    """Everything a doctor needs to decide one item; the read is audited under `actor`.
    `fresh=False` (a server): the annotators' reliability may be shown outdated, with how
    far (`figures_as_of`), while it is recomputed in the background (`figures`)."""
    with ws.db.session() as s:
        item = repo.get_item(s, item_id=item_id)
        if actor is not None:
            repo.audit(s, actor=actor, action="item.read", entity="item", entity_id=item_id)
        project = s.get(Project, item.project_id)
        assert project is not None
        classes = [str(c) for c in project.classes]
        consensus = repo.current_labels(
            s, project_id=project.id, kind=LabelKind.CONSENSUS, item_ids=[item_id]
        )
        finals = assignments.final_labels_for(s, item_ids=[item_id])
        answers = [a for a in assignments.item_answers(s, item_id=item_id) if a.source == "crowd"]
        predictions = assignments.current_predictions_for(
            s, project_id=project.id, item_ids=[item_id]
        )
        latest = repo.current_model_version(s, project_id=project.id)
        has_model = latest is not None
        cut = model_threshold(latest)
        summary = None if latest is None else _model_summary(s, latest, classes)
        open_flag = flags.open_flags_for(s, item_ids=[item_id]).get(item_id)
        history = _history(s, item_id=item_id, classes=classes)
    evidence, age = _worker_evidence(ws, project_id=project.id, n_classes=len(classes), fresh=fresh)
    reliability, estimates = evidence.scored, evidence.estimates
    skills = estimates["model_accuracy"] if len(estimates) else None
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
        else classes[int(model_decisions(np.array([model]), cut)[0])],
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
                **_estimate(estimates, a.worker),
            )
            for a in answers
        ],
        has_model=has_model,
        fused_boxes=fused_boxes(answers, skills=skills),
        flag=None
        if open_flag is None or item_id in finals
        else Flag(
            reason=open_flag.reason,
            flagged_by=open_flag.flagged_by,
            flagged_at=open_flag.flagged_at,
        ),
        figures_as_of=age,
        model=summary,
        history=history,
    )


def _model_summary(s: Session, model: ModelVersion, classes: list[str]) -> ModelSummary:
    metrics = model.metrics or {}
    binary = len(classes) == 2
    test_n = _number(metrics.get("test_n"))
    return ModelSummary(
        version=model.version,
        trained_at=model.created_at,
        n_train=model.n_train,
        threshold=model_threshold(model) if binary else None,
        positive_class=classes[1] if binary else None,
        test_auc=_number(metrics.get("test_auc")),
        test_accuracy=_number(metrics.get("test_acc")),
        test_n=None if test_n is None else int(test_n),
        labels_since=assignments.final_labels_since(
            s, project_id=model.project_id, since=model.created_at
        ),
        erased_patients=model.erased_patients,
    )


def model_summary(ws: Workspace, *, project: str) -> ModelSummary | None:
    """The model in use in an image project as the review pages show it (`ModelSummary`);
    None before a model is trained."""
    with ws.db.session() as s:
        record = repo.get_image_project(s, name=project)
        model = repo.current_model_version(s, project_id=record.id)
        classes = [str(c) for c in record.classes]
        return None if model is None else _model_summary(s, model, classes)


def label_history(
    ws: Workspace, *, item_id: int, project: str | None = None, actor: str | None = None
) -> list[FinalLabelEvent]:
    """Every final label of an item, oldest first (`FinalLabelEvent`s: who signed or
    corrected it, when, why); the read is audited under `actor`. Unknown item (or not in
    `project`, where given) -> NotFoundError."""
    with ws.db.session() as s:
        record = _item_project(s, item_id=item_id, project=project)
        if actor is not None:
            repo.audit(s, actor=actor, action="item.read", entity="item", entity_id=item_id)
        return _history(s, item_id=item_id, classes=[str(c) for c in record.classes])


def _item_project(s: Session, *, item_id: int, project: str | None, lock: bool = False) -> Project:
    """The project of item `item_id`; NotFoundError when it is not in `project` (given)."""
    item = repo.get_item(s, item_id=item_id, lock=lock)
    record = s.get(Project, item.project_id)
    assert record is not None
    if project is not None and record.name != project:
        raise NotFoundError(f"item {item_id} is not in project {project!r}")
    return record


def _history(s: Session, *, item_id: int, classes: list[str]) -> list[FinalLabelEvent]:
    """The item's final labels, oldest first, with each correction's reason."""
    reasons = {
        int(d["label_id"]): str(d.get("reason", ""))
        for d in repo.audit_details(s, action=CORRECTED, entity="item", entity_id=item_id)
        if "label_id" in d
    }
    events: list[FinalLabelEvent] = []
    for row in assignments.final_label_history(s, item_id=item_id):
        events.append(
            FinalLabelEvent(
                label=classes[row.label],
                by=row.decided_by,
                at=row.created_at,
                replaced=events[-1].label if events else None,
                reason=reasons.get(row.label_id),
            )
        )
    return events


@dataclass(frozen=True)
class _WorkerEvidence:
    """Every crowd annotator's reliability in a project, as review pages show it."""

    #: worker -> (gold questions scored, accuracy on them, agreement with consensus)
    scored: dict[str, tuple[int, float | None, float | None]]
    #: `estimated_reliability` of all the project's crowd answers
    estimates: pd.DataFrame


def _worker_evidence(
    ws: Workspace, *, project_id: int, n_classes: int, fresh: bool
) -> tuple[_WorkerEvidence, FiguresAge | None]:
    """The project's `_WorkerEvidence`, computed from all its crowd answers and labels
    (reading 458,000 answers and fitting the crowd model with its bootstrap takes
    seconds) and kept in the workspace (`figures.project_figures`), with how far behind
    it is."""

    def compute(s: Session) -> _WorkerEvidence:
        answers = repo.answers_frame(s, project_id=project_id, sources=[LabelSource.CROWD])
        finals = repo.current_labels(s, project_id=project_id, kind=LabelKind.FINAL)
        consensus = repo.current_labels(s, project_id=project_id, kind=LabelKind.CONSENSUS)
        return _WorkerEvidence(
            scored=_reliability(answers, finals, consensus),
            estimates=estimated_reliability(answers, finals, n_classes=n_classes),
        )

    key = ("review evidence", project_id)
    return project_figures(ws, key=key, project_id=project_id, compute=compute, fresh=fresh)


def estimated_reliability(
    answers: pd.DataFrame, finals: pd.DataFrame, *, n_classes: int
) -> pd.DataFrame:
    """Each worker's accuracy as the aggregation model (`DEFAULT_METHOD`, fitted on the
    project's crowd answers with final labels known) estimates it, with a 95% interval:
    `aggregation.worker_reliability` columns, index worker. Empty without answers."""
    if answers.empty:
        return pd.DataFrame(columns=["model_accuracy", "model_low", "model_high"])
    frame = answers[["task", "worker", "label"]].reset_index(drop=True)
    known = finals["label"].astype(int) if not finals.empty else pd.Series(dtype=int)
    known = known[known.index.isin(frame["task"])]
    fitted_known = known if len(known) else None
    model = make_aggregator(DEFAULT_METHOD, classes=list(range(n_classes)))
    model.fit(frame, known=fitted_known)
    return worker_reliability(frame, known=fitted_known, model=model)


def _estimate(estimates: pd.DataFrame, worker: str) -> dict[str, float | None]:
    if worker not in estimates.index:
        return {}
    row = estimates.loc[worker]
    return {
        "estimated_accuracy": _number(row["model_accuracy"]),
        "estimated_low": _number(row["model_low"]),
        "estimated_high": _number(row["model_high"]),
    }


def fused_boxes(
    answers: list[assignments.ItemAnswer], *, skills: pd.Series | None = None
) -> list[FusedBox]:
    """One item's crowd boxes fused (`aggregation.fuse_boxes`, weighted by `skills`:
    worker -> estimated accuracy), most confident first; empty when nobody drew one."""
    drawn = [(a.worker, *a.box) for a in answers if a.box is not None]
    if not drawn:
        return []
    marks = pd.DataFrame(drawn, columns=["worker", "x0", "y0", "width", "height"])
    marks["task"] = 0
    marks["x1"] = marks["x0"] + marks["width"]
    marks["y1"] = marks["y0"] + marks["height"]
    fused = fuse_boxes(marks, skills=skills)
    return [
        FusedBox(
            box=[round(float(v), 4) for v in (r.x0, r.y0, r.x1 - r.x0, r.y1 - r.y0)],
            confidence=round(float(r.confidence), 4),
            annotators=int(r.n_workers),
            boxes=int(r.n_marks),
        )
        for r in fused.itertuples()
    ]


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


def decide(
    ws: Workspace, *, account: Account, item_id: int, label: str | int, project: str | None = None
) -> Decision:
    """Record a doctor's final label for an item (accept or correct), in the project's
    current round (its newest tasks' round). Unknown item (or not in `project`, where
    given) -> NotFoundError; label outside the classes -> InvalidInputError; an item that
    already has a final label -> ConflictError (nothing stored twice: two doctors
    deciding at once take turns on the item's row, and the second finds the first's
    label), except the same label sent again by the doctor who signed it (a form sent
    twice), which is taken as done."""
    with ws.db.writing() as s:
        record = _item_project(s, item_id=item_id, project=project, lock=True)
        classes = [str(c) for c in record.classes]
        name = record.name
        index = label_index(label, classes)
        history = assignments.final_label_history(s, item_id=item_id)
        if history:
            current = history[-1]
            if current.label == index and current.decided_by == account.username:
                return Decision(item_id=item_id, project=name, label=classes[index])
            raise ConflictError(
                f"item {item_id} already has a final label: {_signed(current, classes)}; "
                "yours was not saved (to change it, correct it with a reason)"
            )
        write_decisions(
            s,
            project=name,
            decisions=pd.Series([index], index=[item_id]),
            doctor=account.username,
            round=repo.latest_round(s, project_id=record.id),
        )
    logger.info("final label recorded for item %d", item_id)
    return Decision(item_id=item_id, project=name, label=classes[index])


#: The audit action of a corrected final label.
CORRECTED = "label.final.corrected"
#: Longest correction reason kept.
MAX_CORRECTION_REASON = 2000


def _signed(record: assignments.FinalLabelRecord, classes: list[str]) -> str:
    """A final label as a refusal names it: the class, who signed it and when."""
    if record.decided_by is None:
        return f"{classes[record.label]!r}, the dataset's gold label"
    when = record.created_at.strftime("%Y-%m-%d %H:%M")
    return f"{classes[record.label]!r}, signed by {record.decided_by} at {when} UTC"


def correct(
    ws: Workspace,
    *,
    account: Account,
    item_id: int,
    label: str | int,
    replaces: str | int,
    reason: str,
    project: str | None = None,
) -> Decision:
    """Correct an item's final label (a slip, a second look): a new final label is
    appended, the old one stays in the item's history, the correction is audited
    (`CORRECTED`, with the reason) and the next model trains on the new label.
    `replaces` is the final label the doctor saw: if it is no longer the current one
    (corrected meanwhile) -> ConflictError, as for an item without a final label (decide
    it instead); the same label again, or no reason -> InvalidInputError; unknown item
    (or not in `project`, where given) -> NotFoundError."""
    text = _plain_reason(reason, longest=MAX_CORRECTION_REASON, what="a correction")
    with ws.db.writing() as s:
        record = _item_project(s, item_id=item_id, project=project, lock=True)
        classes = [str(c) for c in record.classes]
        index, seen = label_index(label, classes), label_index(replaces, classes)
        history = assignments.final_label_history(s, item_id=item_id)
        if not history:
            raise ConflictError(f"item {item_id} has no final label to correct; decide it")
        current = history[-1].label
        if current != seen:
            raise ConflictError(
                f"item {item_id}'s final label is now {_signed(history[-1], classes)}, "
                f"not {classes[seen]!r}: someone changed it meanwhile"
            )
        if index == current:
            raise InvalidInputError(f"item {item_id}'s final label is already {classes[index]!r}")
        doctor = repo.get_user_in_role(s, username=account.username, roles=REVIEWER_ROLES)
        round_ = repo.latest_round(s, project_id=record.id)
        repo.add_item_labels(
            s,
            project_id=record.id,
            labels=pd.Series([index], index=[item_id]),
            kind=LabelKind.FINAL,
            source=LabelSource.DOCTOR,
            method="correction",
            decided_by_id=doctor.id,
            round=round_,
        )
        added = assignments.final_label_history(s, item_id=item_id)[-1]
        repo.audit(
            s,
            actor=account.username,
            action=CORRECTED,
            entity="item",
            entity_id=item_id,
            detail={
                "label_id": added.label_id,
                "label": index,
                "class": classes[index],
                "from": current,
                "from_class": classes[current],
                "reason": text,
                "round": round_,
            },
        )
        name = record.name
    logger.info("final label of item %d corrected", item_id)
    return Decision(item_id=item_id, project=name, label=classes[index])


def _plain_reason(reason: str, *, longest: int, what: str) -> str:
    """`reason` with its white space collapsed; empty, longer than `longest` or holding
    a control character -> InvalidInputError naming `what` it is for."""
    text = " ".join(reason.split())
    if not text:
        raise InvalidInputError(f"{what} needs a reason")
    if len(text) > longest:
        raise InvalidInputError(f"the reason for {what} has at most {longest} characters")
    if any(unicodedata.category(c) in ("Cc", "Cs") for c in text):
        raise InvalidInputError(
            f"the reason for {what} is plain text: it holds a control character"
        )
    return text


#: Longest flag reason kept (the column's width).
MAX_FLAG_REASON = 200


@dataclass(frozen=True)
class FlagResult:
    item_id: int
    project: str
    reason: str
    flagged_by: str
    flagged_at: datetime


def flag_item(ws: Workspace, *, account: Account, item_id: int, reason: str) -> FlagResult:
    """Flag an item for later (a second opinion, an unreadable image ...) with a short
    reason: stored and audited, never a final label. Unknown item -> NotFoundError; an
    empty, too long or control-character reason -> InvalidInputError; an item already
    flagged or already decided -> ConflictError."""
    text = " ".join(reason.split())
    if not text:
        raise InvalidInputError("a flag needs a reason, e.g. 'needs a second opinion'")
    if len(text) > MAX_FLAG_REASON:
        raise InvalidInputError(f"a flag reason has at most {MAX_FLAG_REASON} characters")
    if any(unicodedata.category(c) in ("Cc", "Cs") for c in text):
        raise InvalidInputError("a flag reason is plain text: it holds a control character")
    try:
        with ws.db.session() as s:
            item = repo.get_item(s, item_id=item_id)
            project = s.get(Project, item.project_id)
            assert project is not None
            if item_id in assignments.final_labels_for(s, item_ids=[item_id]):
                raise ConflictError(f"item {item_id} already has a final label")
            if flags.open_flags_for(s, item_ids=[item_id]):
                raise ConflictError(f"item {item_id} is already flagged")
            row = flags.add_flag(
                s,
                project_id=project.id,
                item_id=item_id,
                reason=text,
                flagged_by_id=account.id,
            )
            flag_id, flagged_at = row.id, row.created_at
            repo.audit(
                s,
                actor=account.username,
                action="review.flag",
                entity="item",
                entity_id=item_id,
                detail={"flag": flag_id, "project": project.id, "reason": text},
            )
            name = project.name
    except IntegrityError as error:  # a concurrent flag on the same item won the race
        raise ConflictError(f"item {item_id} is already flagged") from error
    logger.info("item %d flagged (flag %d)", item_id, flag_id)
    return FlagResult(
        item_id=item_id,
        project=name,
        reason=text,
        flagged_by=account.username,
        flagged_at=flagged_at,
    )


def unflag_item(ws: Workspace, *, account: Account, item_id: int) -> None:
    """Take an item's open flag back (flagged by mistake, or the question is settled
    without a label): it is closed, not deleted, and audited. Unknown item ->
    NotFoundError; no open flag -> ConflictError."""
    with ws.db.session() as s:
        repo.get_item(s, item_id=item_id)
        closed = flags.resolve_flags(s, item_id=item_id, resolved_by_id=account.id)
        if not closed:
            raise ConflictError(f"item {item_id} has no open flag")
        repo.audit(
            s,
            actor=account.username,
            action="review.unflag",
            entity="item",
            entity_id=item_id,
            detail={"flag": closed[0]},
        )
    logger.info("item %d unflagged (flag %d)", item_id, closed[0])
