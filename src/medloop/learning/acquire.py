"""Model-aware acquisition: which pool images a trained classifier would most like labelled.

| strategy  | what                                                                  |
|-----------|-----------------------------------------------------------------------|
| `random`  | seeded uniform choice                                                 |
| `entropy` | highest predictive entropy                                            |
| `margin`  | smallest gap between the two most probable classes                    |
| `bald`    | highest BALD mutual information over MC-dropout passes                |
| `coreset` | k-center greedy on the network's embeddings (labelled rows as centres) |
| `hybrid`  | cold start: core-set; later: core-set among the most uncertain (margin) |

`hybrid` handles the cold start, where uncertainty from a model trained on a few
dozen labels is unreliable and picks near-duplicates: below `cold_start` labels it
is pure core-set (diversity); from there on it keeps the `candidates * k` items of
smallest margin and spreads the batch over them with k-center (diversity among the
uncertain).
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from torch import nn

from medloop.exceptions import InvalidInputError
from medloop.learning.active import bald_scores, kcenter_greedy, select_batch
from medloop.learning.data import images_to_tensor
from medloop.learning.train import TrainedClassifier, torch_threads
from medloop.types import Strategy, look_up_option

logger = logging.getLogger(__name__)


def mc_dropout_proba(
    model: TrainedClassifier,
    images: np.ndarray,
    *,
    passes: int = 10,
    seed: int = 0,
    batch_size: int = 512,
) -> np.ndarray:
    """Class probabilities (passes, N, K) with dropout active (batch norm stays in eval).

    A network without dropout gives `passes` identical copies (BALD scores of 0).
    """
    if passes < 1:
        raise InvalidInputError("passes must be >= 1")
    network = model.network
    dropouts = [m for m in network.modules() if isinstance(m, nn.Dropout)]
    x = images_to_tensor(images, in_channels=model.in_channels)
    out = np.zeros((passes, x.shape[0], model.n_classes), dtype=np.float64)
    network.eval()
    try:
        for m in dropouts:
            m.train()
        with (
            torch_threads(model.config.num_threads),
            torch.no_grad(),
            torch.random.fork_rng(devices=[]),
        ):
            torch.manual_seed(seed)
            for t in range(passes):
                for start in range(0, x.shape[0], batch_size):
                    chunk = x[start : start + batch_size].contiguous(
                        memory_format=torch.channels_last
                    )
                    logits = network(chunk).double() / model.temperature
                    out[t, start : start + chunk.shape[0]] = torch.softmax(logits, 1).numpy()
    finally:
        network.eval()
    return out / out.sum(axis=2, keepdims=True)


def acquire(
    model: TrainedClassifier,
    pool_images: np.ndarray,
    k: int,
    strategy: Strategy | str,
    *,
    labelled_images: np.ndarray | None = None,
    seed: int = 0,
    cold_start: int = 300,
    candidates: int = 4,
    passes: int = 10,
) -> np.ndarray:
    """Indices of the `k` pool images to label next, by `strategy` (best first).

    `labelled_images` are the images already labelled (core-set uses them as centres;
    `hybrid` counts them against `cold_start`).
    """
    chosen = look_up_option(strategy, Strategy)
    if isinstance(k, bool) or int(k) != k or k < 0:
        raise InvalidInputError(f"k must be a non-negative integer; got {k!r}")
    n_pool = int(np.asarray(pool_images).shape[0])
    k = min(int(k), n_pool)
    if chosen.scores_predictions:
        return select_batch(model.predict_proba(pool_images), k, chosen.value, seed=seed)
    if chosen is Strategy.BALD:
        scores = bald_scores(mc_dropout_proba(model, pool_images, passes=passes, seed=seed))
        order = np.argsort(-np.round(scores, 12), kind="stable")
        return order[:k].astype(np.int64)
    n_labelled = 0 if labelled_images is None else int(np.asarray(labelled_images).shape[0])
    pool_embedding = model.embed(pool_images)
    labelled_embedding = None if n_labelled == 0 else model.embed(np.asarray(labelled_images))
    if chosen is Strategy.CORESET or n_labelled < cold_start:
        return kcenter_greedy(pool_embedding, k, labelled=labelled_embedding, seed=seed)
    shortlist = select_batch(model.predict_proba(pool_images), candidates * k, "margin")
    picked = kcenter_greedy(pool_embedding[shortlist], k, labelled=labelled_embedding, seed=seed)
    logger.debug("hybrid: %d of %d uncertain candidates", picked.size, shortlist.size)
    return shortlist[picked].astype(np.int64)
