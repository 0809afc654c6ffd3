"""Exports: every answer, and each item's current label, as tables ready for CSV.

Labels are written as class names, workers by username, items by id (not by source file
name, which may carry identifying text); never patient data.
"""

from __future__ import annotations

import pandas as pd

from medloop.store import repository as repo
from medloop.types import LabelKind
from medloop.workflows.workspace import Workspace

ANSWER_COLUMNS = ["task", "item", "worker", "label", "source", "time"]
LABEL_COLUMNS = ["item", "split", "label", "kind", "source", "method", "confidence"]


def export_answers(ws: Workspace, *, project: str) -> pd.DataFrame:
    """All answers of a project: task, item, worker, label (class name), source, time."""
    with ws.db.session() as s:
        record = repo.get_project(s, name=project)
        answers = repo.answers_frame(s, project_id=record.id)
        classes = [str(c) for c in record.classes]
    if answers.empty:
        return pd.DataFrame(columns=ANSWER_COLUMNS)
    return pd.DataFrame(
        {
            "task": answers["task_id"].astype(int),
            "item": answers["task"].astype(int),
            "worker": answers["worker"],
            "label": [classes[int(v)] for v in answers["label"]],
            "source": answers["source"],
            "time": pd.to_datetime(answers["created_at"], utc=True).map(lambda t: t.isoformat()),
        },
        columns=ANSWER_COLUMNS,
    )


def export_labels(ws: Workspace, *, project: str) -> pd.DataFrame:
    """Each labelled item's current label: the final label where a doctor (or gold) signed
    one, the crowd consensus otherwise."""
    with ws.db.session() as s:
        record = repo.get_project(s, name=project)
        classes = [str(c) for c in record.classes]
        finals = repo.current_labels(s, project_id=record.id, kind=LabelKind.FINAL)
        consensus = repo.current_labels(s, project_id=record.id, kind=LabelKind.CONSENSUS)
        items = repo.items_frame(s, project_id=record.id)
    finals = finals.assign(kind=str(LabelKind.FINAL))
    consensus = consensus[~consensus.index.isin(finals.index)].assign(kind=str(LabelKind.CONSENSUS))
    current = pd.concat([finals, consensus]).sort_index()
    if current.empty:
        return pd.DataFrame(columns=LABEL_COLUMNS)
    return pd.DataFrame(
        {
            "item": current.index.astype(int),
            "split": items.loc[current.index, "split"].to_numpy(),
            "label": [classes[int(v)] for v in current["label"]],
            "kind": current["kind"].to_numpy(),
            "source": current["source"].to_numpy(),
            "method": current["method"].to_numpy(),
            "confidence": current["confidence"].to_numpy(),
        },
        columns=LABEL_COLUMNS,
    )
