"""Task planning (redundancy, gold honeypots) and per-worker gold accuracy."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from medloop.aggregation.base import validate_answers, validate_known
from medloop.exceptions import InvalidInputError

logger = logging.getLogger(__name__)

#: Two-sided 95% normal quantile used by the Wilson interval.
Z_95 = 1.959963984540054


@dataclass(frozen=True)
class TaskPlan:
    """One item to be labelled by `redundancy` distinct annotators.

    Gold plans are honeypots: items whose label is already known, used to measure
    annotators' accuracy.
    """

    item_id: int
    redundancy: int
    is_gold: bool


def _as_ids(values: Sequence[int] | npt.NDArray[np.integer], name: str) -> list[int]:
    ids: list[int] = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int | np.integer):
            raise InvalidInputError(f"{name} must be integers, got {v!r}")
        ids.append(int(v))
    if len(set(ids)) != len(ids):
        dupes = sorted({i for i in ids if ids.count(i) > 1})[:5]
        raise InvalidInputError(f"{name} contain duplicates, e.g. {dupes}")
    return ids


def plan_tasks(
    item_ids: Sequence[int] | npt.NDArray[np.integer],
    *,
    redundancy: int = 3,
    gold_item_ids: Sequence[int] = (),
    gold_rate: float = 0.1,
    seed: int = 0,
) -> list[TaskPlan]:
    """Plan one task per item plus gold honeypots, in a seeded random order.

    About ``gold_rate`` of all plans are gold: ``round(gold_rate * n / (1 - gold_rate))``
    gold plans for ``n`` items, drawn without replacement from ``gold_item_ids`` (fewer
    when not enough gold items exist; none when there are none). Every plan asks for
    ``redundancy`` answers.

    >>> plans = plan_tasks([1, 2, 3, 4, 5, 6, 7, 8, 9], gold_item_ids=[100, 101], gold_rate=0.1)
    >>> len(plans), sum(p.is_gold for p in plans)
    (10, 1)
    """
    if isinstance(redundancy, bool) or not isinstance(redundancy, int | np.integer):
        raise InvalidInputError(f"redundancy must be an integer, got {redundancy!r}")
    if redundancy < 1:
        raise InvalidInputError(f"redundancy must be >= 1, got {redundancy}")
    if not (isinstance(gold_rate, int | float) and 0 <= gold_rate < 1):
        raise InvalidInputError(f"gold_rate must be in [0, 1), got {gold_rate!r}")
    items = _as_ids(item_ids, "item_ids")
    gold_pool = _as_ids(gold_item_ids, "gold_item_ids")
    overlap = sorted(set(items) & set(gold_pool))
    if overlap:
        raise InvalidInputError(
            f"items cannot be both to label and gold, e.g. {overlap[:5]}; "
            "remove gold items from item_ids"
        )
    rng = np.random.default_rng(seed)
    wanted = round(gold_rate * len(items) / (1 - gold_rate)) if items else 0
    n_gold = min(wanted, len(gold_pool))
    if n_gold < wanted:
        logger.warning(
            "only %d gold items available for %d wanted gold plans", len(gold_pool), wanted
        )
    gold_ids = [gold_pool[i] for i in rng.choice(len(gold_pool), size=n_gold, replace=False)]
    plans = [TaskPlan(item_id=i, redundancy=int(redundancy), is_gold=False) for i in items]
    plans += [TaskPlan(item_id=i, redundancy=int(redundancy), is_gold=True) for i in gold_ids]
    order = rng.permutation(len(plans))
    logger.info("planned %d tasks (%d gold), redundancy %d", len(plans), n_gold, redundancy)
    return [plans[i] for i in order]


def wilson_interval(
    correct: np.ndarray | pd.Series, n: np.ndarray | pd.Series, *, z: float = Z_95
) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval for binomial proportions; ``n == 0`` gives [0, 1].

    >>> low, high = wilson_interval(np.array([8]), np.array([10]))
    >>> round(float(low[0]), 4), round(float(high[0]), 4)
    (0.4902, 0.9433)
    """
    k = np.asarray(correct, dtype=float)
    m = np.asarray(n, dtype=float)
    if k.shape != m.shape or not np.all((k >= 0) & (k <= m)):
        raise InvalidInputError("wilson_interval needs 0 <= correct <= n, element-wise")
    safe = np.where(m > 0, m, 1.0)
    p = k / safe
    z2 = z * z
    denom = 1 + z2 / safe
    centre = (p + z2 / (2 * safe)) / denom
    half = z / denom * np.sqrt(p * (1 - p) / safe + z2 / (4 * safe * safe))
    low = np.where(m > 0, np.clip(centre - half, 0.0, 1.0), 0.0)
    high = np.where(m > 0, np.clip(centre + half, 0.0, 1.0), 1.0)
    return low, high


def gold_accuracy(answers: pd.DataFrame, gold: pd.Series) -> pd.DataFrame:
    """Per-worker accuracy on gold tasks, with a Wilson 95% interval.

    Returns one row per worker in `answers` (sorted by worker), columns ``worker,
    n_gold, correct, accuracy, ci_low, ci_high``. Workers who answered no gold task
    have ``n_gold == 0``, accuracy NaN and the interval [0, 1].
    """
    data = validate_answers(answers)
    checked = validate_known(gold)
    if checked is None:
        raise InvalidInputError("gold labels are required (a Series task -> label)")
    truth = data["task"].map(checked)
    on_gold = truth.notna()
    hit = (data["label"].astype(object) == truth.astype(object)) & on_gold
    frame = pd.DataFrame(
        {"worker": data["worker"], "n_gold": on_gold.astype(int), "correct": hit.astype(int)}
    )
    table = frame.groupby("worker", sort=True).sum().reset_index()
    n_gold = table["n_gold"].to_numpy()
    correct = table["correct"].to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = np.where(n_gold > 0, correct / np.maximum(n_gold, 1), math.nan)
    low, high = wilson_interval(correct, n_gold)
    table["accuracy"] = accuracy
    table["ci_low"] = low
    table["ci_high"] = high
    return table[["worker", "n_gold", "correct", "accuracy", "ci_low", "ci_high"]]
