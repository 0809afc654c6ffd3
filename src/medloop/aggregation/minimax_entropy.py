"""Regularised minimax conditional entropy (Zhou, Basu, Mao & Platt, NIPS 2012; Zhou,
Liu, Platt & Meek, ICML 2014): worker confusion plus item confusion.

Worker ``w`` answers label ``l`` on task ``t`` whose true class is ``k`` with
probability ``softmax_l(worker_logits_[w, k] + task_logits_[t, k])``: the worker term
is a Dawid-Skene confusion matrix in logit form, the task term says how this task
misleads everybody (a hard or ambiguous item). Both are K x K logit matrices under L2
penalties, ``worker_penalty`` (default K^2 / 4) and ``task_penalty`` (default the
worker penalty times mean answers per worker over mean answers per task, so both
terms are shrunk alike per answer), the settings of the authors' reference code.
The worker penalty pulls towards ``diagonal_prior`` on the diagonal rather than zero: a
weak belief that workers beat chance. Without it, all-zero logits and uniform
posteriors are a fixed point that tiny data (a few tasks) never leaves; on the real
datasets it changes no accuracy by more than 0.002 (benchmarks/README.md). The class
prior is uniform, as in the paper.

EM alternates (M-step) a few L-BFGS iterations over all logits at once, weighted by
the current posteriors, and (E-step) the task posteriors given the logits. Written
here because no maintained Python package ships it; the per-answer arithmetic is
vectorised, with two sparse products for the gradients.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Sequence

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import optimize, sparse

from medloop.aggregation.base import (
    Aggregator,
    EncodedAnswers,
    check_non_negative,
    check_positive_int,
    clamp_known,
    log_not_converged,
    normalize_log,
    start_posteriors,
)

logger = logging.getLogger(__name__)


class _Logits:
    """The penalised expected log-likelihood of the answers and its gradient."""

    def __init__(
        self,
        data: EncodedAnswers,
        *,
        worker_penalty: float,
        task_penalty: float,
        diagonal_prior: float,
    ) -> None:
        n_answers = len(data.task)
        rows = np.arange(n_answers)
        self.data = data
        self.rows = rows
        self.worker_penalty = worker_penalty
        self.task_penalty = task_penalty
        self.by_worker = sparse.csr_matrix(
            (data.weight, (data.worker, rows)), shape=(data.n_workers, n_answers)
        )
        self.by_task = sparse.csr_matrix(
            (data.weight, (data.task, rows)), shape=(data.n_tasks, n_answers)
        )
        self.n_worker_params = data.n_workers * data.n_classes**2
        self.centre = diagonal_prior * np.eye(data.n_classes)

    def split(self, x: npt.NDArray[np.float64]) -> tuple[npt.NDArray[np.float64], ...]:
        k = self.data.n_classes
        worker = x[: self.n_worker_params].reshape(self.data.n_workers, k, k)
        task = x[self.n_worker_params :].reshape(self.data.n_tasks, k, k)
        return worker, task

    def answer_log_probs(
        self, x: npt.NDArray[np.float64]
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """log P(answer | true class) per answer (answers x K) and the softmax."""
        worker, task = self.split(x)
        logits = worker[self.data.worker] + task[self.data.task]
        logits -= logits.max(axis=2, keepdims=True)
        exp = np.exp(logits)
        norm = exp.sum(axis=2, keepdims=True)
        log_probs = logits[self.rows, :, self.data.label] - np.log(norm[:, :, 0])
        return log_probs, exp / norm

    def objective(
        self, x: npt.NDArray[np.float64], posteriors: npt.NDArray[np.float64]
    ) -> tuple[float, npt.NDArray[np.float64]]:
        data, k = self.data, self.data.n_classes
        worker, task = self.split(x)
        log_probs, softmax = self.answer_log_probs(x)
        weights = posteriors[data.task] * data.weight[:, None]
        value = -float((weights * log_probs).sum())
        offset = worker - self.centre
        value += 0.5 * self.worker_penalty * float((offset**2).sum())
        value += 0.5 * self.task_penalty * float((task**2).sum())
        # d(-log p)/d logits = softmax - one-hot(label), per true class
        grad = posteriors[data.task][:, :, None] * softmax
        grad[self.rows, :, data.label] -= posteriors[data.task]
        flat = grad.reshape(len(data.task), k * k)
        grad_worker = np.asarray(self.by_worker @ flat).reshape(worker.shape)
        grad_task = np.asarray(self.by_task @ flat).reshape(task.shape)
        grad_worker += self.worker_penalty * offset
        grad_task += self.task_penalty * task
        return value, np.concatenate([grad_worker.ravel(), grad_task.ravel()])


class MinimaxEntropy(Aggregator):
    """Minimax conditional entropy: per-worker and per-task confusion logits.

    Parameters
    ----------
    n_iter: maximum number of EM iterations (reaching it is logged as a warning).
    tol: stop when no posterior moves by more than ``tol``.
    m_step_iter: L-BFGS iterations per M-step.
    worker_penalty: L2 penalty on worker logits (None: K^2 / 4).
    task_penalty: L2 penalty on task logits (None: worker penalty x mean answers per
        worker / mean answers per task).
    diagonal_prior: where the worker penalty centres each diagonal logit (> 0: a weak
        belief that workers beat chance).
    classes: labels to include even when nobody chose them.

    Known labels clamp their tasks' posteriors in every iteration, so they anchor the
    workers' logits.

    Learned attributes: ``labels_``, ``probas_``, ``classes_``, ``worker_logits_``
    (workers x K x K), ``task_logits_`` (tasks x K x K), ``errors_`` (each worker's
    confusion matrix on a task with no item effect: softmax of its logits, rows = true
    class), ``worker_accuracy_`` (Series, mean diagonal of ``errors_``), ``n_iter_``,
    ``converged_``.

    >>> import pandas as pd
    >>> answers = pd.DataFrame(
    ...     {"task": [1, 1, 1, 2, 2, 2], "worker": list("abcabc"), "label": [0, 0, 1, 1, 1, 1]}
    ... )
    >>> MinimaxEntropy().fit_predict(answers).tolist()
    [0, 1]
    """

    def __init__(
        self,
        n_iter: int = 1000,
        tol: float = 1e-6,
        *,
        m_step_iter: int = 25,
        worker_penalty: float | None = None,
        task_penalty: float | None = None,
        diagonal_prior: float = 0.1,
        classes: Sequence[Hashable] | None = None,
    ) -> None:
        super().__init__(classes=classes)
        self.diagonal_prior = diagonal_prior
        self.n_iter = n_iter
        self.tol = tol
        self.m_step_iter = m_step_iter
        self.worker_penalty = worker_penalty
        self.task_penalty = task_penalty

    def _penalties(self, data: EncodedAnswers) -> tuple[float, float]:
        k = data.n_classes
        worker_penalty = (
            0.25 * k * k
            if self.worker_penalty is None
            else check_non_negative("worker_penalty", self.worker_penalty)
        )
        if self.task_penalty is not None:
            return worker_penalty, check_non_negative("task_penalty", self.task_penalty)
        per_worker = len(data.task) / max(data.n_workers, 1)
        per_task = len(data.task) / max(len(np.unique(data.task)), 1)
        return worker_penalty, worker_penalty * per_worker / per_task

    def _fit_proba(self, data: EncodedAnswers) -> npt.NDArray[np.float64]:
        n_iter = check_positive_int("n_iter", self.n_iter)
        m_step_iter = check_positive_int("m_step_iter", self.m_step_iter)
        tol = check_non_negative("tol", self.tol)
        worker_penalty, task_penalty = self._penalties(data)
        k = data.n_classes
        logits = _Logits(
            data,
            worker_penalty=worker_penalty,
            task_penalty=task_penalty,
            diagonal_prior=check_non_negative("diagonal_prior", self.diagonal_prior),
        )
        posteriors = start_posteriors(data)
        start_worker = np.broadcast_to(logits.centre, (data.n_workers, k, k))
        x = np.concatenate([start_worker.ravel(), np.zeros(data.n_tasks * k * k)])
        converged, shift = False, np.inf
        iteration = 0
        while iteration < n_iter:
            iteration += 1
            result = optimize.minimize(
                logits.objective,
                x,
                args=(posteriors,),
                jac=True,
                method="L-BFGS-B",
                options={"maxiter": m_step_iter},
            )
            x = result.x
            log_probs, _ = logits.answer_log_probs(x)
            joint = np.asarray(logits.by_task @ log_probs, dtype=float)
            updated = normalize_log(joint)
            clamp_known(data, updated)
            shift = float(np.abs(updated - posteriors).max())
            posteriors = updated
            if shift <= tol:
                converged = True
                break
        if not converged:
            log_not_converged("MinimaxEntropy", iteration, shift, tol)
        worker, task = logits.split(x)
        self._store_model(data, worker, task, iteration, converged)
        return posteriors

    def _store_model(
        self,
        data: EncodedAnswers,
        worker: npt.NDArray[np.float64],
        task: npt.NDArray[np.float64],
        iteration: int,
        converged: bool,
    ) -> None:
        self.worker_logits_: npt.NDArray[np.float64] = worker
        self.task_logits_: npt.NDArray[np.float64] = task
        shifted = np.exp(worker - worker.max(axis=2, keepdims=True))
        self.errors_: npt.NDArray[np.float64] = shifted / shifted.sum(axis=2, keepdims=True)
        accuracy = np.einsum("wkk->w", self.errors_) / data.n_classes
        self.worker_accuracy_: pd.Series = pd.Series(accuracy, index=data.workers, name="accuracy")
        self.n_iter_: int = iteration
        self.converged_: bool = converged
        logger.debug("MinimaxEntropy: %d iterations (converged=%s)", iteration, converged)
