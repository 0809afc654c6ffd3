"""Learning from crowds: train on simulated lay answers, compare with the reference labels.

Every PneumoniaMNIST training image gets answers from 3 distinct simulated lay
annotators (a crowd of 30 whose accuracies are drawn around 0.7, with per-person
confusion matrices). The classifier (the bench preset with `--members` networks, 1 by
default) is trained on:

- `reference`: the dataset's reference labels (the ceiling);
- `majority`: the majority vote of the 3 answers, as hard labels;
- `consensus`: the aggregator's posteriors as soft labels (default: medloop's
  recommended method);
- `consensus_marginal`: the noise-adaptation loss (`TrainConfig(loss="marginal")`) on
  the likelihood of each item's answers under the aggregator's fitted crowd model
  (its posteriors divided by its class priors).

Prints one JSON object per (mode, seed) with the test AUC/accuracy and the accuracy of
the training targets against the reference labels, then one summary object per mode.

    python benchmarks/learning_from_crowds.py --seeds 0 1 2 [--jobs 9] [--threads 1]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from medloop.aggregation import DEFAULT_METHOD, MajorityVote, make_aggregator
from medloop.annotation.simulate import SimulatedCrowd
from medloop.ingest.medmnist import load_medmnist
from medloop.learning.bench import BENCH_CONFIG
from medloop.learning.ensemble import train_ensemble
from medloop.learning.metrics import classification_metrics
from medloop.types import Split

MODES = ("reference", "majority", "consensus", "consensus_marginal")


def crowd_targets(
    labels: np.ndarray, *, mode: str, seed: int, method: str, redundancy: int = 3
) -> np.ndarray:
    """Training targets (N, 2) for `mode` from a simulated crowd answering every item."""
    targets = np.zeros((len(labels), 2))
    if mode == "reference":
        targets[np.arange(len(labels)), labels] = 1.0
        return targets
    crowd = SimulatedCrowd(30, n_classes=2, accuracy_mean=0.7, seed=seed)
    answers = crowd.answer(np.arange(len(labels)), labels, redundancy=redundancy)
    aggregator = MajorityVote() if mode == "majority" else make_aggregator(method)
    proba = aggregator.fit_predict_proba(answers).reindex(columns=[0, 1], fill_value=0.0)
    ordered = proba.loc[np.arange(len(labels))].to_numpy()
    if mode == "majority":
        targets[np.arange(len(labels)), ordered.argmax(axis=1)] = 1.0
        return targets
    if mode == "consensus_marginal":
        priors = getattr(aggregator, "priors_", None)
        if priors is None:
            raise SystemExit(f"{method} has no class priors; use dawid_skene")
        likelihood = ordered / priors.reindex([0, 1]).to_numpy()
        return likelihood / likelihood.sum(axis=1, keepdims=True)
    return ordered


def run(job: dict[str, Any]) -> dict[str, Any]:
    """Train one (mode, seed) and score it on the test split."""
    dataset = load_medmnist("pneumoniamnist", data_dir=job["data_dir"], progress=False)
    train, val, test = (dataset.splits[s] for s in (Split.TRAIN, Split.VAL, Split.TEST))
    targets = crowd_targets(train.labels, mode=job["mode"], seed=job["seed"], method=job["method"])
    loss = "marginal" if job["mode"] == "consensus_marginal" else "cross_entropy"
    config = dataclasses.replace(
        BENCH_CONFIG, seed=job["seed"], num_threads=job["threads"], loss=loss
    )
    model = train_ensemble(
        train.images,
        targets,
        val.images,
        val.labels,
        n_classes=2,
        members=job["members"],
        config=config,
    )
    proba = model.predict_proba(test.images)
    scores = classification_metrics(proba, test.labels)
    return {
        "mode": job["mode"],
        "method": job["method"] if job["mode"].startswith("consensus") else None,
        "seed": job["seed"],
        "target_accuracy": round(float(np.mean(targets.argmax(axis=1) == train.labels)), 4),
        "test_auc": round(scores["auc"], 4),
        "test_acc": round(float(np.mean(model.decide(proba) == test.labels)), 4),
        "members": job["members"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--method", default=str(DEFAULT_METHOD), help="aggregator for consensus")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per job")
    parser.add_argument("--members", type=int, default=1, help="networks per model (ensemble)")
    default_dir = os.environ.get("MEDLOOP_DATA_DIR", "../shared/data/medmnist")
    parser.add_argument("--data-dir", type=Path, default=Path(default_dir))
    args = parser.parse_args()
    jobs = [
        {
            "mode": mode,
            "seed": seed,
            "method": args.method,
            "threads": args.threads,
            "members": args.members,
            "data_dir": args.data_dir,
        }
        for mode in args.modes.split(",")
        for seed in args.seeds
    ]
    with ProcessPoolExecutor(max_workers=args.jobs, max_tasks_per_child=1) as pool:
        results = []
        for result in pool.map(run, jobs):
            print(json.dumps(result), flush=True)
            results.append(result)
    for mode in dict.fromkeys(r["mode"] for r in results):
        rows = [r for r in results if r["mode"] == mode]
        summary = {
            key: round(float(np.mean([r[key] for r in rows])), 4)
            for key in ("target_accuracy", "test_auc", "test_acc")
        }
        print(json.dumps({"summary": True, "mode": mode, "seeds": len(rows), **summary}))


if __name__ == "__main__":
    main()
