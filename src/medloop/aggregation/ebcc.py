"""EBCC: enhanced Bayesian classifier combination (Li, Rubinstein & Cohn, ICML 2019).

Workers' errors are often correlated: items of one true class come in subtypes (easy,
ambiguous, misleading ...) that many workers get wrong together. EBCC splits each true
class ``k`` into ``n_subtypes`` latent subtypes with weights ``pi[k] ~ Dir(a/M)`` (a
sparse prior, so unneeded subtypes empty out) and gives every worker one confusion
matrix row per (class, subtype): ``v[w, k, m] ~ Dir(beta[k])`` with ``beta`` =
``diagonal_prior`` on the diagonal and ``off_diagonal_prior`` elsewhere. Class
priors ``tau ~ Dir(alpha)``; with ``empirical_class_prior`` ``alpha`` is the
majority-vote class counts, as in the paper's experiments.

Defaults follow the paper's code (``a = 0.1``, ``a_v = 4``, ``b_v = 1``, empirical
class prior) except ``n_subtypes = 2`` instead of 10: with a sparse subtype prior every
extra subtype taxes a rare class (a class with less than one task's worth of mass
spread over ten subtypes gets E[log pi] near -10 per task and empties out), and two
subtypes were also the most accurate on the real crowd data (benchmarks/README.md).

Mean-field variational Bayes over the joint posterior of (class, subtype) per task.
Subtype responsibilities start from a seeded random split, so the fit is run from
``n_restarts`` seeds (``seed``, ``seed + 1`` ...) and the one with the highest evidence
lower bound (ELBO) is kept: deterministic for fixed parameters. Each iteration is two
sparse matrix products over the answers.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import sparse
from scipy.special import digamma, gammaln

from medloop.aggregation.base import (
    Aggregator,
    EncodedAnswers,
    check_non_negative,
    check_positive_int,
    initial_shares,
    start_posteriors,
)
from medloop.exceptions import InvalidInputError

logger = logging.getLogger(__name__)

_TINY = np.finfo(float).tiny


def _log_beta(a: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Log multivariate Beta function over the last axis."""
    return np.asarray(gammaln(a).sum(axis=-1) - gammaln(a.sum(axis=-1)), dtype=float)


