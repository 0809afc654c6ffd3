"""Training artefacts next to a checkpoint: a metrics JSON and PNG plots (matplotlib, Agg).

For a checkpoint `models/m.pt` it writes `models/m.metrics.json`, `m.learning_curve.png`,
`m.roc.png`, `m.calibration.png` and `m.confusion.png`.
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
from medloop.learning.metrics import check_labels, check_probabilities, classification_metrics

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
    """Write the metrics JSON and the four plots for `probabilities` (N, K) vs `labels`."""
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
    for name in PLOTS:
        figure, ax = plt.subplots(figsize=(5, 4))
        drawers[name](ax)
        figure.tight_layout()
        path = stem.with_name(f"{stem.name}.{name}.png")
        figure.savefig(path, dpi=110)
        plt.close(figure)
        paths.append(path)
    logger.info("wrote training report next to %s", checkpoint)
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
