"""MACE: multi-annotator competence estimation (Hovy et al., NAACL 2013).

Each worker either knows the answer (probability ``competence``) and gives the true
label, or spams: picks a label from their own spam distribution ``xi``. So
P(answer l | true k) = competence * [l == k] + (1 - competence) * xi[l]. EM with a
Beta prior on competence and a Dirichlet prior on spam distributions (MAP instead of
the paper's variational Bayes); every step is a bincount over answers.
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


class MACE(Aggregator):
    """MACE aggregation: competence and spamming behaviour per worker.

    Parameters
    ----------
    n_iter: maximum number of EM iterations (reaching it is logged as a warning).
    tol: stop when no posterior moves by more than ``tol``.
    competent_prior, spam_prior: Beta pseudo-counts of competent and spammed answers.
    spam_label_prior: Dirichlet pseudo-count per label of each spam distribution.
    classes: labels to include even when nobody chose them.

    Learned attributes: ``labels_``, ``probas_``, ``classes_``, ``competence_``
    (Series worker -> probability of not spamming), ``spam_`` (DataFrame workers x
    classes), ``priors_``, ``n_iter_``.

    >>> import pandas as pd
    >>> answers = pd.DataFrame(
    ...     {"task": [1, 1, 1, 2, 2, 2], "worker": list("abcabc"), "label": [0, 0, 1, 1, 1, 1]}
    ... )
    >>> MACE().fit_predict(answers).tolist()
    [0, 1]
    """

    def __init__(
        self,
        n_iter: int = 1000,
        tol: float = 1e-6,
        *,
        competent_prior: float = 2.0,
        spam_prior: float = 1.0,
        spam_label_prior: float = 1.0,
        classes: Sequence[Hashable] | None = None,
    ) -> None:
        super().__init__(classes=classes)
        self.n_iter = n_iter
        self.tol = tol
        self.competent_prior = competent_prior
        self.spam_prior = spam_prior
        self.spam_label_prior = spam_label_prior

    def _fit_proba(self, data: EncodedAnswers) -> npt.NDArray[np.float64]:
        n_iter = check_positive_int("n_iter", self.n_iter)
        tol = check_non_negative("tol", self.tol)
        a = check_non_negative("competent_prior", self.competent_prior)
        b = check_non_negative("spam_prior", self.spam_prior)
        c = check_non_negative("spam_label_prior", self.spam_label_prior)
        n_tasks, n_workers, k = data.n_tasks, data.n_workers, data.n_classes
        task, worker, label, weight = data.task, data.worker, data.label, data.weight
        totals = np.bincount(worker, weights=weight, minlength=n_workers)

        posteriors = start_posteriors(data)
        competence = np.full(n_workers, 0.5)
        spam = np.full((n_workers, k), 1.0 / k)
        priors = np.full(k, 1.0 / k)
        iteration = 0
        while iteration < n_iter:
            iteration += 1
            # M-step. An answer equal to the true class is competent with probability
            # c / (c + (1 - c) xi[l]); any other answer was spammed.
            hit = posteriors[task, label]
            comp = competence[worker]
            xi = spam[worker, label]
            r = comp / np.maximum(comp + (1.0 - comp) * xi, 1e-300)
            competent = weight * hit * r
            spammed = weight - competent
            n_competent = np.bincount(worker, weights=competent, minlength=n_workers)
            competence = (n_competent + a) / np.maximum(totals + a + b, 1e-12)
            competence = np.clip(competence, 1e-6, 1 - 1e-6)
            spam_counts = np.bincount(
                worker * k + label, weights=spammed, minlength=n_workers * k
            ).reshape(n_workers, k)
            spam = spam_counts + c
            spam /= np.maximum(spam.sum(axis=1, keepdims=True), 1e-300)
            priors = posteriors.sum(axis=0) + 1.0
            priors /= priors.sum()

            # E-step: log P(l | k) = log((1-c) xi_l) for k != l, log(c + (1-c) xi_l) at k == l.
            comp = competence[worker]
            xi = spam[worker, label]
            log_off = safe_log((1.0 - comp) * xi)
            log_on = safe_log(comp + (1.0 - comp) * xi)
            base = np.bincount(task, weights=weight * log_off, minlength=n_tasks)
            bonus = np.bincount(
                task * k + label, weights=weight * (log_on - log_off), minlength=n_tasks * k
            ).reshape(n_tasks, k)
            updated = normalize_log(bonus + base[:, None] + safe_log(priors))
            clamp_known(data, updated)
            shift = float(np.abs(updated - posteriors).max())
            posteriors = updated
            if shift <= tol:
                break
        else:
            log_not_converged("MACE", iteration, shift, tol)
        classes = pd.Index(data.classes, name="label")
        self.competence_: pd.Series = pd.Series(competence, index=data.workers, name="competence")
        self.spam_: pd.DataFrame = pd.DataFrame(spam, index=data.workers, columns=classes)
        self.priors_: pd.Series = pd.Series(priors, index=classes, name="prior")
        self.n_iter_: int = iteration
        logger.debug("MACE: %d iterations", iteration)
        return posteriors
