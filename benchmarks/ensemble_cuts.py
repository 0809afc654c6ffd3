"""Ensemble size and decision-cut rules for `bench train`, compared offline.

Trains `--members` networks per seed with the bench preset (`BENCH_CONFIG`; the first
three with the seeds a 3-member bench run uses, the rest with seeds of their own),
stores each member's test-time-augmented logits on the val and test splits in
`--store`, then for ensembles of the first 1, 3, 5 and 8 members fits the temperature
on val and scores the test split with five binary cuts chosen on val:

- `fixed_tol`: best balanced accuracy, cuts within 0.005 of it fall back to the one
  nearest 0.5 (the preset before 2026-12-06);
- `one_se`: the same within one standard error of the best (`calibration.ONE_SE`),
  nearest 0.5 (the preset on 2026-12-06);
- `one_se_prior`: within one standard error, nearest the prevalence of class 1 on val
  (balanced accuracy's own cut for calibrated probabilities; the preset since);
- `argmax`: 0.5;
- `bagged`: the median over 200 bootstrap resamples of val of the `fixed_tol` cut.

Prints one line per (ensemble size) with the means over seeds, then the per-seed rows.
Stored logits are reused, so a second run only scores.

    python benchmarks/ensemble_cuts.py --dataset breastmnist --seeds 0 1 2 3 4 5 --members 8
    python benchmarks/ensemble_cuts.py --dataset pneumoniamnist --seeds 0 1 2 --members 5
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path

import numpy as np

from medloop.ingest.medmnist import load_medmnist
from medloop.learning.bench import BENCH_CONFIG
from medloop.learning.calibration import (
    ONE_SE,
    apply_temperature,
    choose_threshold,
    fit_temperature,
)
from medloop.learning.metrics import classification_metrics
from medloop.learning.train import train_classifier
from medloop.types import Split

SIZES = (1, 3, 5, 8)


def collect(dataset: str, seed: int, members: int, store: Path) -> Path:
    """Each member's val and test logits for one seed (trained once, then read back)."""
    path = store / f"{dataset}-{seed}.npz"
    if path.exists() and np.load(path)["val"].shape[0] >= members:
        return path
    data = load_medmnist(dataset, data_dir=Path(os.environ["MEDLOOP_DATA_DIR"]), progress=False)
    train, val, test = (data.splits[s] for s in (Split.TRAIN, Split.VAL, Split.TEST))
    vals, tests = [], []
    for i in range(members):
        member_seed = 3 * seed + i if i < 3 else 1000 + 10 * seed + i
        config = dataclasses.replace(BENCH_CONFIG, seed=member_seed)
        model = train_classifier(
            train.images, train.labels, val.images, val.labels,
            n_classes=data.n_classes, config=config,
        )  # fmt: skip
        vals.append(model.predict_logits(val.images))
        tests.append(model.predict_logits(test.images))
        print(f"{dataset} seed {seed}: member {i + 1}/{members} trained", flush=True)
    np.savez(path, val=np.stack(vals), test=np.stack(tests), yv=val.labels, yt=test.labels)
    return path


def bagged_cut(proba: np.ndarray, y: np.ndarray, *, draws: int = 200) -> float:
    rng = np.random.default_rng(0)
    cuts = []
    for _ in range(draws):
        rows = rng.integers(0, len(y), len(y))
        if np.unique(y[rows]).size == 2:
            cuts.append(
                choose_threshold(
                    proba[rows], y[rows], criterion="balanced", tolerance=0.005, anchor=0.5
                )
            )
    return float(np.median(cuts))


def score(path: Path, size: int) -> dict[str, float]:
    stored = np.load(path)
    val_logits, test_logits = stored["val"][:size].mean(0), stored["test"][:size].mean(0)
    y_val, y_test = stored["yv"].reshape(-1), stored["yt"].reshape(-1)
    temperature = fit_temperature(val_logits, y_val)
    p_val = apply_temperature(val_logits, temperature)
    p_test = apply_temperature(test_logits, temperature)
    cuts = {
        "fixed_tol": choose_threshold(
            p_val, y_val, criterion="balanced", tolerance=0.005, anchor=0.5
        ),
        "one_se": choose_threshold(
            p_val, y_val, criterion="balanced", tolerance=ONE_SE, anchor=0.5
        ),
        "one_se_prior": choose_threshold(p_val, y_val, criterion="balanced", tolerance=ONE_SE),
        "argmax": 0.5,
        "bagged": bagged_cut(p_val, y_val),
    }
    row = {"auc": classification_metrics(p_test, y_test)["auc"]}
    for rule, cut in cuts.items():
        row[rule] = float(np.mean((p_test[:, 1] >= cut).astype(int) == y_test))
        row[f"{rule}_cut"] = cut
    row["best_possible"] = max(
        float(np.mean((p_test[:, 1] >= t).astype(int) == y_test)) for t in np.unique(p_test[:, 1])
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--members", type=int, default=5)
    parser.add_argument("--store", type=Path, default=Path("runs/ensemble_cuts"))
    args = parser.parse_args()
    args.store.mkdir(parents=True, exist_ok=True)
    paths = [collect(args.dataset, seed, args.members, args.store) for seed in args.seeds]
    rules = ("fixed_tol", "one_se", "one_se_prior", "argmax", "bagged")
    for size in (s for s in SIZES if s <= args.members):
        rows = [score(path, size) for path in paths]
        means = {k: np.mean([r[k] for r in rows]) for k in ("auc", *rules, "best_possible")}
        print(
            f"{args.dataset} {size} member(s), {len(rows)} seeds: test AUC {means['auc']:.4f}; "
            + "; ".join(f"ACC {rule} {means[rule]:.4f}" for rule in rules)
            + f"; best cut on test {means['best_possible']:.4f}"
        )
        for seed, row in zip(args.seeds, rows, strict=True):
            cells = ", ".join(
                f"{rule} {row[rule]:.4f} (cut {row[rule + '_cut']:.3f})" for rule in rules
            )
            print(f"    seed {seed}: AUC {row['auc']:.4f}; {cells}")


if __name__ == "__main__":
    main()
