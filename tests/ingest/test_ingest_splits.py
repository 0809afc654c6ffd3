"""Stratified, patient-grouped train/val/test assignment."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medloop.exceptions import InvalidInputError
from medloop.ingest import stratified_group_split
from medloop.types import Split


def _cohort(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """400 patients with 1-6 images each; three imbalanced classes, mostly per patient."""
    rng = np.random.default_rng(seed)
    labels: list[int] = []
    groups: list[str] = []
    for patient in range(400):
        disease = int(rng.choice(3, p=[0.6, 0.3, 0.1]))
        for _ in range(int(rng.integers(1, 7))):
            labels.append(disease if rng.random() < 0.9 else int(rng.integers(3)))
            groups.append(f"patient-{patient}")
    return np.array(labels), np.array(groups)


def test_no_patient_in_two_splits_and_class_proportions() -> None:
    labels, groups = _cohort()
    split = stratified_group_split(labels, groups=groups, seed=0)
    assert split.shape == labels.shape and split.dtype == object
    assert set(split) == {Split.TRAIN, Split.VAL, Split.TEST}
    per_patient = pd.Series(split).groupby(groups).nunique()
    assert (per_patient == 1).all()
    for cls in range(3):
        rows = labels == cls
        for part, target in zip(Split, (0.7, 0.1, 0.2), strict=True):
            share = float((split[rows] == part).mean())
            assert abs(share - target) < 0.03, (cls, part, share)


def test_exact_fractions_without_groups() -> None:
    labels = np.repeat(["a", "b", "c"], [500, 300, 200])
    split = stratified_group_split(labels, fractions=(0.6, 0.2, 0.2), seed=3)
    for cls, n in (("a", 500), ("b", 300), ("c", 200)):
        counts = [int((split[labels == cls] == s).sum()) for s in Split]
        assert counts == [int(n * 0.6), int(n * 0.2), int(n * 0.2)]


def test_seed_determinism_and_variation() -> None:
    labels, groups = _cohort(1)
    first = stratified_group_split(labels, groups=groups, seed=7)
    again = stratified_group_split(labels, groups=groups, seed=7)
    other = stratified_group_split(labels, groups=groups, seed=8)
    assert (first == again).all()
    assert (first != other).mean() > 0.1


def test_missing_groups_are_singletons() -> None:
    labels = np.array([0, 1] * 10)
    groups = np.array(["p1"] * 6 + [None] * 12 + [float("nan")] * 2, dtype=object)
    split = stratified_group_split(labels, groups=groups, seed=0)
    assert len(set(split[:6])) == 1  # p1 stays together
    assert len(set(split[6:])) > 1  # the ungrouped rows spread over the splits


def test_zero_fraction_split_stays_empty() -> None:
    split = stratified_group_split(np.arange(50) % 2, fractions=(0.8, 0.0, 0.2))
    assert int((split == Split.VAL).sum()) == 0
    assert int((split == Split.TEST).sum()) == 10


@pytest.mark.parametrize(
    "fractions",
    [(0.7, 0.2, 0.2), (0.5, -0.1, 0.6), (0.5, 0.5), (float("nan"), 0.5, 0.5), ("a", 0, 1)],
)
def test_bad_fractions(fractions: tuple[float, float, float]) -> None:
    with pytest.raises(InvalidInputError, match="fractions"):
        stratified_group_split(np.zeros(10), fractions=fractions)


def test_bad_inputs() -> None:
    with pytest.raises(InvalidInputError, match="empty"):
        stratified_group_split(np.array([]))
    with pytest.raises(InvalidInputError, match="missing"):
        stratified_group_split(np.array([1, None, 0], dtype=object))
    with pytest.raises(InvalidInputError, match="shape"):
        stratified_group_split(np.zeros(4), groups=np.zeros(3))
    with pytest.raises(InvalidInputError, match="one-dimensional"):
        stratified_group_split(np.zeros((2, 2)))
