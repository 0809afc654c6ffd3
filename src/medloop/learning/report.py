"""Training artefacts next to a checkpoint: a metrics JSON and PNG plots (matplotlib, Agg).

For a checkpoint `models/m.pt` it writes `models/m.metrics.json`, `m.learning_curve.png`,
`m.roc.png`, `m.calibration.png` and `m.confusion.png`. A multi-label model's report
has one ROC curve per label, the calibration of all label probabilities pooled, per-label
AUCs in the JSON, and no confusion matrix (it needs one class per item).
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib
import numpy as np
from sklearn.metrics import confusion_matrix, roc_curve

from medloop.learning.calibration import expected_calibration_error
from medloop.learning.metrics import (
    check_label_probabilities,
    check_labels,
    check_multilabels,
    check_probabilities,
    classification_metrics,
    multilabel_metrics,
    per_label_auc,
)

matplotlib.use("Agg")
import matplotlib.pyplot as plt

if TYPE_CHECKING:
    from medloop.learning.ensemble import EnsembleClassifier
    from medloop.learning.train import TrainedClassifier

logger = logging.getLogger(__name__)

PLOTS = ("learning_curve", "roc", "calibration", "confusion")


def _finite(value: float) -> float | None:
    return None if isinstance(value, float) and math.isnan(value) else value


def write_training_report(
    model: TrainedClassifier | EnsembleClassifier,
    checkpoint: Path,
    *,
    probabilities: np.ndarray,
    labels: np.ndarray,
    split: str = "test",
) -> list[Path]:
    """Write the metrics JSON and the four plots for `probabilities` (N, K) vs `labels`
    (multi-label models: (N, L) vs 0/1 (N, L), three plots)."""
    if model.config.multi_label:
        return _write_multilabel_report(
            model, checkpoint, probabilities=probabilities, labels=labels, split=split
        )
    proba = check_probabilities(probabilities)
    y = check_labels(labels, n_classes=proba.shape[1], n=proba.shape[0])
    predicted = model.decide(proba)
    scores = classification_metrics(proba, y)
    stem = Path(checkpoint).with_suffix("")
    stem.parent.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {
        "split": split,
        "auc": _finite(scores["auc"]),
        "acc": float(np.mean(predicted == y)) if y.size else None,
        "acc_argmax": _finite(scores["acc"]),
        "ece": _finite(expected_calibration_error(proba, y)),
        "n": int(y.size),
        "temperature": model.temperature,
        "threshold": model.threshold,
        "best_epoch": model.best_epoch,
        "network": model.config.network,
        "n_parameters": model.n_parameters,
        "validation": {k: _finite(v) for k, v in model.metrics.items()},
        "confusion_matrix": confusion_matrix(y, predicted, labels=range(proba.shape[1])).tolist(),
        "history": model.history,
    }
    paths = [stem.with_name(stem.name + ".metrics.json")]
    paths[0].write_text(json.dumps(summary, indent=2, default=float))
    drawers = {
        "learning_curve": lambda ax: _learning_curve(ax, model.history, model.best_epoch),
        "roc": lambda ax: _roc(ax, proba, y),
        "calibration": lambda ax: _calibration(ax, proba, y),
        "confusion": lambda ax: _confusion(ax, np.asarray(summary["confusion_matrix"])),
    }
    paths.extend(_draw(stem, drawers))
    logger.info("wrote training report next to %s", checkpoint)
    return paths


def _write_multilabel_report(
    model: TrainedClassifier | EnsembleClassifier,
    checkpoint: Path,
    *,
    probabilities: np.ndarray,
    labels: np.ndarray,
    split: str,
) -> list[Path]:
    proba = check_label_probabilities(probabilities)
    y = check_multilabels(labels, n_labels=proba.shape[1], n=proba.shape[0])
    predicted = model.decide(proba)
    scores = multilabel_metrics(proba, y)
    # every (item, label) probability as a binary prediction, for the calibration view
    pooled = np.stack([1.0 - proba.ravel(), proba.ravel()], axis=1)
    stem = Path(checkpoint).with_suffix("")
    stem.parent.mkdir(parents=True, exist_ok=True)
    cuts = model.label_thresholds
    summary: dict[str, Any] = {
        "split": split,
        "multi_label": True,
        "auc": _finite(scores["auc"]),
        "acc": float(np.mean(predicted == y)) if y.size else None,
        "acc_at_0.5": _finite(scores["acc"]),
        "per_label_auc": [_finite(a) for a in per_label_auc(proba, y)],
        "ece": _finite(expected_calibration_error(pooled, y.ravel())),
        "n": int(y.shape[0]),
        "temperature": model.temperature,
        "label_thresholds": None if cuts is None else [float(t) for t in cuts],
        "best_epoch": model.best_epoch,
        "network": model.config.network,
        "n_parameters": model.n_parameters,
        "validation": {k: _finite(v) for k, v in model.metrics.items()},
        "history": model.history,
    }
    paths = [stem.with_name(stem.name + ".metrics.json")]
    paths[0].write_text(json.dumps(summary, indent=2, default=float))
    logger.info("no confusion matrix for a multi-label model (%d labels)", proba.shape[1])
    drawers = {
        "learning_curve": lambda ax: _learning_curve(ax, model.history, model.best_epoch),
        "roc": lambda ax: _label_roc(ax, proba, y),
        "calibration": lambda ax: _calibration(ax, pooled, y.ravel()),
    }
    paths.extend(_draw(stem, drawers))
    logger.info("wrote multi-label training report next to %s", checkpoint)
    return paths


def _draw(stem: Path, drawers: dict[str, Any]) -> list[Path]:
    """Each drawer's figure as `<stem>.<name>.png`, in `PLOTS` order."""
    paths = []
    for name in PLOTS:
        if name not in drawers:
            continue
        figure, ax = plt.subplots(figsize=(5, 4))
        drawers[name](ax)
        figure.tight_layout()
        path = stem.with_name(f"{stem.name}.{name}.png")
        figure.savefig(path, dpi=110)
        plt.close(figure)
        paths.append(path)
    return paths


