"""Charts people would rather look at than read: PNG files via matplotlib (no display)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure


def learning_curve(rounds: Sequence[dict[str, Any]], path: Path, *, title: str) -> Path:
    """Test AUC and label accuracy against the number of labelled items, one point per round."""
    labelled = [r["labelled_items"] for r in rounds]
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(labelled, [r["test_auc"] for r in rounds], "o-", label="test AUC")
    left.plot(labelled, [r["test_acc"] for r in rounds], "s--", label="test accuracy")
    left.set_xlabel("labelled items")
    left.set_title("Model")
    left.grid(alpha=0.3)
    left.legend()
    right.plot(
        labelled,
        [r["consensus_accuracy"] for r in rounds],
        "o-",
        label="loop labels (crowd + doctors)",
    )
    right.plot(
        labelled,
        [r["majority_vote_doctors_accuracy"] for r in rounds],
        "^:",
        label="majority vote + the same doctors",
    )
    right.plot(
        labelled, [r["majority_vote_accuracy"] for r in rounds], "s--", label="majority vote"
    )
    right.set_xlabel("labelled items")
    right.set_title("Label accuracy vs reference")
    right.grid(alpha=0.3)
    right.legend()
    figure.suptitle(title)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


# --- dashboard charts: PNG bytes, drawn on a pyplot-free Figure so web threads can share ---


def _png(figure: Figure) -> bytes:
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def _empty(axes: Axes, text: str) -> None:
    axes.text(0.5, 0.5, text, ha="center", va="center", transform=axes.transAxes)
    axes.set_xticks([])
    axes.set_yticks([])


def answers_per_day_png(days: Sequence[dict[str, Any]]) -> bytes:
    """Stacked bars of crowd and doctor answers per day (`day`, `crowd`, `doctor`)."""
    figure = Figure(figsize=(7, 3))
    axes = figure.subplots()
    if not days:
        _empty(axes, "no answers yet")
    else:
        labels = [d["day"] for d in days]
        crowd = [d["crowd"] for d in days]
        axes.bar(labels, crowd, label="lay annotators")
        axes.bar(labels, [d["doctor"] for d in days], bottom=crowd, label="doctors")
        axes.set_ylabel("answers")
        axes.legend()
        axes.tick_params(axis="x", labelrotation=45)
    axes.set_title("Answers per day (UTC)")
    return _png(figure)


def annotators_png(annotators: Sequence[dict[str, Any]], *, limit: int = 30) -> bytes:
    """Each annotator's accuracy with its 95% interval: on gold and as estimated."""
    shown = list(annotators)[:limit]
    figure = Figure(figsize=(7, max(2.5, 0.3 * len(shown) + 1.2)))
    axes = figure.subplots()
    if not shown:
        _empty(axes, "no lay answers yet")
    for offset, key, label in ((-0.15, "gold", "on gold"), (0.15, "estimated", "estimated")):
        rows = [(i, a) for i, a in enumerate(shown) if a[f"{key}_accuracy"] is not None]
        if not rows:
            continue
        y = [i + offset for i, _ in rows]
        x = [a[f"{key}_accuracy"] for _, a in rows]
        err = [
            [a[f"{key}_accuracy"] - a[f"{key}_low"] for _, a in rows],
            [a[f"{key}_high"] - a[f"{key}_accuracy"] for _, a in rows],
        ]
        axes.errorbar(x, y, xerr=err, fmt="o", capsize=3, label=f"{label} (95% CI)")
    if shown:
        axes.set_yticks(range(len(shown)), [a["worker"] for a in shown])
        axes.invert_yaxis()
        axes.set_xlim(0, 1.02)
        axes.set_xlabel("accuracy")
        axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    axes.set_title("Annotators")
    return _png(figure)


def model_curve_png(points: Sequence[dict[str, Any]]) -> bytes:
    """Model quality against training-set size, one point per model version."""
    figure = Figure(figsize=(7, 3))
    axes = figure.subplots()
    if not points:
        _empty(axes, "no model trained yet")
    else:
        n_train = [p["n_train"] for p in points]
        for key, style, label in (
            ("test_auc", "o-", "test AUC"),
            ("val_auc", "s--", "validation AUC"),
            ("test_acc", "^:", "test accuracy"),
        ):
            values = [p[key] for p in points]
            if any(v is not None for v in values):
                axes.plot(
                    n_train, [float("nan") if v is None else v for v in values], style, label=label
                )
        axes.set_xlabel("labelled training items")
        axes.grid(alpha=0.3)
        axes.legend()
    axes.set_title("Learning curve")
    return _png(figure)


def calibration_png(predicted: Sequence[float], observed: Sequence[float], *, title: str) -> bytes:
    """Predicted against observed risk per group of patients, with the ideal diagonal."""
    figure = Figure(figsize=(4.2, 4))
    axes = figure.subplots()
    if not len(predicted):
        _empty(axes, "no calibration data")
    else:
        top = max(1e-3, *predicted, *observed) * 1.1
        axes.plot([0, top], [0, top], "k--", lw=1, label="ideal")
        axes.plot(predicted, observed, "o-", label="model")
        axes.set_xlim(0, top)
        axes.set_ylim(0, top)
        axes.set_xlabel("predicted risk")
        axes.set_ylabel("observed risk")
        axes.grid(alpha=0.3)
        axes.legend(loc="upper left")
    axes.set_title(title, fontsize=10)
    return _png(figure)
