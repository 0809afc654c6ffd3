"""Classification metrics the way MedMNIST reports them (AUC and accuracy)."""

from __future__ import annotations

import logging
import math

import numpy as np
from sklearn.metrics import roc_auc_score

from medloop.exceptions import InvalidInputError

logger = logging.getLogger(__name__)


def check_probabilities(probabilities: np.ndarray, *, name: str = "probabilities") -> np.ndarray:
    """Return `probabilities` as a float (N, K) array, or raise if rows are not distributions."""
    proba = np.asarray(probabilities, dtype=np.float64)
    if proba.ndim != 2 or proba.shape[1] < 2:
        raise InvalidInputError(f"{name} must be a 2-D array (N, K) with K >= 2; got {proba.shape}")
    if not np.all(np.isfinite(proba)):
        raise InvalidInputError(f"{name} contains NaN or infinite values")
    if np.any(proba < -1e-6):
        raise InvalidInputError(f"{name} contains negative values")
    sums = proba.sum(axis=1)
    bad = np.flatnonzero(np.abs(sums - 1.0) > 1e-4)
    if bad.size:
        raise InvalidInputError(
            f"{name} rows must sum to 1; row {int(bad[0])} sums to {sums[bad[0]]:.6f} "
            f"({bad.size} bad rows)"
        )
    return proba


def check_labels(labels: np.ndarray, *, n_classes: int, n: int | None = None) -> np.ndarray:
    """Return integer labels (N,) in [0, n_classes), accepting (N, 1) MedMNIST-style columns."""
    arr = np.asarray(labels)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise InvalidInputError(f"labels must be a 1-D array (N,); got shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise InvalidInputError(f"expected {n} labels, got {arr.shape[0]}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        as_float = arr.astype(np.float64)
        if not np.all(np.isfinite(as_float)) or np.any(as_float != np.round(as_float)):
            raise InvalidInputError("labels must be whole class indices")
    out = arr.astype(np.int64)
    if out.size and (out.min() < 0 or out.max() >= n_classes):
        raise InvalidInputError(
            f"labels must lie in [0, {n_classes}); got range [{out.min()}, {out.max()}]"
        )
    return out


def classification_metrics(probabilities: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """AUC, accuracy and count of predicted `probabilities` (N, K) against int `labels` (N,).

    Binary (K == 2): ROC AUC of class 1. Multi-class: the mean over classes of the
    one-vs-rest ROC AUC, as MedMNIST's evaluator reports it; classes absent from
    `labels` (or present for every item) are left out of the mean. `auc` is NaN when
    fewer than two classes occur in `labels`; `acc` is NaN for empty input.

    >>> classification_metrics(np.array([[0.9, 0.1], [0.2, 0.8]]), np.array([0, 1]))
    {'auc': 1.0, 'acc': 1.0, 'n': 2.0}
    """
    proba = check_probabilities(probabilities)
    y = check_labels(labels, n_classes=proba.shape[1], n=proba.shape[0])
    n = int(y.shape[0])
    if n == 0:
        return {"auc": math.nan, "acc": math.nan, "n": 0.0}
    acc = float(np.mean(proba.argmax(axis=1) == y))
    if np.unique(y).size < 2:
        logger.debug("only one class present in labels; auc is undefined")
        return {"auc": math.nan, "acc": acc, "n": float(n)}
    if proba.shape[1] == 2:
        auc = float(roc_auc_score(y, proba[:, 1]))
    else:
        per_class = [
            float(roc_auc_score(y == k, proba[:, k]))
            for k in range(proba.shape[1])
            if 0 < np.count_nonzero(y == k) < n
        ]
        auc = float(np.mean(per_class))
    return {"auc": auc, "acc": acc, "n": float(n)}
