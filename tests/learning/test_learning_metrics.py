"""Known-answer tests for classification_metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medloop.exceptions import InvalidInputError
from medloop.learning.metrics import classification_metrics


def test_binary_auc_and_accuracy_known_answer() -> None:
    proba = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.45, 0.55]])
    labels = np.array([0, 1, 1, 0])
    # Positives score 0.4, 0.7; negatives 0.1, 0.55: 3 of 4 pairs ordered right.
    out = classification_metrics(proba, labels)
    assert out == {"auc": 0.75, "acc": 0.5, "n": 4.0}


def test_multiclass_auc_is_macro_one_vs_rest() -> None:
    proba = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.1, 0.2, 0.7], [0.4, 0.5, 0.1]])
    labels = np.array([0, 1, 2, 0])
    # class 0: pos {0.8, 0.4} vs neg {0.2, 0.1} -> 1.0; class 1: pos {0.7} vs
    # neg {0.1, 0.2, 0.5} -> 1.0; class 2: pos {0.7} vs neg {0.1, 0.1, 0.1} -> 1.0.
    assert classification_metrics(proba, labels)["auc"] == 1.0
    labels_worse = np.array([1, 0, 2, 0])
    # class 0: pos {0.2, 0.4} vs neg {0.8, 0.1}: pairs (0.2>0.1),(0.4>0.1) -> 2/4.
    # class 1: pos {0.1} vs neg {0.7, 0.2, 0.5}: 0/3. class 2: pos {0.7}: 1.0.
    assert classification_metrics(proba, labels_worse)["auc"] == pytest.approx((0.5 + 0 + 1) / 3)


def test_single_class_gives_nan_auc() -> None:
    out = classification_metrics(np.array([[0.2, 0.8], [0.6, 0.4]]), np.array([1, 1]))
    assert math.isnan(out["auc"])
    assert out["acc"] == 0.5
    assert out["n"] == 2.0


def test_medmnist_label_column_accepted() -> None:
    out = classification_metrics(np.array([[0.9, 0.1], [0.1, 0.9]]), np.array([[0], [1]]))
    assert out["auc"] == 1.0


@pytest.mark.parametrize(
    ("proba", "labels"),
    [
        (np.array([[0.5, 0.6]]), np.array([0])),  # row does not sum to 1
        (np.array([[np.nan, 1.0]]), np.array([0])),  # NaN
        (np.array([[0.5, 0.5]]), np.array([2])),  # label out of range
        (np.array([[0.5, 0.5]]), np.array([0, 1])),  # length mismatch
        (np.array([0.5, 0.5]), np.array([0])),  # not 2-D
    ],
)
def test_bad_input_raises(proba: np.ndarray, labels: np.ndarray) -> None:
    with pytest.raises(InvalidInputError):
        classification_metrics(proba, labels)
