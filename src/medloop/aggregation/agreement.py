"""Inter-annotator agreement: Fleiss' kappa and Krippendorff's alpha (nominal labels).

Both read the answers contract (``task, worker, label``) and work from the tasks x
classes count matrix, so they are a few array operations on any number of answers.
Tasks with fewer than two answers carry no information about agreement and are left
out. Answer weights are ignored: agreement counts answers.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd

from medloop.aggregation.base import encode_answers
from medloop.exceptions import InvalidInputError


def label_counts(answers: pd.DataFrame) -> pd.DataFrame:
    """Answers per task and class (tasks x classes), every answer counted once."""
    data = encode_answers(answers)
    k = data.n_classes
    counts = np.bincount(data.task * k + data.label, minlength=data.n_tasks * k)
    return pd.DataFrame(
        counts.reshape(data.n_tasks, k),
        index=data.tasks,
        columns=pd.Index(data.classes, name="label"),
    )


def _paired(answers: pd.DataFrame | npt.ArrayLike) -> npt.NDArray[np.float64]:
    if isinstance(answers, pd.DataFrame) and {"task", "worker", "label"} <= set(answers):
        counts = label_counts(answers).to_numpy(dtype=float)
    else:
        counts = np.asarray(answers, dtype=float)
        if counts.ndim != 2 or (counts < 0).any() or not np.isfinite(counts).all():
            raise InvalidInputError("counts must be a 2-D array of non-negative numbers")
    counts = counts[counts.sum(axis=1) >= 2]
    if len(counts) == 0:
        raise InvalidInputError("agreement needs at least one task with two or more answers")
    return counts


def fleiss_kappa(answers: pd.DataFrame | npt.ArrayLike) -> float:
    """Fleiss' kappa from answers, or from a (tasks x classes) count matrix.

    With unequal numbers of answers per task each task's observed agreement uses its
    own count (the usual generalisation); with equal counts it is Fleiss (1971).
    Returns 1.0 when everybody agrees and chance agreement is already 1 (one class).

    >>> round(fleiss_kappa([[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6],
    ...     [0, 3, 9, 2, 0], [2, 2, 8, 1, 1], [7, 7, 0, 0, 0], [3, 2, 6, 3, 0],
    ...     [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]), 3)
    0.21
    """
    counts = _paired(answers)
    n = counts.sum(axis=1)
    observed = float((((counts**2).sum(axis=1) - n) / (n * (n - 1))).mean())
    shares = counts.sum(axis=0) / counts.sum()
    chance = float((shares**2).sum())
    if chance >= 1.0 - 1e-12:
        return 1.0
    return (observed - chance) / (1.0 - chance)


def krippendorff_alpha(answers: pd.DataFrame | npt.ArrayLike) -> float:
    """Krippendorff's alpha for nominal labels (any number of coders, missing answers).

    Built from the coincidence matrix: each task with ``m >= 2`` answers contributes
    its pairs of answers from different coders, weighted ``1 / (m - 1)``. Returns 1.0
    when only one class is ever used.
    """
    counts = _paired(answers)
    m = counts.sum(axis=1)
    scaled = counts / (m - 1.0)[:, None]
    coincidence = counts.T @ scaled - np.diag(scaled.sum(axis=0))
    margins = coincidence.sum(axis=1)
    total = margins.sum()
    disagree_observed = coincidence.sum() - np.trace(coincidence)
    disagree_expected = (total**2 - (margins**2).sum()) / (total - 1.0)
    if disagree_expected <= 0:
        return 1.0
    return float(1.0 - disagree_observed / disagree_expected)
