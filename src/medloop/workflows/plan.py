"""Plan the next labelling requests of a project: more lay answers, or a doctor.

Reads the project's crowd answers, final labels and its model's predictions, fits
Dawid-Skene (final labels known) for the crowd posteriors and a typical lay
annotator's confusion matrix, folds in the model's probabilities for the beliefs, and
hands both to `medloop.aggregation.allocation.plan_labelling`: the beliefs judge how
likely each label is wrong, the crowd posterior says which label the item keeps.

Only training items without a final label are planned, and none whose earlier request is
still open (lay answers not all in, or a doctor not yet decided): asking again before
those come in would pay twice for one question. Items nobody has answered yet take part
when the model has a prediction for them (unless `unanswered=False`).
Planning writes nothing; `publish_plan` turns a plan into work for people: its lay
requests open labelling tasks for more answers, its doctor requests become review
requests that head the doctors' queue until decided. The loop's cost-aware rounds carry
plans out with simulated people.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from medloop.aggregation import DawidSkene
from medloop.aggregation.allocation import (
    Action,
    combine_beliefs,
    mean_confusion,
    plan_labelling,
    symmetric_confusion,
)
from medloop.exceptions import InvalidInputError
from medloop.store import repository as repo
from medloop.types import LabelKind, LabelSource, Split, TaskKind
from medloop.workflows.workspace import Workspace

#: Lay accuracy assumed before the project has any crowd answers to estimate it from.
DEFAULT_LAY_ACCURACY = 0.7


@dataclass(frozen=True)
class LabellingPlan:
    """The chosen requests (`requests`: item x action, answers, cost, risk, ...) and totals;
    `pending` open items were left out because their earlier requests are still open."""

    requests: pd.DataFrame
    budget: float
    candidates: int
    lay_cost: float
    doctor_cost: float
    pending: int = 0

    def summary(self) -> dict[str, float | int]:
        """Totals a person reads first: what is asked of whom, at what cost, for what."""
        requests = self.requests
        crowd = requests[requests["action"] == Action.CROWD]
        doctor = requests[requests["action"] == Action.DOCTOR]
        return {
            "budget": self.budget,
            "lay_cost": self.lay_cost,
            "doctor_cost": self.doctor_cost,
            "cost": round(float(requests["cost"].sum()), 4),
            "candidates": self.candidates,
            "pending_items": self.pending,
            "crowd_items": len(crowd),
            "lay_answers": int(crowd["answers"].sum()),
            "doctor_items": len(doctor),
            "expected_errors_now": round(float(requests["risk"].sum()), 4),
            "expected_errors_removed": round(float(requests["gain"].sum()), 4),
        }


def plan_requests(
    ws: Workspace,
    *,
    project: str,
    budget: float,
    lay_cost: float = 1.0,
    doctor_cost: float = 20.0,
    doctor_accuracy: float = 0.97,
    max_lay_answers: int = 5,
    unanswered: bool = True,
) -> LabellingPlan:
    """The best use of `budget` on the project's open items (see the module docstring);
    `unanswered=False` leaves out items nobody has answered yet."""
    with ws.db.session() as s:
        record = repo.get_image_project(s, name=project)
        classes = list(range(len(record.classes)))
        items = repo.items_frame(s, project_id=record.id)
        answers = repo.answers_frame(s, project_id=record.id, sources=[LabelSource.CROWD])
        finals = repo.current_labels(s, project_id=record.id, kind=LabelKind.FINAL)
        pending = repo.pending_items(s, project_id=record.id)
        model = repo.current_model_version(s, project_id=record.id)
        predictions = (
            repo.predictions_frame(s, model_version_id=model.id, n_classes=len(classes))
            if model is not None
            else None
        )
    undecided = items.index[(items["split"] == Split.TRAIN) & ~items.index.isin(finals.index)]
    open_items = undecided[~undecided.isin(list(pending))]
    if answers.empty:
        crowd = pd.DataFrame(columns=classes, dtype=float)
        crowd_prior = np.full(len(classes), 1.0 / len(classes))
        lay = symmetric_confusion(DEFAULT_LAY_ACCURACY, len(classes))
    else:
        known = finals["label"].astype(int) if not finals.empty else None
        fitted = DawidSkene(classes=classes).fit(answers[["task", "worker", "label"]], known=known)
        crowd = fitted.probas_.loc[fitted.probas_.index.isin(open_items)]
        crowd_prior = fitted.priors_.to_numpy(dtype=float)
        counts = answers["worker"].value_counts().reindex(fitted.workers_, fill_value=0)
        lay = mean_confusion(fitted.errors_, counts.to_numpy(dtype=float))
    if predictions is not None:
        wanted = open_items if unanswered else open_items.intersection(crowd.index)
        predictions = predictions.loc[predictions.index.isin(wanted)]
    beliefs = combine_beliefs(crowd, predictions, prior=crowd_prior)
    # The label each item keeps is the crowd's (its prior where nobody has answered yet).
    labels = pd.DataFrame(
        np.tile(crowd_prior, (len(beliefs), 1)), index=beliefs.index, columns=beliefs.columns
    )
    answered = beliefs.index.intersection(crowd.index)
    labels.loc[answered] = crowd.loc[answered, list(beliefs.columns)].to_numpy()
    requests = plan_labelling(
        beliefs,
        label_probas=labels,
        lay_confusion=lay,
        doctor_accuracy=doctor_accuracy,
        lay_cost=lay_cost,
        doctor_cost=doctor_cost,
        budget=budget,
        max_lay_answers=max_lay_answers,
    )
    return LabellingPlan(
        requests.rename_axis("item"),
        budget,
        len(beliefs),
        lay_cost,
        doctor_cost,
        pending=len(undecided) - len(open_items),
    )


@dataclass(frozen=True)
class PublishedPlan:
    lay_tasks: int
    lay_answers: int
    review_requests: int


def publish_plan(ws: Workspace, *, project: str, plan: LabellingPlan, actor: str) -> PublishedPlan:
    """Open the plan's requests for people: more answers on labelling tasks, review
    requests for doctors (items that already have a final label are left alone); audited
    under `actor`."""
    requests = plan.requests
    crowd = requests[requests["action"] == Action.CROWD]
    doctor = requests[requests["action"] == Action.DOCTOR]
    with ws.db.session() as s:
        record = repo.get_project(s, name=project)
        items = repo.items_frame(s, project_id=record.id)
        unknown = requests.index[~requests.index.isin(items.index)]
        if len(unknown):
            raise InvalidInputError(f"item {unknown[0]} is not in project {project!r}")
        finals = repo.current_labels(s, project_id=record.id, kind=LabelKind.FINAL)
        crowd = crowd[~crowd.index.isin(finals.index)]
        doctor = doctor[~doctor.index.isin(finals.index)]
        already = repo.requested_reviews(s, project_id=record.id)
        new_reviews = [int(i) for i in doctor.index if int(i) not in already]
        asked = repo.request_answers(
            s,
            project_id=record.id,
            item_ids=[int(i) for i in crowd.index],
            answers=[int(n) for n in crowd["answers"]],
        )
        repo.create_tasks(
            s,
            project_id=record.id,
            item_ids=new_reviews,
            required_answers=1,
            kind=TaskKind.REVIEW,
            round=repo.latest_round(s, project_id=record.id),
        )
        published = PublishedPlan(asked.tasks, asked.answers, len(new_reviews))
        repo.audit(
            s,
            actor=actor,
            action="plan.publish",
            entity="project",
            entity_id=record.id,
            detail={
                "budget": plan.budget,
                "lay_tasks": published.lay_tasks,
                "lay_answers": published.lay_answers,
                "review_requests": published.review_requests,
            },
        )
    return published