def _learning_curve(ax: Any, history: list[dict[str, float]], best_epoch: int) -> None:
    epochs = [h["epoch"] for h in history]
    ax.plot(epochs, [h["train_loss"] for h in history], "o-", label="train loss")
    ax.plot(epochs, [h["val_loss"] for h in history], "s-", label="val loss")
    twin = ax.twinx()
    twin.plot(epochs, [h["val_auc"] for h in history], "^--", color="tab:green", label="val AUC")
    twin.set_ylabel("val AUC")
    if best_epoch:
        ax.axvline(best_epoch, color="grey", linestyle=":", label="best epoch")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title("Learning curve")
    ax.legend(loc="upper left", fontsize=8)
    twin.legend(loc="upper right", fontsize=8)


def _roc(ax: Any, proba: np.ndarray, y: np.ndarray) -> None:
    classes = [1] if proba.shape[1] == 2 else list(range(proba.shape[1]))
    for k in classes:
        positives = y == k
        if 0 < positives.sum() < y.size:
            fpr, tpr, _ = roc_curve(positives, proba[:, k])
            ax.plot(fpr, tpr, label=f"class {k}")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("ROC")
    ax.legend(fontsize=8)


def _label_roc(ax: Any, proba: np.ndarray, y: np.ndarray) -> None:
    """One ROC curve per label (labels all 0 or all 1 have none)."""
    for k in range(y.shape[1]):
        if 0 < y[:, k].sum() < y.shape[0]:
            fpr, tpr, _ = roc_curve(y[:, k], proba[:, k])
            ax.plot(fpr, tpr, linewidth=1, label=f"label {k}")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("ROC per label")
    ax.legend(fontsize=6, ncol=2)


def _calibration(ax: Any, proba: np.ndarray, y: np.ndarray, bins: int = 10) -> None:
    confidence = proba.max(axis=1)
    correct = proba.argmax(axis=1) == y
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    centres, accuracy = [], []
    for b in range(bins):
        inside = which == b
        if inside.any():
            centres.append(float(confidence[inside].mean()))
            accuracy.append(float(correct[inside].mean()))
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfect")
    ax.plot(centres, accuracy, "o-", label="model")
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_title(f"Calibration (ECE {expected_calibration_error(proba, y):.3f})")
    ax.legend(fontsize=8)


def _confusion(ax: Any, matrix: np.ndarray) -> None:
    ax.imshow(matrix, cmap="Blues")
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(j, i, str(value), ha="center", va="center")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_xticks(range(matrix.shape[0]))
    ax.set_yticks(range(matrix.shape[0]))
    ax.set_title("Confusion matrix")
