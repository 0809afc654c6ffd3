"""Data-parallel training in several processes (torch.distributed, gloo backend, CPU).

Started by torchrun, every process runs `train_classifier` on its share of each epoch
(`medloop.learning.hooks`: DistributedSampler, DistributedDataParallel, rank 0 decides
early stopping); only rank 0 writes the checkpoint and its training report::

    torchrun --standalone --nproc_per_node 2 -m medloop.learning.distributed \\
        --dataset pneumoniamnist --output models/ddp.pt --config '{"max_epochs": 10}'

Data is a MedMNIST set (``--dataset``, looked up in MEDLOOP_DATA_DIR or ``--data-dir``)
or any ``.npz`` with the same keys (``--npz``: train_images, train_labels, val_images,
val_labels and optionally test_images, test_labels; labels (N, L) of 0/1 make it
multi-label, like ChestMNIST, which trains in `TrainConfig.multi_label` mode). Each rank
prints one JSON line (rank, world size, its share of the training set, a checksum of its
final weights).
With ``--nproc_per_node 1`` (or plain ``python -m``) it is ordinary training.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from medloop.exceptions import InvalidInputError, MedloopError
from medloop.learning.hooks import rank_and_world
from medloop.learning.train import TrainConfig, TrainedClassifier, available_cores, train_classifier

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


def load_arrays(
    *, npz: Path | None, dataset: str | None, data_dir: Path | None, limit: int | None
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], int, bool]:
    """Images and labels per split ("train", "val", optional "test"), the class (or
    label) count, and whether the set is multi-label: labels (N, L) of 0/1 with L > 1
    (ChestMNIST's layout), otherwise int classes (N,)."""
    if (npz is None) == (dataset is None):
        raise InvalidInputError("give exactly one of --npz and --dataset")
    if dataset is not None:
        from medloop.ingest.medmnist import load_medmnist

        data = load_medmnist(dataset, data_dir=data_dir, limit=limit, progress=False)
        splits = {s.value: (part.images, part.labels) for s, part in data.splits.items()}
        return splits, data.n_classes, data.multi_label
    assert npz is not None
    try:
        with np.load(npz) as arrays:
            splits = {
                name: (arrays[f"{name}_images"], np.asarray(arrays[f"{name}_labels"]))
                for name in SPLITS
                if f"{name}_images" in arrays
            }
    except (OSError, ValueError, KeyError) as exc:
        raise InvalidInputError(f"{npz}: not a readable npz with *_images/*_labels: {exc}") from exc
    if "train" not in splits or "val" not in splits:
        raise InvalidInputError(f"{npz} needs train_images, train_labels, val_images, val_labels")
    if limit is not None:
        splits = {k: (x[:limit], y[:limit]) for k, (x, y) in splits.items()}
    train_labels = splits["train"][1]
    if train_labels.ndim == 2 and train_labels.shape[1] > 1:
        widths = {y.shape[1] if y.ndim == 2 else 0 for _, y in splits.values()}
        if widths != {train_labels.shape[1]}:
            raise InvalidInputError(f"{npz}: every split needs {train_labels.shape[1]} labels")
        return splits, int(train_labels.shape[1]), True
    splits = {k: (x, y.reshape(-1)) for k, (x, y) in splits.items()}
    n_classes = int(max(int(y.max()) for _, y in splits.values() if y.size) + 1)
    return splits, max(n_classes, 2), False


def weights_checksum(model: TrainedClassifier) -> float:
    """Sum of all parameters: equal on every rank when the ranks stayed in step."""
    with torch.no_grad():
        return float(sum(p.double().sum() for p in model.network.parameters()))


def train_distributed(
    splits: dict[str, tuple[np.ndarray, np.ndarray]],
    *,
    n_classes: int,
    config: TrainConfig,
    checkpoint: Path,
) -> TrainedClassifier:
    """Train on `splits` in this process's share; rank 0 saves `checkpoint` and a report."""
    (x_train, y_train), (x_val, y_val) = splits["train"], splits["val"]
    model = train_classifier(
        x_train,
        y_train,
        x_val,
        y_val,
        n_classes=n_classes,
        config=config,
        checkpoint_path=checkpoint,
    )
    if rank_and_world()[0] == 0:
        from medloop.learning.report import write_training_report

        name = "test" if "test" in splits else "val"
        images, labels = splits[name]
        write_training_report(
            model, checkpoint, probabilities=model.predict_proba(images), labels=labels, split=name
        )
    return model


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m medloop.learning.distributed",
        description="Data-parallel training under torchrun (gloo, CPU).",
    )
    parser.add_argument("--npz", type=Path, help="npz with train/val[/test]_images and _labels")
    parser.add_argument("--dataset", help="MedMNIST 2D dataset, e.g. pneumoniamnist")
    parser.add_argument("--data-dir", type=Path, default=None, help="folder of MedMNIST npz")
    parser.add_argument("--output", type=Path, required=True, help="checkpoint to write (.pt)")
    parser.add_argument("--config", default=None, help="TrainConfig overrides as JSON")
    parser.add_argument("--limit", type=int, default=None, help="first N rows per split")
    return parser


def _config(text: str | None, *, world: int) -> TrainConfig:
    overrides: dict[str, Any] = json.loads(text) if text else {}
    if not isinstance(overrides, dict):
        raise InvalidInputError("--config must be a JSON object of TrainConfig fields")
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise InvalidInputError(f"unknown TrainConfig field(s) {unknown}")
    overrides.setdefault("num_threads", max(1, available_cores() // world))
    return TrainConfig(**overrides)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point for torchrun (or a single process); returns the exit status."""
    args = _parser().parse_args(argv)
    launched = "RANK" in os.environ and "WORLD_SIZE" in os.environ
    if launched:
        dist.init_process_group(backend="gloo")
    try:
        rank, world = rank_and_world()
        logging.basicConfig(level=logging.INFO, format=f"%(levelname)s rank {rank}: %(message)s")
        data_dir = args.data_dir or (
            Path(os.environ["MEDLOOP_DATA_DIR"]) if os.environ.get("MEDLOOP_DATA_DIR") else None
        )
        splits, n_classes, multi_label = load_arrays(
            npz=args.npz, dataset=args.dataset, data_dir=data_dir, limit=args.limit
        )
        # The data decides, as in `medloop bench train`.
        config = dataclasses.replace(_config(args.config, world=world), multi_label=multi_label)
        model = train_distributed(
            splits, n_classes=n_classes, config=config, checkpoint=args.output
        )
        n_train = len(splits["train"][1])
        line = {
            "rank": rank,
            "world_size": world,
            "n_train": n_train,
            "n_train_rank": -(-n_train // world),
            "epochs": len(model.history),
            "best_epoch": model.best_epoch,
            "val_auc": model.metrics.get("val_auc"),
            "checksum": weights_checksum(model),
            "checkpoint": str(args.output) if rank == 0 else None,
        }
        print(json.dumps(line), flush=True)
        if launched:  # every rank done (rank 0 saved the checkpoint) before any tears down
            dist.barrier()
    except MedloopError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    finally:
        if launched:
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
