"""Active-learning benchmark: learning curves of acquisition strategies on a MedMNIST set.

For each seed and strategy: start from `budgets[0]` labels drawn at random (the same
draw for every strategy of a seed), train, score on the test split, let the strategy
pick the items that bring the labels up to the next budget (reference labels play the
oracle), retrain from scratch, and so on. Models are chosen on the validation split.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import logging
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from medloop.exceptions import InvalidInputError
from medloop.ingest.medmnist import load_medmnist
from medloop.learning.acquire import acquire
from medloop.learning.metrics import classification_metrics
from medloop.learning.train import TrainConfig, train_classifier
from medloop.types import Split, Strategy, look_up_option

logger = logging.getLogger(__name__)

AL_CONFIG = TrainConfig(max_epochs=15, patience=5, tta=1)


def learning_curve_area(budgets: Sequence[int], values: Sequence[float]) -> float:
    """Area under the curve (trapezoids) divided by the budget range: a mean value.

    >>> learning_curve_area([100, 200, 300], [0.8, 0.9, 0.9])
    0.875
    """
    b = np.asarray(budgets, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    if b.size != v.size or b.size == 0:
        raise InvalidInputError("budgets and values must be non-empty and equally long")
    if b.size == 1:
        return float(v[0])
    area = float(np.sum((v[1:] + v[:-1]) / 2.0 * np.diff(b)))
    return area / float(b[-1] - b[0])


def run_active_learning(
    name: str,
    *,
    data_dir: Path | None,
    strategies: Sequence[str],
    budgets: Sequence[int],
    seeds: Sequence[int],
    config: TrainConfig = AL_CONFIG,
    limit: int | None = None,
    on_result: Callable[[dict[str, Any]], None] | None = None,
    jobs: int = 1,
) -> list[dict[str, Any]]:
    """One record per (strategy, seed, budget): {strategy, seed, budget, test_auc, test_acc}.

    `jobs` > 1 runs the (seed, strategy) curves in that many worker processes (each its
    own `config.num_threads`); records come back in the same order as with one job.
    """
    chosen = [look_up_option(s, Strategy) for s in strategies]
    steps = [int(b) for b in budgets]
    if not steps or steps[0] < 2 or any(b <= a for a, b in itertools.pairwise(steps)):
        raise InvalidInputError("budgets must be increasing integers, the first >= 2")
    if jobs < 1:
        raise InvalidInputError(f"jobs must be >= 1; got {jobs}")
    curves = [
        _Curve(name, data_dir, limit, strategy, seed, steps, config)
        for seed in seeds
        for strategy in chosen
    ]
    records: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        mapper: Callable[..., Iterable[list[dict[str, Any]]]] = map
        if jobs > 1:
            pool = ProcessPoolExecutor(max_workers=jobs, max_tasks_per_child=1)
            mapper = stack.enter_context(pool).map
        for curve_records in mapper(_learning_curve, curves):
            records.extend(curve_records)
            for record in curve_records:
                if on_result is not None:
                    on_result(dict(record))
    return records


@dataclasses.dataclass(frozen=True)
class _Curve:
    """One learning curve to compute: a strategy on a dataset from one seed's start."""

    name: str
    data_dir: Path | None
    limit: int | None
    strategy: Strategy
    seed: int
    steps: list[int]
    config: TrainConfig


def _learning_curve(curve: _Curve) -> list[dict[str, Any]]:
    """Train, score and acquire up the budgets for one (strategy, seed)."""
    # acquisition scores one softmax distribution per image: single-label sets only
    dataset = load_medmnist(
        curve.name,
        data_dir=curve.data_dir,
        limit=curve.limit,
        progress=False,
        require_single_label=True,
    )
    train, val, test = (dataset.splits[s] for s in (Split.TRAIN, Split.VAL, Split.TEST))
    steps, seed = curve.steps, curve.seed
    if steps[-1] > len(train):
        raise InvalidInputError(f"largest budget {steps[-1]} exceeds {len(train)} train images")
    labelled = np.sort(np.random.default_rng(10_000 + seed).permutation(len(train))[: steps[0]])
    records: list[dict[str, Any]] = []
    for i, budget in enumerate(steps):
        model = train_classifier(
            train.images[labelled],
            train.labels[labelled],
            val.images,
            val.labels,
            n_classes=dataset.n_classes,
            config=dataclasses.replace(curve.config, seed=seed),
        )
        scores = classification_metrics(model.predict_proba(test.images), test.labels)
        records.append(
            {
                "dataset": dataset.name,
                "strategy": curve.strategy.value,
                "seed": seed,
                "budget": budget,
                "test_auc": round(scores["auc"], 4),
                "test_acc": round(scores["acc"], 4),
            }
        )
        if i + 1 == len(steps):
            break
        pool = np.setdiff1d(np.arange(len(train)), labelled)
        picked = acquire(
            model,
            train.images[pool],
            steps[i + 1] - budget,
            curve.strategy,
            labelled_images=train.images[labelled],
            seed=seed * 1000 + i,
        )
        labelled = np.sort(np.concatenate([labelled, pool[picked]]))
    logger.info("learning curve %s seed %d: %s", curve.strategy.value, seed, records)
    return records


def summarise(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per strategy: mean and spread (std over seeds) of test AUC at each budget, and the
    mean normalised area under the AUC learning curve."""
    out: list[dict[str, Any]] = []
    strategies = list(dict.fromkeys(r["strategy"] for r in records))
    for strategy in strategies:
        rows = [r for r in records if r["strategy"] == strategy]
        budgets = sorted({int(r["budget"]) for r in rows})
        seeds = sorted({int(r["seed"]) for r in rows})
        table = {(int(r["seed"]), int(r["budget"])): float(r["test_auc"]) for r in rows}
        mean = [float(np.mean([table[s, b] for s in seeds if (s, b) in table])) for b in budgets]
        std = [float(np.std([table[s, b] for s in seeds if (s, b) in table])) for b in budgets]
        areas = [
            learning_curve_area(budgets, [table[s, b] for b in budgets])
            for s in seeds
            if all((s, b) in table for b in budgets)
        ]
        out.append(
            {
                "strategy": strategy,
                "budgets": budgets,
                "mean_auc": [round(v, 4) for v in mean],
                "std_auc": [round(v, 4) for v in std],
                "alc": round(float(np.mean(areas)), 4) if areas else None,
                "seeds": len(seeds),
            }
        )
    return out


def plot_curves(summary: Sequence[dict[str, Any]], path: Path, *, title: str) -> Path:
    """Mean test AUC against labels per strategy, with a +-1 std band, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, ax = plt.subplots(figsize=(6, 4))
    for row in summary:
        b = np.asarray(row["budgets"])
        m, s = np.asarray(row["mean_auc"]), np.asarray(row["std_auc"])
        ax.plot(b, m, "o-", label=f"{row['strategy']} (ALC {row['alc']})")
        ax.fill_between(b, m - s, m + s, alpha=0.15)
    ax.set_xlabel("labelled images")
    ax.set_ylabel("test AUC")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
