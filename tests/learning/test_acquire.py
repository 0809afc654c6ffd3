"""Acquisition beyond uncertainty: BALD, core-set (k-center), hybrid; known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medloop.exceptions import InvalidInputError, UnknownOptionError
from medloop.learning.acquire import acquire, mc_dropout_proba
from medloop.learning.active import bald_scores, kcenter_greedy
from medloop.learning.train import TrainConfig, TrainedClassifier, train_classifier
from medloop.types import Strategy


def test_bald_is_disagreement_not_uncertainty() -> None:
    mc = np.array(
        [
            [[1.0, 0.0], [0.5, 0.5], [0.9, 0.1]],
            [[0.0, 1.0], [0.5, 0.5], [0.9, 0.1]],
        ]
    )
    scores = bald_scores(mc)
    # Confident passes that disagree: H(mean) = log 2, mean H = 0.
    assert scores[0] == pytest.approx(math.log(2))
    # Uncertain but agreeing passes carry no information about the weights.
    assert scores[1] == pytest.approx(0.0)
    assert scores[2] == pytest.approx(0.0)
    with pytest.raises(InvalidInputError):
        bald_scores(np.ones((2, 3)))


def test_kcenter_picks_farthest_points_first() -> None:
    pool = np.array([[0.0, 0.0], [0.1, 0.0], [10.0, 0.0], [0.0, 5.0], [9.8, 0.0]])
    order = kcenter_greedy(pool, 3, labelled=np.array([[0.0, 0.0]]))
    assert order[:2].tolist() == [2, 3]
    # Then the point farthest from {origin, (10,0), (0,5)}: (0.1, 0) is 0.1 away, (9.8, 0) 0.2.
    assert order[2] == 4
    assert kcenter_greedy(pool, 10).shape == (5,)
    assert sorted(kcenter_greedy(pool, 5, seed=3).tolist()) == [0, 1, 2, 3, 4]
    assert kcenter_greedy(pool, 0).size == 0


def _blobs(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, size=n)
    images = rng.integers(0, 60, size=(n, 8, 8)).astype(np.uint8)
    images[labels == 1, :4] += 150
    images[labels == 0, 4:] += 150
    return images, labels


@pytest.fixture(scope="module")
def model() -> TrainedClassifier:
    x, y = _blobs(48, 0)
    xv, yv = _blobs(16, 1)
    # Two short passes: a barely trained model whose probabilities still spread (a
    # saturated one ties the margins the hybrid test ranks).
    config = TrainConfig(max_epochs=2, patience=2, batch_size=16, dropout=0.5, min_epoch_samples=0)
    return train_classifier(x, y, xv, yv, n_classes=2, config=config)


def test_mc_dropout_varies_between_passes_and_is_seeded(model: TrainedClassifier) -> None:
    x, _ = _blobs(10, 2)
    a = mc_dropout_proba(model, x, passes=4, seed=1)
    assert a.shape == (4, 10, 2)
    np.testing.assert_allclose(a.sum(axis=2), 1.0)
    assert np.ptp(a[:, :, 1], axis=0).max() > 0
    np.testing.assert_array_equal(a, mc_dropout_proba(model, x, passes=4, seed=1))
    # Prediction afterwards is deterministic again (dropout back in eval mode).
    np.testing.assert_array_equal(model.predict_proba(x), model.predict_proba(x))


@pytest.mark.parametrize("strategy", list(Strategy))
def test_every_strategy_returns_distinct_pool_indices(
    model: TrainedClassifier, strategy: Strategy
) -> None:
    pool, _ = _blobs(30, 3)
    labelled, _ = _blobs(12, 4)
    picked = acquire(model, pool, 7, strategy, labelled_images=labelled, cold_start=10)
    assert picked.shape == (7,)
    assert len(set(picked.tolist())) == 7
    assert picked.min() >= 0 and picked.max() < 30


def test_hybrid_is_coreset_at_cold_start_and_uncertain_later(model: TrainedClassifier) -> None:
    pool, _ = _blobs(40, 5)
    labelled, _ = _blobs(5, 6)
    cold = acquire(model, pool, 5, "hybrid", labelled_images=labelled, cold_start=100)
    core = acquire(model, pool, 5, "coreset", labelled_images=labelled)
    assert cold.tolist() == core.tolist()
    warm = acquire(model, pool, 5, "hybrid", labelled_images=labelled, cold_start=0, candidates=2)
    # Later, every pick comes from the 2k items of smallest margin.
    margins = np.abs(np.diff(model.predict_proba(pool), axis=1))[:, 0]
    shortlist = set(np.argsort(margins, kind="stable")[:10].tolist())
    assert set(warm.tolist()) <= shortlist


def test_unknown_strategy_suggests_a_name(model: TrainedClassifier) -> None:
    with pytest.raises(UnknownOptionError, match="coreset"):
        acquire(model, _blobs(4, 0)[0], 1, "corset")


def test_kcenter_refuses_embeddings_that_are_not_numbers() -> None:
    """A NaN row won the first pick, then an already covered row the second."""
    with pytest.raises(InvalidInputError, match="finite"):
        kcenter_greedy(np.array([[0.0], [np.nan], [3.0]]), 2, labelled=np.array([[0.0]]))
