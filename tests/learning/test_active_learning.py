"""Known-answer tests for acquisition scores and batch selection."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medloop.exceptions import InvalidInputError, UnknownOptionError
from medloop.learning.active import acquisition_scores, select_batch
from medloop.types import Strategy

PROBA = np.array(
    [
        [1.0, 0.0, 0.0],
        [0.5, 0.5, 0.0],
        [1 / 3, 1 / 3, 1 / 3],
        [0.6, 0.3, 0.1],
    ]
)


def test_entropy_known_answer() -> None:
    scores = acquisition_scores(PROBA, "entropy")
    expected = [
        0.0,
        math.log(2),
        math.log(3),
        -(0.6 * math.log(0.6) + 0.3 * math.log(0.3) + 0.1 * math.log(0.1)),
    ]
    assert scores == pytest.approx(expected)


def test_margin_known_answer() -> None:
    scores = acquisition_scores(PROBA, Strategy.MARGIN)
    assert scores == pytest.approx([0.0, 1.0, 1.0, 0.7])


def test_random_is_seeded_uniform() -> None:
    a = acquisition_scores(PROBA, "random", seed=5)
    assert np.array_equal(a, acquisition_scores(PROBA, "random", seed=5))
    assert not np.array_equal(a, acquisition_scores(PROBA, "random", seed=6))
    assert a.min() >= 0.0 and a.max() < 1.0


def test_select_batch_top_k_with_index_tie_break() -> None:
    assert select_batch(PROBA, 2, "entropy").tolist() == [2, 3]
    # margin ties items 1 and 2 at 1.0: the lower index comes first.
    assert select_batch(PROBA, 3, "margin").tolist() == [1, 2, 3]
    assert select_batch(PROBA, 0, "margin").tolist() == []
    assert select_batch(PROBA, 10, "margin").tolist() == [1, 2, 3, 0]
    chosen = select_batch(PROBA, 2, "random", seed=1)
    scores = acquisition_scores(PROBA, "random", seed=1)
    assert chosen.tolist() == np.argsort(-scores)[:2].tolist()


def test_unknown_strategy_suggests() -> None:
    with pytest.raises(UnknownOptionError, match="entropy"):
        acquisition_scores(PROBA, "entropi")


@pytest.mark.parametrize(
    "proba",
    [np.array([[0.5, 0.6]]), np.array([[np.nan, 1.0]]), np.array([0.5, 0.5]), np.array([[1.0]])],
)
def test_bad_probabilities_raise(proba: np.ndarray) -> None:
    with pytest.raises(InvalidInputError):
        acquisition_scores(proba, "entropy")


@pytest.mark.parametrize("k", [-1, 1.5])
def test_bad_k_raises(k: float) -> None:
    with pytest.raises(InvalidInputError):
        select_batch(PROBA, k, "entropy")  # type: ignore[arg-type]


@pytest.mark.parametrize("strategy", ["bald", "coreset", "hybrid"])
def test_model_based_strategies_are_not_scored_from_probabilities(strategy: str) -> None:
    with pytest.raises(InvalidInputError, match="needs the model"):
        select_batch(np.array([[0.5, 0.5]]), 1, strategy)
