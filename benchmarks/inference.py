"""CPU inference benchmark: eager vs TorchScript vs dynamically quantised, one model, one run.

Trains a classifier on a MedMNIST training subset (or loads ``--checkpoint``, a
classifier's or a `bench train --output` ensemble's), then times calibrated
probabilities for the test split (tiled to ``--images``) with
`medloop.learning.inference.compare_runtimes`: the variants take turns, best of
``--repeats``. Prints one JSON object per variant (images/s, speed-up over eager, the
largest probability difference from eager, serialized size).

    .venv/bin/python benchmarks/inference.py --dataset pneumoniamnist --threads 1
    .venv/bin/python benchmarks/inference.py --network resnet18 --n-train 500 --epochs 1
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

import numpy as np
import torch

from medloop.ingest.medmnist import load_medmnist
from medloop.learning.ensemble import load_checkpoint
from medloop.learning.inference import compare_runtimes
from medloop.learning.train import TrainConfig, train_classifier
from medloop.types import Split

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "medmnist"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="pneumoniamnist")
    parser.add_argument("--checkpoint", type=Path, default=None, help="use this model instead")
    parser.add_argument("--network", default="cnn")
    parser.add_argument("--n-train", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--images", type=int, default=2048, help="test images, tiled")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    data_dir = Path(os.environ.get("MEDLOOP_DATA_DIR") or DEFAULT_DATA)
    data = load_medmnist(args.dataset, data_dir=data_dir, progress=False)
    train, val, test = (data.splits[s] for s in (Split.TRAIN, Split.VAL, Split.TEST))
    if args.checkpoint is not None:
        model = load_checkpoint(args.checkpoint)
    else:
        rng = np.random.default_rng(args.seed)
        rows = rng.choice(len(train), size=min(args.n_train, len(train)), replace=False)
        config = TrainConfig(
            network=args.network,
            max_epochs=args.epochs,
            patience=args.epochs,
            seed=args.seed,
            num_threads=args.threads,
        )
        model = train_classifier(
            train.images[rows],
            train.labels[rows],
            val.images,
            val.labels,
            n_classes=data.n_classes,
            config=config,
        )
    images = np.resize(test.images, (args.images, *test.images.shape[1:]))
    rows_out = compare_runtimes(
        model, images, batch_size=args.batch_size, repeats=args.repeats, threads=args.threads
    )
    for row in rows_out:
        row = {
            "dataset": args.dataset,
            "network": model.config.network,
            "torch": torch.__version__,
            **row,
        }
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
