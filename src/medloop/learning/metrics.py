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
    {'auc': 1.0, 'acc': 1.0, 'n': 2}
    """
    proba = check_probabilities(probabilities)
    y = check_labels(labels, n_classes=proba.shape[1], n=proba.shape[0])
    n = int(y.shape[0])
    if n == 0:
        return {"auc": math.nan, "acc": math.nan, "n": 0}
    acc = float(np.mean(proba.argmax(axis=1) == y))
    if np.unique(y).size < 2:
        logger.debug("only one class present in labels; auc is undefined")
        return {"auc": math.nan, "acc": acc, "n": n}
    if proba.shape[1] == 2:
        auc = float(roc_auc_score(y, proba[:, 1]))
    else:  # one-vs-rest: each class's column as one label (classes never or always seen: NaN)
        one_vs_rest = per_label_auc(proba, np.eye(proba.shape[1], dtype=np.int64)[y])
        auc = float(np.nanmean(one_vs_rest))
    return {"auc": auc, "acc": acc, "n": n}


def check_multilabels(labels: np.ndarray, *, n_labels: int, n: int | None = None) -> np.ndarray:
    """Return multi-label indicators as int64 (N, L) of 0/1 (L = `n_labels`), or raise."""
    arr = np.asarray(labels)
    if arr.ndim != 2 or arr.shape[1] != n_labels:
        raise InvalidInputError(
            f"multi-label labels must be a 2-D array (N, {n_labels}); got shape {arr.shape}"
        )
    if n is not None and arr.shape[0] != n:
        raise InvalidInputError(f"expected {n} label rows, got {arr.shape[0]}")
    if arr.size and not np.all((arr == 0) | (arr == 1)):
        raise InvalidInputError("multi-label labels must be 0 or 1")
    return arr.astype(np.int64)


def check_label_probabilities(
    probabilities: np.ndarray, *, name: str = "probabilities"
) -> np.ndarray:
    """Return independent per-label probabilities as float (N, L) in [0, 1], or raise."""
    proba = np.asarray(probabilities, dtype=np.float64)
    if proba.ndim != 2 or proba.shape[1] < 1:
        raise InvalidInputError(f"{name} must be a 2-D array (N, L); got {proba.shape}")
    if not np.all(np.isfinite(proba)):
        raise InvalidInputError(f"{name} contains NaN or infinite values")
    if np.any(proba < 0.0) or np.any(proba > 1.0):
        raise InvalidInputError(f"{name} must lie in [0, 1]")
    return proba


def per_label_auc(probabilities: np.ndarray, labels: np.ndarray) -> list[float]:
    """ROC AUC of each label column (NaN where the label is all 0 or all 1)."""
    proba = check_label_probabilities(probabilities)
    y = check_multilabels(labels, n_labels=proba.shape[1], n=proba.shape[0])
    return [
        float(roc_auc_score(y[:, k], proba[:, k])) if 0 < y[:, k].sum() < y.shape[0] else math.nan
        for k in range(y.shape[1])
    ]


def multilabel_metrics(
    probabilities: np.ndarray, labels: np.ndarray, *, thresholds: np.ndarray | float = 0.5
) -> dict[str, float]:
    """AUC, accuracy and count for multi-label `probabilities` (N, L) against 0/1 `labels`.

    As MedMNIST's evaluator reports them: `auc` is the mean over labels of each label's
    ROC AUC (labels all 0 or all 1 left out; NaN if none is left); `acc` is the mean over
    labels of each label's accuracy at `thresholds` (one cut, or one per label; 0.5 in
    MedMNIST).

    >>> multilabel_metrics(np.array([[0.9, 0.2], [0.1, 0.7]]), np.array([[1, 0], [0, 0]]))
    {'auc': 1.0, 'acc': 0.75, 'n': 2}
    """
    proba = check_label_probabilities(probabilities)
    y = check_multilabels(labels, n_labels=proba.shape[1], n=proba.shape[0])
    n = int(y.shape[0])
    if n == 0:
        return {"auc": math.nan, "acc": math.nan, "n": 0}
    cuts = np.broadcast_to(np.asarray(thresholds, dtype=np.float64), (proba.shape[1],))
    acc = float(np.mean((proba >= cuts).astype(np.int64) == y))
    aucs = [a for a in per_label_auc(proba, y) if not math.isnan(a)]
    auc = float(np.mean(aucs)) if aucs else math.nan
    return {"auc": auc, "acc": acc, "n": n}
