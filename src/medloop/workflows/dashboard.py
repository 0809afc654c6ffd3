"""A project's dashboard: how far labelling got, how good the people and the models are.

One call, no server needed::

    board = project_dashboard(ws, project="pneumoniamnist")
    board.progress.final_labels, board.annotators[0].gold_accuracy, board.learning_curve

Annotator accuracy comes with 95% Wilson intervals (`aggregation.reliability`): on gold
questions (items with a final label) and as the project's aggregator estimates it from
every answer. "Consensus on gold" scores the crowd's consensus on the items whose final
label is known, fitted *without* those final labels, so the score is not the trivial 1.0
a consensus clamped to its own gold would give; majority vote is shown beside it. Final
labels mostly come from doctors reviewing the doubtful items, so this score understates
the accuracy on typical items (on 400 PneumoniaMNIST training items after 3 simulated
rounds: 0.73 on the 45 reviewed items, while the loop's labels of all 400 items agree
with the dataset's reference labels at 0.86).
Aggregates only: no patient data, no per-item labels.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy.orm import Session

from medloop.aggregation import DEFAULT_METHOD, MajorityVote, Method, make_aggregator
from medloop.aggregation.reliability import worker_reliability
from medloop.annotation import wilson_interval
from medloop.store import repository as repo
from medloop.types import LabelKind, LabelSource, TaskStatus, look_up_option
from medloop.workflows.figures import FiguresAge, project_figures
from medloop.workflows.workspace import Workspace

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class IngestProgress:
    items: int
    splits: dict[str, int]
    labelled: int  # items with a consensus or a final label
    final_labels: int
    answers: int
    crowd_answers: int
    doctor_answers: int
    open_tasks: int


@dataclass(frozen=True)
class DayCount:
    day: str  # YYYY-MM-DD, UTC
    crowd: int
    doctor: int


@dataclass(frozen=True)
class AnnotatorStats:
    """One lay annotator: answers, accuracy on gold and as the aggregator estimates it."""

    worker: str
    answers: int
    gold_answers: int
    gold_accuracy: float | None
    gold_low: float | None
    gold_high: float | None
    estimated_accuracy: float | None
    estimated_low: float | None
    estimated_high: float | None


@dataclass(frozen=True)
class GoldScore:
    """A consensus method's accuracy on items with a known final label."""

    method: str
    items: int
    accuracy: float | None
    low: float | None
    high: float | None


@dataclass(frozen=True)
class ModelRow:
    version: int
    network: str
    n_train: int
    round: int
    created_at: datetime
    metrics: dict[str, Any]


@dataclass(frozen=True)
class CurvePoint:
    version: int
    n_train: int
    val_auc: float | None
    test_auc: float | None
    test_acc: float | None


