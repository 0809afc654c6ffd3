"""Per-annotator reliability with 95% confidence intervals.

Two views of the same question, side by side:

- on gold questions (tasks with known labels): accuracy with a Wilson interval;
- from a fitted aggregator's posteriors: each answer counts as ``P(true = answered
  label)``, so a worker's expected accuracy covers every task they answered; its
  interval is a Wilson interval with the answer count as sample size (an approximation
  that ignores the model's own uncertainty).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from medloop.aggregation.base import Aggregator, encode_answers, validate_known
from medloop.annotation.tasks import Z_95, wilson_interval
from medloop.exceptions import InvalidInputError


def worker_reliability(
    answers: pd.DataFrame,
    *,
    known: pd.Series | None = None,
    model: Aggregator | None = None,
    z: float = Z_95,
) -> pd.DataFrame:
    """One row per worker: answers, gold accuracy and model accuracy with intervals.

    Columns ``n_answers``, ``n_gold``, ``gold_correct``, ``gold_accuracy`` (NaN without
    gold answers), ``gold_low``, ``gold_high`` and, when a fitted ``model`` is given,
    ``model_accuracy``, ``model_low``, ``model_high``. Index: worker.
    """
    known = validate_known(known)
    data = encode_answers(answers, known=known)
    n_workers = data.n_workers
    n_answers = np.bincount(data.worker, minlength=n_workers)
    frame = pd.DataFrame({"n_answers": n_answers}, index=data.workers)
    truth = np.full(data.n_tasks, -1, dtype=np.intp)
    truth[data.known_codes] = data.known_labels
    on_gold = truth[data.task] >= 0
    hits = on_gold & (truth[data.task] == data.label)
    n_gold = np.bincount(data.worker, weights=on_gold, minlength=n_workers).astype(int)
    correct = np.bincount(data.worker, weights=hits, minlength=n_workers).astype(int)
    low, high = wilson_interval(correct, n_gold, z=z)
    frame["n_gold"] = n_gold
    frame["gold_correct"] = correct
    frame["gold_accuracy"] = np.where(n_gold > 0, correct / np.maximum(n_gold, 1), np.nan)
    frame["gold_low"], frame["gold_high"] = low, high
    if model is not None:
        probas = model.probas_
        if list(probas.columns) != list(data.classes):
            probas = probas.reindex(columns=pd.Index(data.classes), fill_value=0.0)
        answered = data.tasks[np.unique(data.task)]  # gold may name tasks nobody answered
        missing = answered.difference(probas.index)
        if len(missing):
            raise InvalidInputError(
                f"the model was not fitted on these answers: {len(missing)} task(s) unknown"
            )
        matrix = probas.reindex(data.tasks).to_numpy(dtype=float)
        expected = np.bincount(
            data.worker, weights=matrix[data.task, data.label], minlength=n_workers
        )
        expected = np.minimum(expected, n_answers)
        m_low, m_high = wilson_interval(expected, n_answers.astype(float), z=z)
        frame["model_accuracy"] = expected / np.maximum(n_answers, 1)
        frame["model_low"], frame["model_high"] = m_low, m_high
    frame.index.name = "worker"
    return frame
