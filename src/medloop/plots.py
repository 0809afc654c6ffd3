"""Charts people would rather look at than read: PNG files via matplotlib (no display)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


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