@dataclass(frozen=True)
class Dashboard:
    project: str
    classes: list[str]
    method: str
    progress: IngestProgress
    answers_per_day: list[DayCount]
    annotators: list[AnnotatorStats]
    consensus_on_gold: list[GoldScore]
    models: list[ModelRow]
    learning_curve: list[CurvePoint]
    #: How far behind what comes from answers and labels (their counts in `progress`,
    #: `answers_per_day`, `annotators`, `consensus_on_gold`) is; None: current.
    figures_as_of: FiguresAge | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (NaN becomes None)."""
        return as_json(asdict(self))


def as_json(value: Any) -> Any:
    """`value` with numpy scalars as Python numbers and NaN as None, recursively."""
    if isinstance(value, dict):
        return {str(k): as_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [as_json(v) for v in value]
    if isinstance(value, float | np.floating):
        return None if math.isnan(float(value)) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def _number(value: Any, digits: int = 4) -> float | None:
    if value is None:
        return None
    number = float(value)
    return None if math.isnan(number) else round(number, digits)


def list_projects(ws: Workspace) -> list[str]:
    """The image projects (patient cohorts have no labelling to show)."""
    with ws.db.session() as s:
        return [p.name for p in repo.list_projects(s) if not repo.is_cohort(p)]


def project_dashboard(
    ws: Workspace, *, project: str, method: str | None = None, fresh: bool = True
) -> Dashboard:
    """Everything the dashboard shows for one project (`method`: the aggregator used for
    the estimates; default the recommended one). `fresh=False` (a server): what comes
    from answers and labels may be shown outdated, with how far (`figures_as_of`), while
    it is recomputed in the background (`figures`)."""
    name = look_up_option(method or DEFAULT_METHOD, Method).value
    with ws.db.session() as s:
        record = repo.get_image_project(s, name=project)
        classes = [str(c) for c in record.classes]
        splits = repo.item_counts(s, project_id=record.id)
        open_tasks = repo.count_tasks(s, project_id=record.id, status=TaskStatus.OPEN)
        models = _model_rows(repo.model_versions(s, project_id=record.id))
    crowd, age = _crowd_figures(
        ws, project_id=record.id, n_classes=len(classes), method=name, fresh=fresh
    )
    return Dashboard(
        project=project,
        classes=classes,
        method=name,
        progress=IngestProgress(
            items=sum(splits.values()),
            splits=splits,
            open_tasks=open_tasks,
            **asdict(crowd.counts),
        ),
        answers_per_day=crowd.answers_per_day,
        annotators=crowd.annotators,
        consensus_on_gold=crowd.consensus_on_gold,
        models=models,
        learning_curve=_curve(models),
        figures_as_of=age,
    )


@dataclass(frozen=True)
class _LabelCounts:
    labelled: int
    final_labels: int
    answers: int
    crowd_answers: int
    doctor_answers: int


@dataclass(frozen=True)
class _CrowdFigures:
    """What the dashboard computes from a project's answers and labels alone."""

    counts: _LabelCounts
    answers_per_day: list[DayCount]
    annotators: list[AnnotatorStats]
    consensus_on_gold: list[GoldScore]


def _crowd_figures(
    ws: Workspace, *, project_id: int, n_classes: int, method: str, fresh: bool
) -> tuple[_CrowdFigures, FiguresAge | None]:
    """The project's `_CrowdFigures` (reading 458,000 answers and fitting the crowd model
    three times, once with its bootstrap, takes seconds), kept in the workspace
    (`figures.project_figures`), with how far behind they are."""

    def compute(s: Session) -> _CrowdFigures:
        answers = repo.answers_frame(s, project_id=project_id)
        consensus = repo.current_labels(s, project_id=project_id, kind=LabelKind.CONSENSUS)
        finals = repo.current_labels(s, project_id=project_id, kind=LabelKind.FINAL)
        crowd, known = _crowd_and_gold(answers, finals)
        return _CrowdFigures(
            counts=_LabelCounts(
                labelled=len(consensus.index.union(finals.index)),
                final_labels=len(finals),
                answers=len(answers),
                crowd_answers=int((answers["source"] == str(LabelSource.CROWD)).sum()),
                doctor_answers=int((answers["source"] == str(LabelSource.DOCTOR)).sum()),
            ),
            answers_per_day=_per_day(answers),
            annotators=_annotators(crowd, known, n_classes=n_classes, method=method),
            consensus_on_gold=_consensus_on_gold(crowd, known, n_classes=n_classes, method=method),
        )

    key = ("dashboard", project_id, method)
    return project_figures(ws, key=key, project_id=project_id, compute=compute, fresh=fresh)


# The dashboard's charts each need one part: these read and compute only that part.


def answers_per_day(ws: Workspace, *, project: str, fresh: bool = True) -> list[DayCount]:
    """`Dashboard.answers_per_day` alone (from the figures the dashboard keeps; `fresh`
    as there)."""
    figures = _project_crowd_figures(ws, project=project, method=DEFAULT_METHOD, fresh=fresh)
    return figures.answers_per_day


def annotator_stats(
    ws: Workspace, *, project: str, method: str | None = None, fresh: bool = True
) -> list[AnnotatorStats]:
    """`Dashboard.annotators` alone (from the figures the dashboard keeps; `fresh` as
    there)."""
    name = look_up_option(method or DEFAULT_METHOD, Method).value
    return _project_crowd_figures(ws, project=project, method=name, fresh=fresh).annotators


