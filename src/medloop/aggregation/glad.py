"""GLAD: worker ability and task difficulty (Whitehill et al., NeurIPS 2009).

A worker with ability ``alpha`` answers a task with inverse difficulty ``beta > 0``
correctly with probability ``sigmoid(alpha * beta)``; wrong answers are uniform over
the other classes. EM alternates task posteriors and a MAP M-step for ``alpha`` and
``log beta`` (Gaussian priors, as in the paper) solved by L-BFGS with analytic,
fully vectorised gradients.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Sequence

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import optimize
from scipy.special import expit, log_expit

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


class GLAD(Aggregator):
    """GLAD aggregation (ability x difficulty) with Gaussian priors.

    Parameters
    ----------
    n_iter: maximum number of EM iterations (reaching it is logged as a warning: on
        the real datasets it is, 50 iterations leave posteriors up to 0.1 from settled).
    tol: stop when no posterior moves by more than ``tol``.
    alpha_prior, beta_prior: prior means of worker ability and of log task easiness.
    prior_weight: precision of both Gaussian priors (0 = maximum likelihood).
    m_steps: L-BFGS iterations per M-step.
    classes: labels to include even when nobody chose them.

    Learned attributes: ``labels_``, ``probas_``, ``classes_``, ``alphas_`` (Series
    worker -> ability), ``betas_`` (Series task -> easiness), ``priors_``, ``n_iter_``.

    >>> import pandas as pd
    >>> answers = pd.DataFrame(
    ...     {"task": [1, 1, 1, 2, 2, 2], "worker": list("abcabc"), "label": [0, 0, 1, 1, 1, 1]}
    ... )
    >>> GLAD().fit_predict(answers).tolist()
    [0, 1]
    """

    def __init__(
        self,
        n_iter: int = 50,
        tol: float = 1e-5,
        *,
        alpha_prior: float = 1.0,
        beta_prior: float = 1.0,
        prior_weight: float = 1.0,
        m_steps: int = 10,
        classes: Sequence[Hashable] | None = None,
    ) -> None:
        super().__init__(classes=classes)
        self.n_iter = n_iter
        self.tol = tol
        self.alpha_prior = alpha_prior
        self.beta_prior = beta_prior
        self.prior_weight = prior_weight
        self.m_steps = m_steps

    def _fit_proba(self, data: EncodedAnswers) -> npt.NDArray[np.float64]:
        n_iter = check_positive_int("n_iter", self.n_iter)
        m_steps = check_positive_int("m_steps", self.m_steps)
        tol = check_non_negative("tol", self.tol)
        precision = check_non_negative("prior_weight", self.prior_weight)
        mu_a, mu_b = float(self.alpha_prior), float(self.beta_prior)
        n_tasks, n_workers, k = data.n_tasks, data.n_workers, data.n_classes
        log_others = np.log(max(k - 1, 1))
        task, worker, label, weight = data.task, data.worker, data.label, data.weight

        posteriors = start_posteriors(data)
        params = np.concatenate([np.full(n_workers, mu_a), np.full(n_tasks, mu_b)])
        priors = np.full(k, 1.0 / k)

        def negative_q(
            theta: npt.NDArray[np.float64], hit: npt.NDArray[np.float64]
        ) -> tuple[float, npt.NDArray[np.float64]]:
            alpha, log_beta = theta[:n_workers], theta[n_workers:]
            beta = np.exp(log_beta)
            x = alpha[worker] * beta[task]
            value = weight * (hit * log_expit(x) + (1.0 - hit) * (log_expit(-x) - log_others))
            resid = weight * (hit - expit(x))
            grad_a: npt.NDArray[np.float64] = np.bincount(
                worker, weights=resid * beta[task], minlength=n_workers
            ) - precision * (alpha - mu_a)
            grad_b: npt.NDArray[np.float64] = np.bincount(
                task, weights=resid * x, minlength=n_tasks
            ) - precision * (log_beta - mu_b)
            total = value.sum() - 0.5 * precision * (
                ((alpha - mu_a) ** 2).sum() + ((log_beta - mu_b) ** 2).sum()
            )
            return -float(total), -np.concatenate([grad_a, grad_b])

        iteration = 0
        while iteration < n_iter:
            iteration += 1
            hit = posteriors[task, label]
            result = optimize.minimize(
                negative_q,
                params,
                args=(hit,),
                jac=True,
                method="L-BFGS-B",
                bounds=[(None, None)] * n_workers + [(-8.0, 8.0)] * n_tasks,
                options={"maxiter": m_steps},
            )
            params = np.asarray(result.x, dtype=float)
            priors = posteriors.sum(axis=0) + 1.0
            priors /= priors.sum()
            alpha, beta = params[:n_workers], np.exp(params[n_workers:])
            x = alpha[worker] * beta[task]
            log_right, log_wrong = log_expit(x), log_expit(-x) - log_others
            base = np.bincount(task, weights=weight * log_wrong, minlength=n_tasks)
            bonus = np.bincount(
                task * k + label, weights=weight * (log_right - log_wrong), minlength=n_tasks * k
            ).reshape(n_tasks, k)
            updated = normalize_log(bonus + base[:, None] + safe_log(priors))
            clamp_known(data, updated)
            shift = float(np.abs(updated - posteriors).max())
            posteriors = updated
            if shift <= tol:
                break
        else:
            log_not_converged("GLAD", iteration, shift, tol)
        self.alphas_: pd.Series = pd.Series(params[:n_workers], index=data.workers, name="alpha")
        self.betas_: pd.Series = pd.Series(
            np.exp(params[n_workers:]), index=data.tasks, name="beta"
        )
        self.priors_: pd.Series = pd.Series(priors, index=pd.Index(data.classes, name="label"))
        self.n_iter_: int = iteration
        logger.debug("GLAD: %d iterations", iteration)
        return posteriors
