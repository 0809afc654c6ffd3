"""Simulated annotators for benchmarks and the demo.

They answer from a dataset's reference labels (integer classes ``0..K-1``) and produce
ordinary answers (columns ``task, worker, label, source``), so everything downstream
treats them like people. Each simulator owns a seeded ``numpy.random.Generator``:
successive calls continue one deterministic stream.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence

import numpy as np
import numpy.typing as npt
import pandas as pd

from medloop.exceptions import InvalidInputError
from medloop.types import LabelSource

logger = logging.getLogger(__name__)

#: Item ids or class codes: a sequence of ints or an integer numpy array.
IntArrayLike = Sequence[int] | npt.NDArray[np.integer]


def _check_items(
    item_ids: IntArrayLike,
    truth: IntArrayLike,
    n_classes: int,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.intp]]:
    items = np.asarray(item_ids)
    labels = np.asarray(truth)
    if items.ndim != 1 or labels.ndim != 1 or len(items) != len(labels):
        raise InvalidInputError(
            f"item_ids and truth must be 1-d and of equal length, got {items.shape} "
            f"and {labels.shape}"
        )
    integral = np.issubdtype(labels.dtype, np.integer) or (
        np.issubdtype(labels.dtype, np.floating) and bool(np.all(labels == np.round(labels)))
    )
    if len(labels) and not integral:
        raise InvalidInputError("truth must hold integer class codes 0..K-1")
    labels = labels.astype(np.intp)
    if len(labels) and (labels.min() < 0 or labels.max() >= n_classes):
        raise InvalidInputError(
            f"truth must hold class codes in 0..{n_classes - 1}, "
            f"got range {labels.min()}..{labels.max()}"
        )
    return items, labels


def _check_n_classes(n_classes: int) -> None:
    if isinstance(n_classes, bool) or not isinstance(n_classes, int | np.integer):
        raise InvalidInputError(f"n_classes must be an integer, got {n_classes!r}")
    if n_classes < 2:
        raise InvalidInputError(f"n_classes must be >= 2, got {n_classes}")


def _draw_labels(rng: np.random.Generator, rows: npt.NDArray[np.float64]) -> npt.NDArray[np.intp]:
    """One categorical draw per row of probabilities (rows sum to 1)."""
    cumulative = rows.cumsum(axis=1)
    u = rng.random(len(rows))[:, None]
    draws = (u >= cumulative).sum(axis=1)
    return np.minimum(draws, rows.shape[1] - 1).astype(np.intp)


class SimulatedCrowd:
    """A crowd of lay annotators with class-dependent confusion matrices.

    Each annotator's accuracy is drawn from Beta(mean * c, (1 - mean) * c) with
    ``c = accuracy_concentration``, clipped to [1/K, 0.99]; the rest of each
    confusion row is spread over the other classes by a per-worker Dirichlet draw.
    A ``spammer_fraction`` of annotators answers uniformly at random.

    Attributes: ``worker_ids_`` ("lay-001", ...), ``accuracy_`` (Series by worker),
    ``confusion_`` (W x K x K, rows = true class), ``is_spammer_`` (Series by worker).

    >>> crowd = SimulatedCrowd(5, n_classes=2, seed=1)
    >>> crowd.answer([10, 11], [0, 1], redundancy=3).shape
    (6, 4)
    """

    def __init__(
        self,
        n_workers: int = 30,
        *,
        n_classes: int,
        accuracy_mean: float = 0.7,
        accuracy_concentration: float = 20.0,
        spammer_fraction: float = 0.0,
        seed: int = 0,
    ) -> None:
        _check_n_classes(n_classes)
        if isinstance(n_workers, bool) or not isinstance(n_workers, int | np.integer):
            raise InvalidInputError(f"n_workers must be an integer, got {n_workers!r}")
        if n_workers < 1:
            raise InvalidInputError(f"n_workers must be >= 1, got {n_workers}")
        if not 0 < accuracy_mean < 1:
            raise InvalidInputError(f"accuracy_mean must be in (0, 1), got {accuracy_mean}")
        if not accuracy_concentration > 0:
            raise InvalidInputError(
                f"accuracy_concentration must be > 0, got {accuracy_concentration}"
            )
        if not 0 <= spammer_fraction <= 1:
            raise InvalidInputError(f"spammer_fraction must be in [0, 1], got {spammer_fraction}")
        self.n_workers = int(n_workers)
        self.n_classes = int(n_classes)
        self.accuracy_mean = accuracy_mean
        self.accuracy_concentration = accuracy_concentration
        self.spammer_fraction = spammer_fraction
        self.seed = seed
        self.rng_ = np.random.default_rng(seed)
        self._build_workers()

    def _build_workers(self) -> None:
        w, k, rng = self.n_workers, self.n_classes, self.rng_
        a = self.accuracy_mean * self.accuracy_concentration
        b = (1 - self.accuracy_mean) * self.accuracy_concentration
        accuracy = np.clip(rng.beta(a, b, size=w), 1.0 / k, 0.99)
        n_spammers = round(self.spammer_fraction * w)
        spammer = np.zeros(w, dtype=bool)
        spammer[rng.choice(w, size=n_spammers, replace=False)] = True

        # Off-diagonal mass of each row spread by a Dirichlet draw over the other classes.
        spread = rng.dirichlet(np.ones(k - 1), size=(w, k))  # (W, K, K-1)
        confusion = np.zeros((w, k, k))
        off = ~np.eye(k, dtype=bool)
        confusion[:, off] = (spread * (1 - accuracy)[:, None, None]).reshape(w, -1)
        confusion[:, np.arange(k), np.arange(k)] = accuracy[:, None]
        confusion[spammer] = 1.0 / k
        accuracy[spammer] = 1.0 / k

        self.worker_ids_: list[str] = [f"lay-{i + 1:03d}" for i in range(w)]
        index = pd.Index(self.worker_ids_, name="worker")
        self.accuracy_: pd.Series = pd.Series(accuracy, index=index, name="accuracy")
        self.is_spammer_: pd.Series = pd.Series(spammer, index=index, name="is_spammer")
        self.confusion_: npt.NDArray[np.float64] = confusion

    def answer(
        self,
        item_ids: IntArrayLike,
        truth: IntArrayLike,
        *,
        redundancy: int = 3,
        answered_by: Sequence[Collection[str]] | None = None,
    ) -> pd.DataFrame:
        """Answers for each item from ``redundancy`` distinct random annotators.

        ``answered_by`` (one collection of worker ids per item) names who answered the
        item before: as in the web queue, nobody answers an item twice, so an item gets
        fewer answers when fewer other annotators are left."""
        items, labels = _check_items(item_ids, truth, self.n_classes)
        if isinstance(redundancy, bool) or not isinstance(redundancy, int | np.integer):
            raise InvalidInputError(f"redundancy must be an integer, got {redundancy!r}")
        if not 1 <= redundancy <= self.n_workers:
            raise InvalidInputError(
                f"redundancy must be in 1..{self.n_workers} (the crowd size), got {redundancy}"
            )
        n = len(items)
        # Distinct workers per item: the first `redundancy` of a random permutation,
        # those who answered before sorted last and then dropped.
        keys = self.rng_.random((n, self.n_workers))
        if answered_by is not None:
            if len(answered_by) != n:
                raise InvalidInputError(
                    f"answered_by needs one entry per item ({n}), got {len(answered_by)}"
                )
            column = {w: j for j, w in enumerate(self.worker_ids_)}
            for row, workers in enumerate(answered_by):
                keys[row, [column[w] for w in workers if w in column]] = np.inf
        picked = np.argpartition(keys, redundancy - 1, axis=1)[:, :redundancy]
        fresh = np.isfinite(np.take_along_axis(keys, picked, axis=1)).reshape(-1)
        chosen = picked.reshape(-1)[fresh]
        true = np.repeat(labels, redundancy)[fresh]
        answered = _draw_labels(self.rng_, self.confusion_[chosen, true])
        logger.debug("simulated crowd gave %d answers to %d items", len(chosen), n)
        return pd.DataFrame(
            {
                "task": np.repeat(items, redundancy)[fresh],
                "worker": np.asarray(self.worker_ids_, dtype=object)[chosen],
                "label": answered.astype(np.int64),
                "source": LabelSource.CROWD.value,
            }
        )


class SimulatedDoctor:
    """A doctor answering the first ``budget`` items of each review queue.

    Correct with probability ``accuracy``; otherwise a uniformly random other class.

    >>> SimulatedDoctor(n_classes=2, budget=2).answer([5, 6, 7], [1, 0, 1])["task"].tolist()
    [5, 6]
    """

    def __init__(
        self,
        worker_id: str = "doctor-1",
        *,
        n_classes: int,
        accuracy: float = 0.97,
        budget: int = 50,
        seed: int = 0,
    ) -> None:
        _check_n_classes(n_classes)
        if not 0 <= accuracy <= 1:
            raise InvalidInputError(f"accuracy must be in [0, 1], got {accuracy}")
        if isinstance(budget, bool) or not isinstance(budget, int | np.integer) or budget < 0:
            raise InvalidInputError(f"budget must be an integer >= 0, got {budget!r}")
        self.worker_id = worker_id
        self.n_classes = int(n_classes)
        self.accuracy = accuracy
        self.budget = int(budget)
        self.seed = seed
        self.rng_ = np.random.default_rng(seed)

    def answer(
        self,
        item_ids: IntArrayLike,
        truth: IntArrayLike,
    ) -> pd.DataFrame:
        """Answer the first ``budget`` items in the given (review-queue) order."""
        items, labels = _check_items(item_ids, truth, self.n_classes)
        items, labels = items[: self.budget], labels[: self.budget]
        n = len(items)
        wrong = self.rng_.random(n) >= self.accuracy
        shift = self.rng_.integers(1, self.n_classes, size=n)
        answered = np.where(wrong, (labels + shift) % self.n_classes, labels)
        return pd.DataFrame(
            {
                "task": items,
                "worker": pd.Series([self.worker_id] * n, dtype=object),
                "label": answered.astype(np.int64),
                "source": LabelSource.DOCTOR.value,
            }
        )