def _project_crowd_figures(
    ws: Workspace, *, project: str, method: str, fresh: bool
) -> _CrowdFigures:
    with ws.db.session() as s:
        record = repo.get_image_project(s, name=project)
        project_id, n_classes = record.id, len(record.classes)
    figures, _age = _crowd_figures(
        ws, project_id=project_id, n_classes=n_classes, method=method, fresh=fresh
    )
    return figures


def learning_curve(ws: Workspace, *, project: str) -> list[CurvePoint]:
    """`Dashboard.learning_curve` alone."""
    with ws.db.session() as s:
        record = repo.get_image_project(s, name=project)
        return _curve(_model_rows(repo.model_versions(s, project_id=record.id)))


def _model_rows(versions: Sequence[Any]) -> list[ModelRow]:
    return [
        ModelRow(
            version=v.version,
            network=v.network,
            n_train=v.n_train,
            round=v.round,
            created_at=v.created_at,
            metrics=as_json(dict(v.metrics)),
        )
        for v in versions
    ]


def _curve(models: list[ModelRow]) -> list[CurvePoint]:
    return [
        CurvePoint(
            version=m.version,
            n_train=m.n_train,
            val_auc=_number(m.metrics.get("val_auc")),
            test_auc=_number(m.metrics.get("test_auc")),
            test_acc=_number(m.metrics.get("test_acc")),
        )
        for m in models
    ]


def _crowd_and_gold(answers: pd.DataFrame, finals: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """Lay answers as (task, worker, label) and the final labels of the tasks they answered."""
    crowd = answers[answers["source"] == str(LabelSource.CROWD)]
    frame = crowd[["task", "worker", "label"]].reset_index(drop=True)
    known = finals["label"].astype(int)
    return frame, known[known.index.isin(frame["task"])]


def _per_day(answers: pd.DataFrame) -> list[DayCount]:
    if answers.empty:
        return []
    days = pd.to_datetime(answers["created_at"], utc=True).dt.strftime("%Y-%m-%d")
    table = pd.crosstab(days, answers["source"])
    return [
        DayCount(
            day=str(day),
            crowd=int(row.get(str(LabelSource.CROWD), 0)),
            doctor=int(row.get(str(LabelSource.DOCTOR), 0)),
        )
        for day, row in table.sort_index().iterrows()
    ]


def _annotators(
    crowd: pd.DataFrame, known: pd.Series, *, n_classes: int, method: str
) -> list[AnnotatorStats]:
    """Per-annotator reliability: on gold, and as `method` estimates it from all answers."""
    if crowd.empty:
        return []
    classes = list(range(n_classes))
    gold = known if len(known) else None
    model = make_aggregator(method, classes=classes).fit(crowd, known=gold)
    table = worker_reliability(crowd, known=gold, model=model)
    table = table.sort_values(["n_answers", "gold_accuracy"], ascending=False, kind="stable")
    return [
        AnnotatorStats(
            worker=str(worker),
            answers=int(row["n_answers"]),
            gold_answers=int(row["n_gold"]),
            gold_accuracy=_number(row["gold_accuracy"]),
            gold_low=_number(row["gold_low"]) if row["n_gold"] else None,
            gold_high=_number(row["gold_high"]) if row["n_gold"] else None,
            estimated_accuracy=_number(row["model_accuracy"]),
            estimated_low=_number(row["model_low"]),
            estimated_high=_number(row["model_high"]),
        )
        for worker, row in table.iterrows()
    ]


def _consensus_on_gold(
    crowd: pd.DataFrame, known: pd.Series, *, n_classes: int, method: str
) -> list[GoldScore]:
    """Accuracy on the known items of `method`'s and majority vote's consensus, each
    fitted without the known labels."""
    if crowd.empty or known.empty:
        return []
    classes = list(range(n_classes))
    scores = []
    for name, aggregator in (
        (method, make_aggregator(method, classes=classes)),
        ("majority_vote", MajorityVote(classes=classes)),
    ):
        predicted = aggregator.fit_predict(crowd).reindex(known.index)
        correct = int((predicted.to_numpy() == known.to_numpy()).sum())
        low, high = wilson_interval(np.array([correct]), np.array([len(known)]))
        scores.append(
            GoldScore(
                method=name,
                items=len(known),
                accuracy=_number(correct / len(known)),
                low=_number(low[0]),
                high=_number(high[0]),
            )
        )
    return scores
