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
    if not chosen.scores_predictions:
        raise InvalidInputError(
            f"{chosen} needs the model and the images, not only probabilities: "
            "use medloop.learning.acquire"
        )
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


def bald_scores(mc_probabilities: np.ndarray) -> np.ndarray:
    """BALD mutual information (N,) from T stochastic forward passes (T, N, K).

    I(y; w) = H(mean_t p_t) - mean_t H(p_t) (nats): high where the passes disagree,
    not merely where each pass is unsure (Houlsby et al. 2011; Gal et al. 2017).

    >>> p = np.array([[[1.0, 0.0], [0.5, 0.5]], [[0.0, 1.0], [0.5, 0.5]]])
    >>> np.round(bald_scores(p), 4).tolist()
    [0.6931, 0.0]
    """
    mc = np.asarray(mc_probabilities, dtype=np.float64)
    if mc.ndim != 3 or mc.shape[0] < 1 or mc.shape[2] < 2:
        raise InvalidInputError(f"mc_probabilities must be (T, N, K) with K >= 2; got {mc.shape}")
    for sample in mc:
        check_probabilities(sample, name="mc_probabilities")
    mc = np.clip(mc, 0.0, None)

    def entropy(p: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.asarray(-np.where(p > 0, p * np.log(p), 0.0).sum(axis=-1))

    mutual = entropy(mc.mean(axis=0)) - entropy(mc).mean(axis=0)
    return np.asarray(np.clip(mutual, 0.0, None), dtype=np.float64)


def kcenter_greedy(
    pool: np.ndarray, k: int, *, labelled: np.ndarray | None = None, seed: int = 0
) -> np.ndarray:
    """Core-set selection: `k` pool rows chosen greedily to minimise the largest distance
    from any pool row to its nearest chosen or `labelled` row (Sener & Savarese 2018).

    `pool` (N, D) and `labelled` (M, D) are embeddings; with no labelled rows the first
    centre is a seeded random pool row. Returns indices into `pool`, in order chosen.

    >>> pool = np.array([[0.0], [0.1], [5.0], [10.0]])
    >>> kcenter_greedy(pool, 2, labelled=np.array([[0.0]])).tolist()
    [3, 2]
    """
    if isinstance(k, bool) or int(k) != k or k < 0:
        raise InvalidInputError(f"k must be a non-negative integer; got {k!r}")
    x = np.asarray(pool, dtype=np.float64)
    if x.ndim != 2:
        raise InvalidInputError(f"pool must be a 2-D array (N, D); got {x.shape}")
    if not np.isfinite(x).all() or (labelled is not None and not np.isfinite(labelled).all()):
        raise InvalidInputError("embeddings must be finite numbers (a NaN row wins every pick)")
    n = x.shape[0]
    k = min(int(k), n)
    chosen: list[int] = []
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    nearest = np.full(n, np.inf)
    centres = None if labelled is None else np.asarray(labelled, dtype=np.float64)
    if centres is not None and centres.size:
        if centres.ndim != 2 or centres.shape[1] != x.shape[1]:
            raise InvalidInputError("labelled embeddings must be (M, D) like the pool")
        for start in range(0, centres.shape[0], 1024):
            block = centres[start : start + 1024]
            d = ((x[:, None, :] - block[None, :, :]) ** 2).sum(axis=2)
            nearest = np.minimum(nearest, d.min(axis=1))
    else:
        first = int(np.random.default_rng(seed).integers(n))
        chosen.append(first)
        nearest = ((x - x[first]) ** 2).sum(axis=1)
    while len(chosen) < k:
        nearest[chosen] = -1.0
        pick = int(np.argmax(nearest))
        chosen.append(pick)
        nearest = np.minimum(nearest, ((x - x[pick]) ** 2).sum(axis=1))
    return np.asarray(chosen, dtype=np.int64)
