"""Post-hoc calibration chosen on validation data: temperature scaling and a decision threshold.

Temperature scaling (Guo et al., 2017) divides the logits by one scalar T > 0 fitted
by minimising the validation negative log-likelihood; it changes neither the ranking
(AUC) nor the argmax. The binary decision threshold is the cut on p(class 1) that
maximises validation accuracy (ties go to the cut nearest 0.5) or balanced accuracy
(ties go to the cut nearest the prevalence, `choose_threshold`). Multi-label models
(independent sigmoids) get one temperature fitted on the binary cross-entropy of all
labels (`fit_label_temperature`) and one cut per label (`choose_label_thresholds`).

>>> logits = np.array([[0.0, 4.0], [4.0, 0.0], [0.0, 4.0], [0.0, 4.0]])
>>> fit_temperature(logits, np.array([1, 0, 0, 1])) > 1.0
True
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from medloop.exceptions import InvalidInputError, UnknownOptionError
from medloop.learning.metrics import (
    check_label_probabilities,
    check_labels,
    check_multilabels,
    check_probabilities,
)

logger = logging.getLogger(__name__)

_MIN_T, _MAX_T = 0.05, 20.0


def _check_logits(logits: np.ndarray, *, min_columns: int) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim != 2 or z.shape[1] < min_columns or z.shape[0] == 0:
        raise InvalidInputError(f"logits must be a non-empty (N, K) array; got {z.shape}")
    if not np.all(np.isfinite(z)):
        raise InvalidInputError("logits contain NaN or infinite values")
    return z


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature T in [0.05, 20] minimising the NLL of softmax(logits / T) on `labels`."""
    z = _check_logits(logits, min_columns=2)
    y = torch.from_numpy(check_labels(labels, n_classes=z.shape[1], n=z.shape[0]))
    zt = torch.from_numpy(z)

    def nll(log_t: float) -> float:
        return float(F.cross_entropy(zt / float(np.exp(log_t)), y))

    return _minimise_log_t(nll)


def fit_label_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature T in [0.05, 20] minimising the mean binary cross-entropy of
    sigmoid(logits / T) (N, L) on multi-label 0/1 `labels` (N, L): one T for all labels."""
    z = _check_logits(logits, min_columns=1)
    y = torch.from_numpy(check_multilabels(labels, n_labels=z.shape[1], n=z.shape[0]))
    zt, yt = torch.from_numpy(z), y.double()

    def nll(log_t: float) -> float:
        return float(F.binary_cross_entropy_with_logits(zt / float(np.exp(log_t)), yt))

    return _minimise_log_t(nll)


def _minimise_log_t(nll: Callable[[float], float]) -> float:
    """The T in [0.05, 20] minimising `nll(log T)`."""
    # Golden-section search on log T: the NLL is unimodal in T for fixed logits.
    lo, hi = np.log(_MIN_T), np.log(_MAX_T)
    ratio = (np.sqrt(5.0) - 1.0) / 2.0
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = nll(a), nll(b)
    for _ in range(60):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = nll(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = nll(b)
    best = float(np.exp((lo + hi) / 2.0))
    logger.debug("temperature %.3f (nll %.4f -> %.4f)", best, nll(0.0), nll(np.log(best)))
    return best


def apply_temperature(logits: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(logits / temperature) as float64 (N, K) rows summing to 1."""
    if not temperature > 0:
        raise InvalidInputError(f"temperature must be positive; got {temperature}")
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return np.asarray(e / e.sum(axis=1, keepdims=True), dtype=np.float64)


def apply_label_temperature(logits: np.ndarray, temperature: float) -> np.ndarray:
    """sigmoid(logits / temperature) as float64 (N, L): independent per-label probabilities."""
    if not temperature > 0:
        raise InvalidInputError(f"temperature must be positive; got {temperature}")
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    return np.asarray(torch.sigmoid(torch.from_numpy(z)).numpy(), dtype=np.float64)


def calibrated_probabilities(
    logits: np.ndarray, temperature: float, *, multi_label: bool = False
) -> np.ndarray:
    """softmax(logits / T) (N, K), or for a multi-label model the per-label sigmoids (N, L)."""
    if multi_label:
        return apply_label_temperature(logits, temperature)
    return apply_temperature(logits, temperature)


def decide_classes(
    probabilities: np.ndarray,
    *,
    threshold: float = 0.5,
    label_thresholds: np.ndarray | None = None,
    multi_label: bool = False,
) -> np.ndarray:
    """Decisions from calibrated probabilities: classes (N,), p(class 1) >= `threshold`
    when binary, else the argmax; multi-label: 0/1 (N, L) from `label_thresholds`."""
    if multi_label:
        return decide_labels(probabilities, label_thresholds)
    proba = np.asarray(probabilities, dtype=np.float64)
    if proba.shape[1] == 2:
        return (proba[:, 1] >= threshold).astype(np.int64)
    return proba.argmax(axis=1).astype(np.int64)


THRESHOLD_CRITERIA = ("accuracy", "balanced")
#: A `tolerance` of one standard error of the criterion at the best cut (the one-SE
#: rule): on a small validation split many cuts are indistinguishable from the best.
ONE_SE = "one_se"