def _expected_log(a: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """E[log p] under Dirichlet(a), over the last axis."""
    return np.asarray(digamma(a) - digamma(a.sum(axis=-1, keepdims=True)), dtype=float)


@dataclass(frozen=True)
class _Fit:
    """One variational fit: task x class x subtype posterior and its Dirichlet parameters."""

    joint: npt.NDArray[np.float64]
    class_post: npt.NDArray[np.float64]
    subtype_post: npt.NDArray[np.float64]
    confusion_post: npt.NDArray[np.float64]
    elbo: float
    n_iter: int
    converged: bool


class EBCC(Aggregator):
    """EBCC aggregation: confusion matrices per worker and per latent class subtype.

    Parameters
    ----------
    n_subtypes: number of latent subtypes per class (``M``; 1 gives Bayesian
        Dawid-Skene, i.e. independent BCC).
    n_iter: maximum number of variational iterations per restart.
    tol: stop when no class posterior moves by more than ``tol`` (the paper's code
        uses 1e-3).
    n_restarts: random subtype initialisations tried; the highest ELBO wins.
    seed: seed of the first restart (restart ``r`` uses ``seed + r``).
    subtype_prior: total Dirichlet concentration ``a`` of the subtype weights.
    diagonal_prior, off_diagonal_prior: Dirichlet parameters of each confusion row
        (paper: ``a_v = 4``, ``b_v = 1``).
    class_prior: Dirichlet parameter of the class priors when
        ``empirical_class_prior`` is False.
    empirical_class_prior: use the majority-vote class counts as the Dirichlet
        parameter of the class priors (the paper's experimental setting).
    classes: labels to include even when nobody chose them.

    Known labels passed to `fit` restrict those tasks to their class in every
    iteration; ``init`` replaces the majority-vote shares as the starting class
    posteriors (subtypes still start from the seeded split).

    Learned attributes: ``labels_``, ``probas_``, ``classes_``, ``priors_`` (Series,
    posterior mean class priors), ``subtype_weights_`` (DataFrame classes x subtypes),
    ``errors_`` (workers x K x K, posterior mean confusion matrices with subtypes
    averaged out), ``workers_``, ``elbo_`` (of the kept fit), ``elbos_`` (one per
    restart), ``n_iter_`` and ``converged_`` (of the kept fit).

    >>> import pandas as pd
    >>> answers = pd.DataFrame(
    ...     {"task": [1, 1, 1, 2, 2, 2], "worker": list("abcabc"), "label": [0, 0, 1, 1, 1, 1]}
    ... )
    >>> EBCC().fit_predict(answers).tolist()
    [0, 1]
    """

    def __init__(
        self,
        n_subtypes: int = 2,
        n_iter: int = 500,
        tol: float = 1e-3,
        *,
        n_restarts: int = 5,
        seed: int = 0,
        subtype_prior: float = 0.1,
        diagonal_prior: float = 4.0,
        off_diagonal_prior: float = 1.0,
        class_prior: float = 1.0,
        empirical_class_prior: bool = True,
        classes: Sequence[Hashable] | None = None,
    ) -> None:
        super().__init__(classes=classes)
        self.n_subtypes = n_subtypes
        self.n_iter = n_iter
        self.tol = tol
        self.n_restarts = n_restarts
        self.seed = seed
        self.subtype_prior = subtype_prior
        self.diagonal_prior = diagonal_prior
        self.off_diagonal_prior = off_diagonal_prior
        self.class_prior = class_prior
        self.empirical_class_prior = empirical_class_prior

    def _check_params(self) -> None:
        check_positive_int("n_subtypes", self.n_subtypes)
        check_positive_int("n_iter", self.n_iter)
        check_positive_int("n_restarts", self.n_restarts)
        check_positive_int("seed", self.seed, minimum=0)
        check_non_negative("tol", self.tol)
        for name in ("subtype_prior", "diagonal_prior", "off_diagonal_prior", "class_prior"):
            if check_non_negative(name, getattr(self, name)) <= 0:
                raise InvalidInputError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if not isinstance(self.empirical_class_prior, bool | np.bool_):
            raise InvalidInputError(
                f"empirical_class_prior must be True or False, got {self.empirical_class_prior!r}"
            )

    def _fit_proba(self, data: EncodedAnswers) -> npt.NDArray[np.float64]:
        self._check_params()
        k = data.n_classes
        # design[t, w*K + l] = total weight of worker w answering l on task t
        design = sparse.csr_matrix(
            (data.weight, (data.task, data.worker * k + data.label)),
            shape=(data.n_tasks, data.n_workers * k),
        )
        design.sum_duplicates()
        design_t = design.T.tocsr()
        start = start_posteriors(data)
        if self.empirical_class_prior:
            alpha = np.maximum(initial_shares(data).sum(axis=0), _TINY)
        else:
            alpha = np.full(k, float(self.class_prior))
        beta = np.full((k, k), float(self.off_diagonal_prior))
        beta[np.diag_indices(k)] = float(self.diagonal_prior)

        fits = [
            self._fit_once(data, design, design_t, start, alpha, beta, int(self.seed) + r)
            for r in range(int(self.n_restarts))
        ]
        elbos = [f.elbo for f in fits]
        best = fits[int(np.argmax(elbos))]
        self._store_model(data, best, elbos)
        return best.joint

    def _fit_once(
        self,
        data: EncodedAnswers,
        design: sparse.csr_matrix,
        design_t: sparse.csr_matrix,
        start: npt.NDArray[np.float64],
        alpha: npt.NDArray[np.float64],
        beta: npt.NDArray[np.float64],
        seed: int,
    ) -> _Fit:
        n_tasks, n_workers, k = data.n_tasks, data.n_workers, data.n_classes
        m = int(self.n_subtypes)
        eta0 = float(self.subtype_prior) / m
        known_codes, known_labels = data.known_codes, data.known_labels
        allowed = np.ones((n_tasks, k, 1))
        if len(known_codes):
            allowed[known_codes] = 0.0
            allowed[known_codes, known_labels] = 1.0

        rng = np.random.default_rng(seed)
        split = rng.dirichlet(np.ones(m), size=(n_tasks, k)) if m > 1 else np.ones((n_tasks, k, 1))
        resp = split * start[:, :, None]  # q(class, subtype) per task

        def posterior_params(
            resp: npt.NDArray[np.float64],
        ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
            subtype_post = eta0 + resp.sum(axis=0)  # K x M
            class_post = alpha + resp.sum(axis=(0, 2))  # K
            counts = np.asarray(design_t @ resp.reshape(n_tasks, k * m))
            # counts[w*K + l, k*M + m] -> confusion[w, k, m, l]
            confusion_post = counts.reshape(n_workers, k, k, m).transpose(0, 2, 3, 1)
            confusion_post = confusion_post + beta[None, :, None, :]
            return subtype_post, class_post, confusion_post

        converged = False
        classes_now = resp.sum(axis=2)
        iteration = 0
        while iteration < self.n_iter:
            iteration += 1
            subtype_post, class_post, confusion_post = posterior_params(resp)
            log_v = _expected_log(confusion_post)  # W x K x M x L
            flat = log_v.transpose(0, 3, 1, 2).reshape(n_workers * k, k * m)
            scores = np.asarray(design @ flat).reshape(n_tasks, k, m)
            scores += _expected_log(subtype_post)[None] + _expected_log(class_post)[None, :, None]
            scores -= scores.reshape(n_tasks, -1).max(axis=1)[:, None, None]
            resp = np.exp(scores) * allowed
            resp /= resp.reshape(n_tasks, -1).sum(axis=1)[:, None, None]
            previous, classes_now = classes_now, resp.sum(axis=2)
            if np.abs(classes_now - previous).max() <= self.tol:
                converged = True
                break

        subtype_post, class_post, confusion_post = posterior_params(resp)
        flat_resp = resp.reshape(n_tasks, -1)
        entropy = -float((flat_resp * np.log(np.maximum(flat_resp, _TINY))).sum())
        # With q(parameters) updated from q(class, subtype), each Dirichlet block
        # contributes log B(posterior) - log B(prior) to the ELBO.
        elbo = (
            float(_log_beta(class_post) - _log_beta(alpha))
            + float((_log_beta(subtype_post) - _log_beta(np.full((k, m), eta0))).sum())
            + float((_log_beta(confusion_post) - _log_beta(beta)[None, :, None]).sum())
            + entropy
        )
        return _Fit(
            joint=classes_now,
            class_post=class_post,
            subtype_post=subtype_post,
            confusion_post=confusion_post,
            elbo=elbo,
            n_iter=iteration,
            converged=converged,
        )

    def _store_model(self, data: EncodedAnswers, fit: _Fit, elbos: list[float]) -> None:
        classes = pd.Index(data.classes, name="label")
        weights = fit.subtype_post / fit.subtype_post.sum(axis=1, keepdims=True)  # K x M
        confusion = fit.confusion_post / fit.confusion_post.sum(axis=-1, keepdims=True)
        self.workers_: pd.Index = data.workers
        self.errors_: npt.NDArray[np.float64] = np.einsum("km,wkml->wkl", weights, confusion)
        self.priors_: pd.Series = pd.Series(
            fit.class_post / fit.class_post.sum(), index=classes, name="prior"
        )
        self.subtype_weights_: pd.DataFrame = pd.DataFrame(
            weights, index=classes, columns=pd.RangeIndex(weights.shape[1], name="subtype")
        )
        self.elbo_: float = fit.elbo
        self.elbos_: list[float] = elbos
        self.n_iter_: int = fit.n_iter
        self.converged_: bool = fit.converged
        logger.info(
            "EBCC: best of %d restarts, ELBO %.6g, %d iterations (converged=%s)",
            len(elbos),
            fit.elbo,
            fit.n_iter,
            fit.converged,
        )
