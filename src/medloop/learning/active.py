"""Active-learning acquisition: which unlabelled items are most worth labelling next.

Pure numpy over predicted probabilities (N, K); higher scores mean more worth labelling.

>>> p = np.array([[0.9, 0.1], [0.5, 0.5], [0.6, 0.4]])
>>> select_batch(p, 2, "margin").tolist()
[1, 2]
"""

from __future__ import annotations

import logging

import numpy as np

from medloop.exceptions import InvalidInputError
from medloop.learning.metrics import check_probabilities
from medloop.types import Strategy, look_up_option

logger = logging.getLogger(__name__)


def acquisition_scores(
    probabilities: np.ndarray, strategy: Strategy | str, *, seed: int = 0
) -> np.ndarray:
    """Score each item (N,) by `strategy`; higher is more worth labelling.

    - random: seeded uniform draws in [0, 1)
    - entropy: predictive entropy -sum p log p (nats; 0 log 0 = 0)
    - margin: 1 - (p_top1 - p_top2), in [0, 1]
    """
    chosen = look_up_option(strategy, Strategy)
    proba = check_probabilities(probabilities)
    proba = np.clip(proba, 0.0, None)
    n = proba.shape[0]
    if chosen is Strategy.RANDOM:
        return np.random.default_rng(seed).random(n)
    if chosen is Strategy.ENTROPY:
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(proba > 0, proba * np.log(proba), 0.0)
        return np.asarray(-terms.sum(axis=1), dtype=np.float64)
    top2 = np.sort(proba, axis=1)[:, -2:]
    return np.asarray(1.0 - (top2[:, 1] - top2[:, 0]), dtype=np.float64)


def select_batch(
    probabilities: np.ndarray, k: int, strategy: Strategy | str, *, seed: int = 0
) -> np.ndarray:
    """Indices of the `k` highest-scoring items, best first; ties go to the lower index.

    Asking for more items than there are returns them all.
    """
    if isinstance(k, bool) or int(k) != k or k < 0:
        raise InvalidInputError(f"k must be a non-negative integer; got {k!r}")
    scores = acquisition_scores(probabilities, strategy, seed=seed)
    # Round away float noise so equal-looking scores tie and keep index order.
    order = np.argsort(-np.round(scores, 12), kind="stable")
    chosen = order[: int(k)]
    logger.debug("selected %d of %d items by %s", chosen.size, scores.size, strategy)
    return chosen.astype(np.int64)
