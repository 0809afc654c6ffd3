"""Per-annotator reliability with 95% confidence intervals.

Two views of the same question, side by side:

- on gold questions (tasks with known labels): accuracy with a Wilson interval;
- from a fitted aggregator's posteriors: each answer counts as ``P(true = answered
  label)``, so a worker's expected accuracy covers every task they answered; its
  interval is a percentile bootstrap over tasks: the aggregator is refitted on tasks
  drawn with replacement (each with all its answers), so the interval holds both the
  luck of which tasks a worker saw and the model's own uncertainty. A Wilson interval
  on the posterior-weighted counts, used before, covered the true accuracy of simulated
  workers only about 80% of the time (it takes estimated counts for observed ones).
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import replace

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import stats

from medloop.aggregation.base import (
    Aggregator,
    EncodedAnswers,
    check_positive_int,
    clamp_known,
    encode_answers,
    validate_known,
)
from medloop.annotation.tasks import Z_95, wilson_interval
from medloop.exceptions import InvalidInputError

#: Bootstrap refits behind each model interval (see benchmarks/README.md for the cost).
N_BOOTSTRAP = 50


def worker_reliability(
    answers: pd.DataFrame,
    *,
    known: pd.Series | None = None,
    model: Aggregator | None = None,
    z: float = Z_95,
    n_bootstrap: int = N_BOOTSTRAP,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per worker: answers, gold accuracy and model accuracy with intervals.

    Columns ``n_answers``, ``n_gold``, ``gold_correct``, ``gold_accuracy`` (NaN without
    gold answers), ``gold_low``, ``gold_high`` and, when a fitted ``model`` is given,
    ``model_accuracy``, ``model_low``, ``model_high`` (a percentile interval from
    ``n_bootstrap`` refits of a copy of ``model`` on tasks resampled with ``seed``;
    widened to hold ``model_accuracy`` where needed). Index: worker.
    """
    n_bootstrap = check_positive_int("n_bootstrap", n_bootstrap)
    known = validate_known(known)
    classes = None if model is None else model.classes_
    data = encode_answers(answers, known=known, classes=classes)
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
        accuracy = np.nan_to_num(_expected_accuracy(data, matrix), nan=0.0)
        draws = _bootstrap_accuracy(data, model, matrix, n_bootstrap=n_bootstrap, seed=seed)
        tail = float(stats.norm.sf(z))
        with warnings.catch_warnings():  # a worker in no resample: all NaN, [0, 1] below
            warnings.simplefilter("ignore", RuntimeWarning)
            low, high = np.nanquantile(draws, [tail, 1.0 - tail], axis=0)
        frame["model_accuracy"] = accuracy
        frame["model_low"] = np.fmin(np.nan_to_num(low, nan=0.0), accuracy)
        frame["model_high"] = np.fmax(np.nan_to_num(high, nan=1.0), accuracy)
    frame.index.name = "worker"
    return frame


def _expected_accuracy(
    data: EncodedAnswers, probas: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """Each worker's mean ``P(true = answered label)`` over their answers (NaN: none)."""
    hits = np.bincount(data.worker, weights=probas[data.task, data.label], minlength=data.n_workers)
    totals = np.bincount(data.worker, minlength=data.n_workers)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(np.clip(hits / totals, 0.0, 1.0), dtype=float)


def _bootstrap_accuracy(
    data: EncodedAnswers,
    model: Aggregator,
    probas: npt.NDArray[np.float64],
    *,
    n_bootstrap: int,
    seed: int,
) -> npt.NDArray[np.float64]:
    """Expected accuracies (resamples x workers; NaN where a worker drew no task) from
    refits of a copy of ``model`` on tasks drawn with replacement, each copy of a task a
    task of its own; each refit starts from the full fit's posteriors. Known labels stay
    known where the model was given them (its posterior is exactly 1 there)."""
    rng = np.random.default_rng(seed)
    order = np.argsort(data.task, kind="stable")
    first = np.searchsorted(data.task[order], np.arange(data.n_tasks + 1))
    sizes = np.diff(first)
    known = np.full(data.n_tasks, -1, dtype=np.intp)
    given = probas[data.known_codes, data.known_labels] == 1.0
    known[data.known_codes[given]] = data.known_labels[given]
    start = np.nan_to_num(probas, nan=1.0 / data.n_classes)  # known tasks nobody answered
    draws = np.full((n_bootstrap, data.n_workers), np.nan)
    for b in range(n_bootstrap):
        picked = rng.integers(0, data.n_tasks, data.n_tasks)
        counts = sizes[picked]
        # the answers of each picked task, in order: starts repeated plus 0..size-1
        offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        rows = order[np.repeat(first[picked], counts) + offsets]
        new_task = np.repeat(np.arange(data.n_tasks), counts)
        is_known = known[picked] >= 0
        sample = replace(
            data,
            tasks=pd.RangeIndex(data.n_tasks, name="task"),
            task=new_task,
            worker=data.worker[rows],
            label=data.label[rows],
            weight=data.weight[rows],
            known_codes=np.flatnonzero(is_known),
            known_labels=known[picked][is_known],
            start=start[picked],
        )
        refit = np.asarray(copy.copy(model)._fit_proba(sample), dtype=float)
        clamp_known(sample, refit)
        answered = np.bincount(sample.worker, minlength=data.n_workers) > 0
        draws[b, answered] = _expected_accuracy(sample, refit)[answered]
    return draws
