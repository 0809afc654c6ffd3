"""One-coin Dawid-Skene: each worker has one accuracy; errors are uniform over classes.

A worker ``w`` answers the true class with probability ``skills_[w]`` and each other
class with probability ``(1 - skills_[w]) / (K - 1)``. EM alternates task posteriors
and MAP worker accuracies under a Beta prior (``correct_prior``, ``wrong_prior``
pseudo-answers), which keeps workers with few answers near a plausible accuracy.
Far fewer parameters than full Dawid-Skene (one per worker, not K x K), so it is
stabler on sparse crowds.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Sequence

import numpy as np
import numpy.typing as npt
import pandas as pd

from medloop.aggregation.base import (
    Aggregator,
    EncodedAnswers,
    check_non_negative,
    check_positive_int,
    clamp_known,
    log_not_converged,
    normalize_log,
    safe_log,
    start_posteriors,
)

logger = logging.getLogger(__name__)


def one_coin_log_joint(
    data: EncodedAnswers,
    skills: npt.NDArray[np.float64],
    log_priors: npt.NDArray[np.float64],
) -> npt.NDArray[np.float64]:
    """Log P(true class, answers) per task under one-coin workers, (tasks x classes)."""
    n_tasks, k = data.n_tasks, data.n_classes
    log_right = safe_log(skills)
    log_wrong = safe_log((1.0 - skills) / max(k - 1, 1))
    base = np.bincount(data.task, weights=data.weight * log_wrong[data.worker], minlength=n_tasks)
    bonus = np.bincount(
        data.task * k + data.label,
        weights=data.weight * (log_right - log_wrong)[data.worker],
        minlength=n_tasks * k,
    ).reshape(n_tasks, k)
    return np.asarray(bonus + base[:, None] + log_priors, dtype=float)


class OneCoinDawidSkene(Aggregator):
    """One-coin Dawid-Skene (a single accuracy per worker) with a Beta prior.

    Parameters
    ----------
    n_iter: maximum number of EM iterations (reaching it is logged as a warning).
    tol: stop when no posterior moves by more than ``tol``.
    correct_prior, wrong_prior: Beta pseudo-counts of right and wrong answers per worker.
    classes: labels to include even when nobody chose them.

    Learned attributes: ``labels_``, ``probas_``, ``classes_``, ``skills_`` (Series
    worker -> accuracy), ``priors_`` (Series class -> prior), ``n_iter_``.

    >>> import pandas as pd
    >>> answers = pd.DataFrame(
    ...     {"task": [1, 1, 1, 2, 2, 2], "worker": list("abcabc"), "label": [0, 0, 1, 1, 1, 1]}
    ... )
    >>> OneCoinDawidSkene().fit_predict(answers).tolist()
    [0, 1]
    """

    def __init__(
        self,
        n_iter: int = 1000,
        tol: float = 1e-6,
        *,
        correct_prior: float = 2.0,
        wrong_prior: float = 1.0,
        classes: Sequence[Hashable] | None = None,
    ) -> None:
        super().__init__(classes=classes)
        self.n_iter = n_iter
        self.tol = tol
        self.correct_prior = correct_prior
        self.wrong_prior = wrong_prior

    def _fit_proba(self, data: EncodedAnswers) -> npt.NDArray[np.float64]:
        n_iter = check_positive_int("n_iter", self.n_iter)
        tol = check_non_negative("tol", self.tol)
        a = check_non_negative("correct_prior", self.correct_prior)
        b = check_non_negative("wrong_prior", self.wrong_prior)
        k = data.n_classes
        posteriors = start_posteriors(data)
        totals = np.bincount(data.worker, weights=data.weight, minlength=data.n_workers)
        skills = np.full(data.n_workers, 0.5)
        priors = np.full(k, 1.0 / k)
        iteration = 0
        while iteration < n_iter:
            iteration += 1
            hits = np.bincount(
                data.worker,
                weights=data.weight * posteriors[data.task, data.label],
                minlength=data.n_workers,
            )
            skills = (hits + a) / np.maximum(totals + a + b, 1e-12)
            skills = np.clip(skills, 1e-6, 1 - 1e-6)
            priors = posteriors.sum(axis=0) + 1.0
            priors /= priors.sum()
            updated = normalize_log(one_coin_log_joint(data, skills, safe_log(priors)))
            clamp_known(data, updated)
            shift = float(np.abs(updated - posteriors).max())
            posteriors = updated
            if shift <= tol:
                break
        else:
            log_not_converged("OneCoinDawidSkene", iteration, shift, tol)
        self.skills_: pd.Series = pd.Series(skills, index=data.workers, name="skill")
        self.priors_: pd.Series = pd.Series(priors, index=pd.Index(data.classes, name="label"))
        self.n_iter_: int = iteration
        logger.debug("OneCoinDawidSkene: %d iterations", iteration)
        return posteriors
