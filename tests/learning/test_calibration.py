"""Temperature scaling, decision thresholds and calibration error: known answers."""

from __future__ import annotations

import numpy as np
import pytest

from medloop.exceptions import InvalidInputError, UnknownOptionError
from medloop.learning.calibration import (
    ONE_SE,
    apply_temperature,
    choose_threshold,
    expected_calibration_error,
    fit_temperature,
)


def test_temperature_recovers_a_known_overconfidence() -> None:
    rng = np.random.default_rng(0)
    true_logits = rng.normal(0.0, 2.0, size=(4000, 3))
    p = apply_temperature(true_logits, 1.0)
    labels = np.array([rng.choice(3, p=row) for row in p])
    # The model reports logits 2.5x too large; the fitted temperature undoes that.
    assert fit_temperature(2.5 * true_logits, labels) == pytest.approx(2.5, rel=0.1)
    assert fit_temperature(true_logits, labels) == pytest.approx(1.0, rel=0.1)


def test_apply_temperature_keeps_ranking_and_sums_to_one() -> None:
    logits = np.array([[2.0, 0.0], [0.0, 1.0], [5.0, -5.0]])
    sharp, soft = apply_temperature(logits, 0.5), apply_temperature(logits, 4.0)
    np.testing.assert_allclose(sharp.sum(axis=1), 1.0)
    assert (sharp.argmax(axis=1) == soft.argmax(axis=1)).all()
    assert sharp[0, 0] > soft[0, 0] > 0.5
    assert apply_temperature(np.array([[0.0, np.log(3.0)]]), 1.0)[0, 1] == pytest.approx(0.75)
    with pytest.raises(InvalidInputError):
        apply_temperature(logits, 0.0)


def test_threshold_maximises_accuracy_or_balanced_accuracy() -> None:
    # 8 negatives and 2 positives; one positive (0.55) scores below three negatives.
    p1 = np.array([0.1, 0.2, 0.3, 0.4, 0.45, 0.6, 0.62, 0.64, 0.55, 0.9])
    y = np.array([0, 0, 0, 0, 0, 0, 0, 0, 1, 1])
    proba = np.stack([1 - p1, p1], axis=1)
    # Accuracy: only the top score positive is best (9 of 10 right).
    assert choose_threshold(proba, y) == pytest.approx((0.64 + 0.9) / 2)
    # Balanced accuracy: catching both positives scores 1 + 5/8 > 1/2 + 1.
    assert choose_threshold(proba, y, criterion="balanced") == pytest.approx(0.5)
    # Within a tolerance of the best the cut nearest 0.5 wins (0.5 itself scores 7/10).
    assert choose_threshold(proba, y, tolerance=0.25) == 0.5
    assert choose_threshold(proba, y, tolerance=0.05) == pytest.approx((0.64 + 0.9) / 2)
    with pytest.raises(UnknownOptionError):
        choose_threshold(proba, y, criterion="f1")


def test_one_standard_error_tolerance_shrinks_as_the_validation_set_grows() -> None:
    """On 40 items the best balanced cut (0.616) is within one standard error of 0.5,
    which wins when it is the anchor; the same items repeated 100 times tell them apart."""
    rng = np.random.default_rng(0)
    y = (rng.random(40) < 0.7).astype(int)
    p1 = np.clip(0.35 + 0.4 * y + rng.normal(0, 0.2, 40), 0.01, 0.99)
    proba = np.stack([1 - p1, p1], axis=1)
    best = choose_threshold(proba, y, criterion="balanced")
    assert best == pytest.approx(0.616, abs=1e-3)
    assert choose_threshold(proba, y, criterion="balanced", tolerance=ONE_SE, anchor=0.5) == 0.5
    many, y_many = np.tile(proba, (100, 1)), np.tile(y, 100)
    assert choose_threshold(many, y_many, criterion="balanced", tolerance=ONE_SE) == best
    assert choose_threshold(many, y_many, tolerance=ONE_SE) == choose_threshold(many, y_many)
    with pytest.raises(UnknownOptionError, match="one_se"):
        choose_threshold(proba, y, tolerance="one-se")
    with pytest.raises(InvalidInputError, match=">= 0"):
        choose_threshold(proba, y, tolerance=-0.1)


def test_near_ties_go_to_the_criterion_own_cut() -> None:
    """Many cuts separate a clean validation set; accuracy keeps the one nearest 0.5,
    balanced accuracy the one nearest the prevalence (where the evidence is neutral)."""
    p1 = np.array([0.02, 0.05, 0.1, 0.15, 0.9, 0.92, 0.95, 0.97, 0.98, 0.99])
    y = (p1 > 0.5).astype(int)  # prevalence 0.6; every cut in (0.15, 0.9) is perfect
    proba = np.stack([1 - p1, p1], axis=1)
    assert choose_threshold(proba, y) == 0.5
    assert choose_threshold(proba, y, criterion="balanced") == pytest.approx(0.6)
    assert choose_threshold(proba, y, criterion="balanced", anchor=0.3) == pytest.approx(0.3)
    with pytest.raises(InvalidInputError, match="anchor"):
        choose_threshold(proba, y, anchor=1.0)


def test_perfect_separation_keeps_one_half() -> None:
    proba = np.array([[0.9, 0.1], [0.2, 0.8]])
    assert choose_threshold(proba, np.array([0, 1])) == 0.5


def test_expected_calibration_error_known_answer() -> None:
    # Two items at confidence 0.8: one right, one wrong -> |0.5 - 0.8| = 0.3.
    proba = np.array([[0.8, 0.2], [0.8, 0.2]])
    assert expected_calibration_error(proba, np.array([0, 1])) == pytest.approx(0.3)
    assert expected_calibration_error(np.array([[1.0, 0.0]]), np.array([0])) == 0.0
    with pytest.raises(InvalidInputError, match="bins"):  # 0 bins read as perfectly calibrated
        expected_calibration_error(proba, np.array([0, 1]), bins=0)