def choose_threshold(
    probabilities: np.ndarray,
    labels: np.ndarray,
    *,
    criterion: str = "accuracy",
    tolerance: float | str = 0.0,
    anchor: float | None = None,
) -> float:
    """The cut t on p(class 1) maximising `criterion` of `p1 >= t` on binary `labels`.

    criterion "accuracy": plain accuracy (best when the validation prevalence is the
    deployment prevalence); "balanced": the mean of sensitivity and specificity
    (Youden's J, independent of prevalence). Candidates are midpoints between
    consecutive distinct scores (plus 0.5 and the anchor); among cuts scoring within
    `tolerance` of the best (a fraction, e.g. 0.005, or `ONE_SE`: one binomial standard
    error of the best cut's score) the one nearest the criterion's own best cut for
    calibrated probabilities wins, so a small validation set does not move the cut on a
    gain it cannot tell from noise. That anchor is 0.5 for accuracy, and for balanced
    accuracy the prevalence of class 1 in `labels`: where p(1 | x) equals the prior, the
    evidence favours neither class, which is where the mean of sensitivity and
    specificity is best (0.5 there would be the accuracy's cut). `anchor` sets another.

    >>> choose_threshold(np.array([[0.8, 0.2], [0.7, 0.3], [0.4, 0.6]]), np.array([0, 1, 1]))
    0.25
    """
    proba = check_probabilities(probabilities)
    if proba.shape[1] != 2:
        raise InvalidInputError("a decision threshold needs binary probabilities (N, 2)")
    y = check_labels(labels, n_classes=2, n=proba.shape[0])
    check_tolerance(tolerance)
    if y.size == 0:
        return 0.5
    if criterion not in THRESHOLD_CRITERIA:
        raise UnknownOptionError(
            f"criterion must be one of {list(THRESHOLD_CRITERIA)}; got {criterion!r}"
        )
    positive = y == 1
    if anchor is None:
        anchor = 0.5
        if criterion == "balanced" and 0 < positive.sum() < y.size:
            anchor = float(positive.mean())
    elif not 0.0 < anchor < 1.0:
        raise InvalidInputError(f"anchor must lie in (0, 1); got {anchor!r}")
    p1 = proba[:, 1]
    distinct = np.unique(p1)
    candidates = np.unique(np.concatenate([(distinct[:-1] + distinct[1:]) / 2.0, [0.5, anchor]]))
    n_pos, n_neg = max(int(positive.sum()), 1), max(int((~positive).sum()), 1)
    hits = (p1[None, :] >= candidates[:, None]) == positive[None, :]
    sensitivity = (hits & positive).sum(axis=1) / n_pos
    specificity = (hits & ~positive).sum(axis=1) / n_neg
    if criterion == "accuracy":
        score = hits.sum(axis=1) / y.size
    else:
        score = (sensitivity + specificity) / 2
    top = int(np.argmax(score))
    if tolerance == ONE_SE:
        if criterion == "accuracy":
            slack = float(np.sqrt(score[top] * (1 - score[top]) / y.size))
        else:
            se, sp = sensitivity[top], specificity[top]
            slack = 0.5 * float(np.sqrt(se * (1 - se) / n_pos + sp * (1 - sp) / n_neg))
    else:
        slack = float(tolerance)  # check_tolerance: >= 0
    best = np.flatnonzero(score >= score[top] - slack - 1e-12)
    chosen = candidates[best[np.argmin(np.abs(candidates[best] - anchor))]]
    return float(chosen)


def check_tolerance(tolerance: float | str) -> None:
    """A threshold tolerance is a number >= 0 or `ONE_SE`; anything else -> clear error."""
    if isinstance(tolerance, str):
        if tolerance != ONE_SE:
            raise UnknownOptionError(
                f"a threshold tolerance is a number >= 0 or {ONE_SE!r}; got {tolerance!r}"
            )
    elif isinstance(tolerance, bool) or not tolerance >= 0:
        raise InvalidInputError(f"a threshold tolerance must be >= 0; got {tolerance!r}")


def decide_labels(probabilities: np.ndarray, thresholds: np.ndarray | None) -> np.ndarray:
    """Multi-label decisions (N, L) of 0/1: each label's probability >= its cut (None: 0.5)."""
    proba = check_label_probabilities(probabilities)
    cuts = np.full(proba.shape[1], 0.5) if thresholds is None else np.asarray(thresholds)
    if cuts.shape != (proba.shape[1],):
        raise InvalidInputError(f"expected {proba.shape[1]} thresholds; got shape {cuts.shape}")
    return (proba >= cuts).astype(np.int64)


def choose_label_thresholds(
    probabilities: np.ndarray, labels: np.ndarray, *, tolerance: float | str = 0.0
) -> np.ndarray:
    """One cut per label (L,) on multi-label `probabilities` (N, L), each maximising that
    label's accuracy on 0/1 `labels` (N, L) as `choose_threshold` does for a binary task
    (the per-label accuracy MedMNIST averages)."""
    proba = check_label_probabilities(probabilities)
    y = check_multilabels(labels, n_labels=proba.shape[1], n=proba.shape[0])
    return np.array(
        [
            choose_threshold(
                np.stack([1.0 - proba[:, k], proba[:, k]], axis=1),
                y[:, k],
                criterion="accuracy",
                tolerance=tolerance,
            )
            for k in range(proba.shape[1])
        ],
        dtype=np.float64,
    )


def expected_calibration_error(
    probabilities: np.ndarray, labels: np.ndarray, *, bins: int = 10
) -> float:
    """ECE: the count-weighted mean |accuracy - confidence| over equal-width confidence bins."""
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
        raise InvalidInputError(f"bins must be a whole number >= 1, got {bins!r}")
    proba = check_probabilities(probabilities)
    y = check_labels(labels, n_classes=proba.shape[1], n=proba.shape[0])
    if y.size == 0:
        return float("nan")
    confidence = proba.max(axis=1)
    correct = proba.argmax(axis=1) == y
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            total += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    return float(total)
