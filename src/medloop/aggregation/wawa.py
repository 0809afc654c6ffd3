"""Wawa (worker agreement with aggregate): majority vote weighted by agreement with it.

First a plain (weighted) majority vote; each worker's skill is then the weighted share
of their answers that agree with it, and the final vote weighs every answer by its
worker's skill. Two passes, no iteration.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np
import numpy.typing as npt
import pandas as pd

from medloop.aggregation.base import Aggregator, EncodedAnswers, argmax_ties_low, initial_shares


def agreement_skills(
    data: EncodedAnswers, consensus: npt.NDArray[np.intp]
) -> npt.NDArray[np.float64]:
    """Weighted share of each worker's answers equal to `consensus` (per task code)."""
    agree = (data.label == consensus[data.task]).astype(float) * data.weight
    hits = np.bincount(data.worker, weights=agree, minlength=data.n_workers)
    totals = np.bincount(data.worker, weights=data.weight, minlength=data.n_workers)
    return np.divide(hits, totals, out=np.zeros_like(hits), where=totals > 0)


def weighted_shares(
    data: EncodedAnswers, worker_weight: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """Vote shares with each answer weighted by its worker's weight (uniform if none)."""
    n_tasks, k = data.n_tasks, data.n_classes
    votes = np.bincount(
        data.task * k + data.label,
        weights=data.weight * worker_weight[data.worker],
        minlength=n_tasks * k,
    ).reshape(n_tasks, k)
    totals = votes.sum(axis=1, keepdims=True)
    empty = totals[:, 0] <= 0
    fallback = initial_shares(data)
    out = np.divide(votes, totals, out=np.zeros_like(votes), where=totals > 0)
    out[empty] = fallback[empty]
    return out


class Wawa(Aggregator):
    """Majority vote weighted by each worker's agreement with the majority.

    Learned attributes: ``labels_``, ``probas_``, ``classes_`` and ``skills_`` (Series
    worker -> agreement with the majority vote).

    >>> import pandas as pd
    >>> answers = pd.DataFrame(
    ...     {"task": [1, 1, 1, 2, 2, 2], "worker": list("abcabc"), "label": [0, 0, 1, 1, 1, 1]}
    ... )
    >>> Wawa().fit_predict(answers).tolist()
    [0, 1]
    """

    def __init__(self, *, classes: Sequence[Hashable] | None = None) -> None:
        super().__init__(classes=classes)

    def _fit_proba(self, data: EncodedAnswers) -> npt.NDArray[np.float64]:
        shares = initial_shares(data)
        if len(data.known_codes):
            shares[data.known_codes] = 0.0
            shares[data.known_codes, data.known_labels] = 1.0
        skills = agreement_skills(data, argmax_ties_low(shares))
        self.skills_: pd.Series = pd.Series(skills, index=data.workers, name="skill")
        return weighted_shares(data, skills)
