"""Train on random PneumoniaMNIST subsets (optionally with flipped, softened labels).

Prints one JSON object per run: test AUC/accuracy on the official test split.

    python benchmarks/train_subsets.py --n 200 500 1000 --seeds 0 1 2 [--noise 0.25 --soft 0.75]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from medloop.learning import TrainConfig, classification_metrics, train_classifier


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, nargs="+", default=[1000], help="training set sizes")
    parser.add_argument("--noise", type=float, default=0.0, help="fraction of labels flipped")
    parser.add_argument("--soft", type=float, default=1.0, help="mass on the given label")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--config", default="{}", help="TrainConfig overrides as JSON")
    default_dir = os.environ.get("MEDLOOP_DATA_DIR", "../shared/data/medmnist")
    parser.add_argument("--data", type=Path, default=Path(default_dir) / "pneumoniamnist.npz")
    args = parser.parse_args()

    data = np.load(args.data)
    images, labels = data["train_images"], data["train_labels"][:, 0]
    for n in args.n:
        for seed in args.seeds:
            rng = np.random.default_rng(1000 + seed)
            rows = rng.permutation(len(images))[: min(n, len(images))]
            given = labels[rows].copy()
            flipped = rng.random(len(given)) < args.noise
            given[flipped] = 1 - given[flipped]
            targets = np.full((len(given), 2), 1.0 - args.soft)
            targets[np.arange(len(given)), given] = args.soft
            overrides = json.loads(args.config)
            config = TrainConfig(**{"seed": seed, **overrides})
            started = time.perf_counter()
            model = train_classifier(
                images[rows],
                targets,
                data["val_images"],
                data["val_labels"][:, 0],
                n_classes=2,
                config=config,
            )
            seconds = time.perf_counter() - started
            test = classification_metrics(
                model.predict_proba(data["test_images"]), data["test_labels"][:, 0]
            )
            print(
                json.dumps(
                    {
                        "n": len(given),
                        "noise": args.noise,
                        "soft": args.soft,
                        "seed": seed,
                        "config": overrides,
                        "test_auc": round(test["auc"], 4),
                        "test_acc": round(test["acc"], 4),
                        "epochs": len(model.history),
                        "best_epoch": model.best_epoch,
                        "seconds": round(seconds, 1),
                    }
                ),
                flush=True,
            )


if __name__ == "__main__":
    main()
