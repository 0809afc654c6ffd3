"""Train an image classifier on hard or soft (crowd posterior) labels, with early stopping.

>>> model = train_classifier(x_train, y_train, x_val, y_val, n_classes=2)  # doctest: +SKIP
>>> model.predict_proba(x_test)  # (N, 2)                                   # doctest: +SKIP
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import os
import pickle
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel

from medloop.exceptions import InvalidInputError, NotFoundError, UnknownOptionError
from medloop.learning.calibration import (
    THRESHOLD_CRITERIA,
    apply_label_temperature,
    apply_temperature,
    calibrated_probabilities,
    check_tolerance,
    choose_label_thresholds,
    choose_threshold,
    decide_classes,
    fit_label_temperature,
    fit_temperature,
)
from medloop.learning.data import (
    IMAGE,
    TARGET,
    TTA_VIEWS,
    WEIGHT,
    AugmentRanges,
    BatchAugment,
    images_to_tensor,
    make_dataset,
    make_loader,
    prepare_images,
    repeat_dataset,
    tta_views,
)
from medloop.learning.hooks import (
    TensorBoardLog,
    distributed_loader,
    rank0_decides,
    rank_and_world,
    sum_across,
    sync_buffers,
)
from medloop.learning.metrics import (
    check_labels,
    check_multilabels,
    check_probabilities,
    classification_metrics,
    multilabel_metrics,
)
from medloop.learning.networks import DEFAULT_NETWORK, build_network, last_linear

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 1
MONITORS = ("auc", "loss")
LOSSES = ("cross_entropy", "marginal")


@dataclass(frozen=True)
class TrainConfig:
    """How to train. The defaults are the measured fast-and-strong choice for 28x28 on CPU.

    Early stopping watches `monitor` on the validation set ("auc": validation AUC,
    falling back to validation loss when the validation set holds one class; "loss":
    validation cross-entropy) and stops after `patience` epochs without improvement;
    the best epoch's weights are kept. `max_seconds` bounds the wall time of training
    (checked before every batch). `num_threads` caps torch's CPU threads (default: all
    cores this process may use). `ema_decay` validates and keeps an exponential moving
    average of the weights (None: the raw weights). The learning rate follows a cosine
    schedule over `max_epochs` (AdamW), after `warmup_epochs` of linear warm-up.
    An epoch passes over the training set as many whole times (each shuffled) as it takes
    to draw at least `min_epoch_samples` images: the loop trains on a few hundred labels,
    and 150 images are 3 batches an epoch, too few steps for a network to learn before
    early stopping gives up (150 PneumoniaMNIST images, 6 seeds: test AUC 0.80-0.95,
    accuracy 0.64 without; 0.94-0.96 and 0.85 with 1024; benchmarks/README.md). 0: one
    pass.

    After training, on the validation set: `calibrate` fits a softmax temperature
    (changes confidence, never the ranking or the argmax), and `tune_threshold` picks
    the binary decision cut on p(class 1) that `TrainedClassifier.predict` uses,
    maximising `threshold_criterion` ("accuracy" or "balanced" accuracy); of cuts within
    `threshold_tolerance` of the best (a number, or "one_se": one standard error of the
    best cut's score), the one nearest the criterion's own cut for calibrated
    probabilities (0.5 for accuracy, the validation prevalence of class 1 for balanced
    accuracy; `calibration.choose_threshold`).
    `tta` > 1 averages the logits over that many fixed small shifts/zooms of each image
    at prediction time (no flips). `label_smoothing` mixes the targets with uniform.
    `augmentation` holds the ranges of the random training augmentation (`augment`).
    `loss` "cross_entropy" reads the targets as (soft) labels; "marginal" reads each
    target row as the likelihood of the item's crowd answers under each true class
    (e.g. an aggregator's posteriors divided by its class priors) and minimises
    -log sum_k p(k | x) L_k: a noise-adaptation layer whose per-item transition comes
    from the crowd model, so the network's own belief settles what the answers leave open.
    `log_dir` (None: off) receives TensorBoard scalars per epoch (`hooks.TensorBoardLog`).

    `multi_label` trains L independent binary labels (MedMNIST's ChestMNIST): targets
    and validation labels are 0/1 arrays (N, L), the loss is the binary cross-entropy
    with logits averaged over labels, probabilities are sigmoids, validation AUC and
    accuracy are means over labels, the temperature is one scalar fitted on the binary
    cross-entropy, and `tune_threshold` picks one cut per label maximising that label's
    validation accuracy (`threshold_criterion` is for single-label tasks: the accuracy
    per label is what MedMNIST reports).
    """

    network: str = DEFAULT_NETWORK
    max_epochs: int = 20
    patience: int = 5
    batch_size: int = 64
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    dropout: float = 0.2
    augment: bool = True
    ema_decay: float | None = 0.98
    monitor: str = "auc"
    seed: int = 0
    max_seconds: float | None = None
    num_threads: int | None = None
    warmup_epochs: int = 0
    min_epoch_samples: int = 1024
    label_smoothing: float = 0.0
    calibrate: bool = True
    tune_threshold: bool = True
    threshold_criterion: str = "accuracy"
    threshold_tolerance: float | str = 0.005
    tta: int = 1
    augmentation: AugmentRanges = dataclasses.field(default_factory=AugmentRanges)
    loss: str = "cross_entropy"
    log_dir: str | None = None
    multi_label: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.augmentation, dict):  # from a checkpoint or a JSON override
            object.__setattr__(self, "augmentation", AugmentRanges(**self.augmentation))
        if self.max_epochs < 1 or self.patience < 1 or self.batch_size < 2:
            raise InvalidInputError("max_epochs and patience must be >= 1, batch_size >= 2")
        if not (self.learning_rate > 0 and self.weight_decay >= 0):
            raise InvalidInputError("learning_rate must be > 0 and weight_decay >= 0")
        if self.loss not in LOSSES:
            raise UnknownOptionError(f"loss must be one of {list(LOSSES)}; got {self.loss!r}")
        if self.multi_label and self.loss != "cross_entropy":
            raise InvalidInputError("multi_label training uses the cross_entropy loss only")
        if self.monitor not in MONITORS:
            raise UnknownOptionError(
                f"monitor must be one of {list(MONITORS)}; got {self.monitor!r}"
            )
        if self.max_seconds is not None and self.max_seconds <= 0:
            raise InvalidInputError("max_seconds must be positive")
        if self.ema_decay is not None and not 0.0 < self.ema_decay < 1.0:
            raise InvalidInputError("ema_decay must lie in (0, 1) or be None")
        if self.num_threads is not None and self.num_threads < 1:
            raise InvalidInputError("num_threads must be >= 1")
        if self.warmup_epochs < 0 or self.warmup_epochs >= self.max_epochs:
            raise InvalidInputError("warmup_epochs must lie in [0, max_epochs)")
        if self.min_epoch_samples < 0:
            raise InvalidInputError("min_epoch_samples must be >= 0")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise InvalidInputError("label_smoothing must lie in [0, 1)")
        check_tolerance(self.threshold_tolerance)
        if self.threshold_criterion not in THRESHOLD_CRITERIA:
            raise UnknownOptionError(
                f"threshold_criterion must be one of {list(THRESHOLD_CRITERIA)}; "
                f"got {self.threshold_criterion!r}"
            )
        if not 1 <= self.tta <= len(TTA_VIEWS):
            raise InvalidInputError(f"tta must lie in [1, {len(TTA_VIEWS)}]")


def available_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


@contextmanager
def torch_threads(requested: int | None = None) -> Iterator[int]:
    """Run torch on at most `requested` threads (and never more than the cores available)."""
    previous = torch.get_num_threads()
    n = min(requested or available_cores(), available_cores())
    torch.set_num_threads(n)
    try:
        yield n
    finally:
        torch.set_num_threads(previous)


def channels_last(network: nn.Module) -> nn.Module:
    """Store conv weights channels-last: about 25% faster convolutions on CPU (oneDNN)."""
    return network.to(memory_format=torch.channels_last)  # type: ignore[call-overload]


class TrainedClassifier:
    """A trained network plus what is needed to use, save and reload it."""

    def __init__(
        self,
        network: nn.Module,
        *,
        config: TrainConfig,
        n_classes: int,
        in_channels: int,
        history: list[dict[str, float]] | None = None,
        best_epoch: int = 0,
        metrics: dict[str, float] | None = None,
        temperature: float = 1.0,
        threshold: float = 0.5,
        image_size: tuple[int, int] | None = None,
        label_thresholds: np.ndarray | list[float] | None = None,
    ) -> None:
        if not temperature > 0 or not 0.0 < threshold < 1.0:
            raise InvalidInputError("temperature must be > 0 and threshold in (0, 1)")
        self.network = channels_last(network).eval()
        self.config = config
        self.n_classes = n_classes
        self.in_channels = in_channels
        self.history = list(history or [])
        self.best_epoch = best_epoch
        self.metrics = dict(metrics or {})
        self.temperature = float(temperature)
        self.threshold = float(threshold)
        #: (H, W) of the training images; inputs of other sizes are resized to it.
        self.image_size = None if image_size is None else (int(image_size[0]), int(image_size[1]))
        #: Multi-label models only: one decision cut per label (None: 0.5 for each).
        self.label_thresholds = check_label_thresholds(label_thresholds, n_labels=n_classes)

    def _forward(
        self, images: np.ndarray, batch_size: int, *, embed: bool, tta: int = 1
    ) -> np.ndarray:
        if batch_size < 1:
            raise InvalidInputError("batch_size must be >= 1")
        if self.image_size is not None and tuple(images.shape[1:3]) != self.image_size:
            # the network pools adaptively and would take any size, but what it learnt
            # is at the training images' scale
            images = prepare_images(
                list(images), in_channels=self.in_channels, image_size=self.image_size
            )
        x = images_to_tensor(images, in_channels=self.in_channels)
        captured: list[torch.Tensor] = []
        hook = None
        if embed:
            hook = last_linear(self.network).register_forward_hook(
                lambda _m, inputs, _o: captured.append(inputs[0].detach())
            )
        outputs: list[torch.Tensor] = []
        self.network.eval()
        try:
            with torch_threads(self.config.num_threads), torch.no_grad():
                for start in range(0, x.shape[0], batch_size):
                    chunk = x[start : start + batch_size]
                    logits = [
                        self.network(view.contiguous(memory_format=torch.channels_last))
                        for view in tta_views(chunk, tta)
                    ]
                    outputs.append(torch.stack(logits).double().mean(dim=0))
        finally:
            if hook is not None:
                hook.remove()
        if embed:
            if not captured:
                return np.zeros((0, last_linear(self.network).in_features), dtype=np.float32)
            return torch.cat(captured).numpy()
        if not outputs:
            return np.zeros((0, self.n_classes), dtype=np.float64)
        return torch.cat(outputs).numpy()

    def predict_logits(self, images: np.ndarray, *, batch_size: int = 512) -> np.ndarray:
        """Raw logits (N, K), averaged over `config.tta` views, before temperature scaling."""
        return self._forward(images, batch_size, embed=False, tta=self.config.tta)

    def predict_proba(self, images: np.ndarray, *, batch_size: int = 512) -> np.ndarray:
        """Calibrated class probabilities (N, K) for uint8 images (N, H, W) or (N, H, W, C);
        for a multi-label model, independent label probabilities (sigmoids) (N, L)."""
        return calibrated_probabilities(
            self.predict_logits(images, batch_size=batch_size),
            self.temperature,
            multi_label=self.config.multi_label,
        )

    def predict(self, images: np.ndarray, *, batch_size: int = 512) -> np.ndarray:
        """Predicted classes (N,): p(class 1) >= `threshold` for binary tasks, else argmax;
        multi-label: 0/1 (N, L), each label's probability >= its cut."""
        return self.decide(self.predict_proba(images, batch_size=batch_size))

    def decide(self, probabilities: np.ndarray) -> np.ndarray:
        """Classes (N,) from this model's probabilities (N, K), using its threshold if binary
        (multi-label: 0/1 (N, L) from `label_thresholds`)."""
        return decide_classes(
            probabilities,
            threshold=self.threshold,
            label_thresholds=self.label_thresholds,
            multi_label=self.config.multi_label,
        )

    def embed(self, images: np.ndarray, *, batch_size: int = 512) -> np.ndarray:
        """The network's penultimate features (N, D), the input of its last linear layer."""
        return self._forward(images, batch_size, embed=True)

    @property
    def n_parameters(self) -> int:
        """Number of trainable parameters of the network."""
        return sum(p.numel() for p in self.network.parameters() if p.requires_grad)

    def to_payload(self) -> dict[str, Any]:
        """Weights, config, class count, history and metrics as plain torch-loadable data."""
        return {
            "format": CHECKPOINT_FORMAT,
            "kind": "classifier",
            "state_dict": self.network.state_dict(),
            "config": dataclasses.asdict(self.config),
            "n_classes": self.n_classes,
            "in_channels": self.in_channels,
            "history": self.history,
            "best_epoch": self.best_epoch,
            "metrics": self.metrics,
            "temperature": self.temperature,
            "threshold": self.threshold,
            "image_size": None if self.image_size is None else list(self.image_size),
            "label_thresholds": (
                None if self.label_thresholds is None else self.label_thresholds.tolist()
            ),
        }

    @classmethod
    def from_payload(cls, payload: dict[str, Any], *, source: Path) -> TrainedClassifier:
        """Rebuild a classifier from `to_payload`'s data (read from `source`)."""
        kind = payload.get("kind", "classifier")  # older checkpoints carry no kind
        if kind != "classifier":
            raise InvalidInputError(f"{source} holds a {kind!r} checkpoint, not one classifier")
        try:
            known = {f.name for f in dataclasses.fields(TrainConfig)}
            config = TrainConfig(**{k: v for k, v in payload["config"].items() if k in known})
            n_classes = int(payload["n_classes"])
            in_channels = int(payload["in_channels"])
            network = build_network(
                config.network,
                in_channels=in_channels,
                n_classes=n_classes,
                dropout=config.dropout,
            )
            network.load_state_dict(payload["state_dict"])
            return cls(
                network,
                config=config,
                n_classes=n_classes,
                in_channels=in_channels,
                history=list(payload.get("history", [])),
                best_epoch=int(payload.get("best_epoch", 0)),
                metrics=dict(payload.get("metrics", {})),
                temperature=float(payload.get("temperature", 1.0)),
                threshold=float(payload.get("threshold", 0.5)),
                image_size=payload.get("image_size"),
                label_thresholds=payload.get("label_thresholds"),
            )
        except (KeyError, RuntimeError, TypeError, ValueError, AttributeError) as exc:
            raise InvalidInputError(
                f"{source} is not a medloop classifier checkpoint: {exc}"
            ) from exc

    def save(self, path: Path) -> None:
        """Write weights, config, class count, history and metrics to `path` (atomically)."""
        write_checkpoint(self.to_payload(), Path(path))
        logger.info("saved classifier checkpoint %s", path)

    @classmethod
    def load(cls, path: Path) -> TrainedClassifier:
        """Rebuild a classifier saved with `save` (weights only; no code is unpickled)."""
        return cls.from_payload(read_checkpoint(path), source=Path(path))


def write_checkpoint(payload: dict[str, Any], path: Path) -> None:
    """`torch.save` `payload` to `path` through a temporary file, so readers never see half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


def read_checkpoint(path: Path) -> dict[str, Any]:
    """The dict a checkpoint file holds (weights only: no code is unpickled)."""
    path = Path(path)
    if not path.exists():
        raise NotFoundError(f"no checkpoint at {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    # what torch raises for truncated, empty, foreign-pickle and non-torch files (a CSV
    # file: IndexError)
    except (
        RuntimeError,
        LookupError,
        ValueError,
        EOFError,
        pickle.UnpicklingError,
        OSError,
    ) as exc:
        raise InvalidInputError(
            f"{path} is not a medloop checkpoint (it cannot be read as one)"
        ) from exc
    if not isinstance(payload, dict):
        raise InvalidInputError(
            f"{path} is not a medloop checkpoint (holds a {type(payload).__name__})"
        )
    return payload


def check_label_thresholds(
    thresholds: np.ndarray | list[float] | None, *, n_labels: int
) -> np.ndarray | None:
    """Per-label cuts as float64 (L,) in (0, 1), or None."""
    if thresholds is None:
        return None
    cuts = np.asarray(thresholds, dtype=np.float64)
    if cuts.shape != (n_labels,) or not np.all((cuts > 0.0) & (cuts < 1.0)):
        raise InvalidInputError(f"label_thresholds must be {n_labels} values in (0, 1)")
    return cuts


def _as_targets(
    targets: np.ndarray, *, n: int, n_classes: int, likelihoods: bool = False
) -> torch.Tensor:
    """Int labels (N,) or (N, 1), or soft labels (N, K), as float32 (N, K) distributions.
    With `likelihoods` (the marginal loss) a row need not sum to 1: it is any finite,
    non-negative likelihood with a positive sum, scaled to 1 (the loss ignores the scale)."""
    arr = np.asarray(targets)
    if arr.ndim == 2 and arr.shape[1] != 1:
        if arr.shape[0] != n:
            raise InvalidInputError(f"expected {n} targets (one per image), got {arr.shape[0]}")
        if arr.shape[1] != n_classes:
            raise InvalidInputError(
                f"soft targets have {arr.shape[1]} columns but n_classes is {n_classes}"
            )
        if likelihoods:
            values = np.asarray(arr, dtype=np.float64)
            if not np.isfinite(values).all() or (values < 0).any() or (values.sum(1) <= 0).any():
                raise InvalidInputError(
                    "likelihood targets must be finite, >= 0, with a positive sum per row"
                )
            arr = values / values.sum(axis=1, keepdims=True)
        soft = check_probabilities(arr, name="soft targets")
        soft = np.clip(soft, 0.0, None)
        return torch.from_numpy((soft / soft.sum(axis=1, keepdims=True)).astype(np.float32))
    labels = check_labels(arr, n_classes=n_classes, n=n)
    return F.one_hot(torch.from_numpy(labels), n_classes).float()


def _as_weights(weights: np.ndarray | None, *, n: int) -> torch.Tensor:
    if weights is None:
        return torch.ones(n, dtype=torch.float32)
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (n,):
        raise InvalidInputError(f"sample_weights must have shape ({n},); got {w.shape}")
    if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise InvalidInputError("sample_weights must be finite, >= 0 and not all zero")
    return torch.from_numpy((w / w.mean()).astype(np.float32))


def fit_decision(
    logits: np.ndarray, y_val: np.ndarray, *, n_classes: int, config: TrainConfig
) -> tuple[float, float]:
    """(temperature, binary threshold) fitted on validation logits, as `config` asks;
    (1.0, 0.5) for what it does not ask or when the validation set holds one class."""
    temperature, threshold = 1.0, 0.5
    if np.unique(y_val).size < 2:
        return temperature, threshold
    if config.calibrate:
        temperature = fit_temperature(logits, y_val)
    if config.tune_threshold and n_classes == 2:
        cut = choose_threshold(
            apply_temperature(logits, temperature),
            y_val,
            criterion=config.threshold_criterion,
            tolerance=config.threshold_tolerance,
        )
        threshold = float(np.clip(cut, 1e-6, 1 - 1e-6))
    return temperature, threshold


def fit_label_decision(
    logits: np.ndarray, y_val: np.ndarray, *, config: TrainConfig
) -> tuple[float, np.ndarray | None]:
    """Multi-label: (temperature, per-label thresholds) fitted on validation logits (N, L)
    and 0/1 labels (N, L), as `config` asks; (1.0, None) for what it does not ask or when
    every validation label is the same."""
    temperature: float = 1.0
    thresholds: np.ndarray | None = None
    if np.unique(y_val).size < 2:
        return temperature, thresholds
    if config.calibrate:
        temperature = fit_label_temperature(logits, y_val)
    if config.tune_threshold:
        cuts = choose_label_thresholds(
            apply_label_temperature(logits, temperature),
            y_val,
            tolerance=config.threshold_tolerance,
        )
        thresholds = np.clip(cuts, 1e-6, 1 - 1e-6)
    return temperature, thresholds


def _calibrate(model: TrainedClassifier, val_images: np.ndarray, y_val: np.ndarray) -> None:
    """Fit the temperature and the binary threshold on validation data (as configured)."""
    config = model.config
    if not (config.calibrate or config.tune_threshold) or np.unique(y_val).size < 2:
        return
    if config.multi_label:
        model.temperature, model.label_thresholds = fit_label_decision(
            model.predict_logits(val_images), y_val, config=config
        )
        model.metrics["temperature"] = model.temperature
        logger.info("calibrated: temperature %.3f, per-label thresholds", model.temperature)
        return
    model.temperature, model.threshold = fit_decision(
        model.predict_logits(val_images), y_val, n_classes=model.n_classes, config=config
    )
    model.metrics.update({"temperature": model.temperature, "threshold": model.threshold})
    logger.info("calibrated: temperature %.3f, threshold %.3f", model.temperature, model.threshold)


def _ema(network: nn.Module, decay: float | None) -> AveragedModel | None:
    """An exponential moving average of the weights (and batch-norm statistics).

    The decay warms up as min(decay, (1 + t) / (10 + t)) over the t-th update, so the
    average follows the network closely in the first steps of short runs.
    """
    if decay is None:
        return None

    def average(
        avg: torch.Tensor, current: torch.Tensor, count: torch.Tensor | int
    ) -> torch.Tensor:
        t = float(count)
        d = min(decay, (1.0 + t) / (10.0 + t))
        return avg * d + current * (1.0 - d)

    return AveragedModel(network, avg_fn=average, use_buffers=True)


def _soft_cross_entropy(
    logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor, smoothing: float = 0.0
) -> torch.Tensor:
    if smoothing > 0:
        targets = targets * (1.0 - smoothing) + smoothing / targets.shape[1]
    per_item = -(targets * F.log_softmax(logits, dim=1)).sum(dim=1)
    return (per_item * weights).mean()


def _binary_cross_entropy(
    logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor, smoothing: float = 0.0
) -> torch.Tensor:
    """Multi-label loss: per item, the mean over labels of the binary cross-entropy."""
    if smoothing > 0:
        targets = targets * (1.0 - smoothing) + smoothing / 2.0
    per_item = F.binary_cross_entropy_with_logits(logits, targets, reduction="none").mean(dim=1)
    return (per_item * weights).mean()


def _marginal_nll(
    logits: torch.Tensor, likelihoods: torch.Tensor, weights: torch.Tensor, _smoothing: float = 0.0
) -> torch.Tensor:
    """-log sum_k p(k | x) L_k per item: the crowd answers' likelihood under the model."""
    log_l = torch.log(likelihoods.clamp_min(1e-12))
    per_item = -torch.logsumexp(F.log_softmax(logits, dim=1) + log_l, dim=1)
    return (per_item * weights).mean()


def _schedule(optimizer: torch.optim.Optimizer, config: TrainConfig) -> Any:
    """Per-epoch learning rates: linear warm-up, then cosine decay to zero at `max_epochs`."""
    warm = config.warmup_epochs
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.max_epochs - warm)
    if warm == 0:
        return cosine
    ramp = torch.optim.lr_scheduler.LinearLR(
        optimizer, start_factor=1.0 / (warm + 1), total_iters=warm
    )
    return torch.optim.lr_scheduler.SequentialLR(optimizer, [ramp, cosine], milestones=[warm])


def _validation_scores(
    logits: torch.Tensor, y_val: np.ndarray, *, multi_label: bool
) -> tuple[float, dict[str, float]]:
    """Validation loss and metrics (auc, acc) of `logits`: softmax classes against class
    indices, or (multi-label) sigmoid labels against 0/1 rows."""
    target = torch.from_numpy(y_val)
    if multi_label:
        loss = F.binary_cross_entropy_with_logits(logits, target.float())
        return float(loss), multilabel_metrics(torch.sigmoid(logits.double()).numpy(), y_val)
    proba = torch.softmax(logits.double(), dim=1).numpy()
    scores = classification_metrics(proba / proba.sum(axis=1, keepdims=True), y_val)
    return float(F.cross_entropy(logits, target)), scores


def _out_of_time(started: float, config: TrainConfig) -> bool:
    """Whether training begun at `started` (perf_counter) has used `config.max_seconds`."""
    return config.max_seconds is not None and time.perf_counter() - started > config.max_seconds


def train_classifier(
    train_images: np.ndarray,
    train_targets: np.ndarray,
    val_images: np.ndarray,
    val_labels: np.ndarray,
    *,
    n_classes: int,
    config: TrainConfig = TrainConfig(),
    checkpoint_path: Path | None = None,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    sample_weights: np.ndarray | None = None,
) -> TrainedClassifier:
    """Train `config.network` on images with int or soft targets; keep the best epoch.

    `train_targets` is either int labels (N,) or soft labels (N, K) whose rows sum to
    1 (e.g. an aggregator's posteriors); the loss is the (optionally `sample_weights`
    weighted) soft cross-entropy. Validation uses hard `val_labels` (M,). Given the
    same inputs, config and thread count the result is reproducible; the global torch
    random state is left untouched. `on_epoch(epoch, record)` is called after every
    epoch with the `history` record (epoch, train_loss, val_loss, val_auc, val_acc,
    seconds). With `config.multi_label`, `n_classes` is the number of labels L and both
    `train_targets` and `val_labels` are 0/1 arrays (N, L) (see `TrainConfig`).
    """
    if n_classes < 2:
        raise InvalidInputError(f"n_classes must be >= 2; got {n_classes}")
    if not config.multi_label and np.ndim(val_labels) == 2 and np.shape(val_labels)[1] > 1:
        raise InvalidInputError(
            f"val_labels hold several labels per image (shape {np.shape(val_labels)}); "
            "set TrainConfig(multi_label=True) to train a multi-label model"
        )
    x_train = images_to_tensor(train_images)
    in_channels = int(x_train.shape[1])
    n = int(x_train.shape[0])
    if n < 2:
        raise InvalidInputError("need at least two training images")
    if config.multi_label:
        targets = torch.from_numpy(
            check_multilabels(train_targets, n_labels=n_classes, n=n).astype(np.float32)
        )
    else:
        targets = _as_targets(
            train_targets, n=n, n_classes=n_classes, likelihoods=config.loss == "marginal"
        )
    weights = _as_weights(sample_weights, n=n)
    x_val = images_to_tensor(val_images, in_channels=in_channels).contiguous(
        memory_format=torch.channels_last
    )
    if x_val.shape[0] == 0:
        raise InvalidInputError("need at least one validation image")
    if x_val.shape[2:] != x_train.shape[2:]:
        raise InvalidInputError(
            f"validation images are {tuple(x_val.shape[2:])}, training images "
            f"{tuple(x_train.shape[2:])}"
        )
    if config.multi_label:
        y_val = check_multilabels(val_labels, n_labels=n_classes, n=int(x_val.shape[0]))
    else:
        y_val = check_labels(val_labels, n_classes=n_classes, n=int(x_val.shape[0]))

    started = time.perf_counter()
    history: list[dict[str, float]] = []
    with torch_threads(config.num_threads) as threads, torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        network = build_network(
            config.network, in_channels=in_channels, n_classes=n_classes, dropout=config.dropout
        )
        network = channels_last(network)
        optimizer = torch.optim.AdamW(
            network.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
        )
        scheduler = _schedule(optimizer, config)
        dataset = repeat_dataset(
            make_dataset(x_train, targets, weights=weights), config.min_epoch_samples
        )
        rank, world = rank_and_world()
        if world == 1:
            loader = make_loader(
                dataset, batch_size=min(config.batch_size, n), shuffle=True, seed=config.seed
            )
            trained: nn.Module = network
        else:  # DDP: each rank takes its share of every batch; gradients are averaged
            loader = distributed_loader(
                dataset,
                batch_size=max(2, min(config.batch_size, n) // world),
                seed=config.seed,
                rank=rank,
                world=world,
            )
            trained = DistributedDataParallel(network)
        augment = BatchAugment(config.augmentation) if config.augment else None
        criterion = _marginal_nll if config.loss == "marginal" else _soft_cross_entropy
        if config.multi_label:
            criterion = _binary_cross_entropy
        aug_generator = torch.Generator().manual_seed(config.seed + 1 + 1000 * rank)
        tensorboard = TensorBoardLog(config.log_dir)
        logger.info(
            "training %s on %d images (%d classes, %d threads)",
            config.network,
            n,
            n_classes,
            threads,
        )
        best_score = (-math.inf, -math.inf)
        best_epoch = 0
        ema = _ema(network, config.ema_decay)
        evaluated = network if ema is None else ema.module
        best_state = copy.deepcopy(evaluated.state_dict())
        best_metrics: dict[str, float] = {}
        for epoch in range(1, config.max_epochs + 1):
            epoch_start = time.perf_counter()
            learning_rate = float(optimizer.param_groups[0]["lr"])
            if world > 1:
                loader.sampler.set_epoch(epoch)  # type: ignore[attr-defined]
            network.train()
            total, count = 0.0, 0.0
            for batch in loader:
                if world == 1 and _out_of_time(started, config):
                    break  # large sets: do not overrun the budget by most of an epoch
                images = batch[IMAGE]
                if augment is not None:
                    images = augment(images, generator=aug_generator)
                images = images.contiguous(memory_format=torch.channels_last)
                loss = criterion(
                    trained(images), batch[TARGET], batch[WEIGHT], config.label_smoothing
                )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if ema is not None:
                    ema.update_parameters(network)
                total += float(loss.detach()) * images.shape[0]
                count += images.shape[0]
            if count:  # no step when the time budget ran out before this epoch's first batch
                scheduler.step()
            sync_buffers(network, evaluated)
            total, count = sum_across(total, count)
            evaluated.eval()
            with torch.no_grad():
                logits = torch.cat([evaluated(chunk) for chunk in torch.split(x_val, 512)])
            val_loss, val = _validation_scores(logits, y_val, multi_label=config.multi_label)
            record = {
                "epoch": float(epoch),
                "train_loss": total / max(count, 1),
                "val_loss": val_loss,
                "val_auc": val["auc"],
                "val_acc": val["acc"],
                "seconds": time.perf_counter() - epoch_start,
            }
            history.append(record)
            logger.debug("epoch %d: %s", epoch, record)
            if on_epoch is not None:
                on_epoch(epoch, dict(record))
            tensorboard.epoch(epoch, record, learning_rate=learning_rate)
            # Higher is better; AUC ties (common on easy validation sets) go to lower loss.
            score = (-val_loss, 0.0)
            if config.monitor == "auc" and not math.isnan(val["auc"]):
                score = (val["auc"], -val_loss)
            patience_over = epoch - best_epoch >= config.patience
            out_of_time = _out_of_time(started, config)
            improved, patience_over, out_of_time = rank0_decides(
                score > best_score, patience_over, out_of_time
            )
            if improved:
                best_score, best_epoch = score, epoch
                best_state = copy.deepcopy(evaluated.state_dict())
                best_metrics = {"val_loss": val_loss, "val_auc": val["auc"], "val_acc": val["acc"]}
            elif patience_over:
                logger.info("early stop at epoch %d (best %d)", epoch, best_epoch)
                break
            if out_of_time:
                logger.info("stopping after %.1f s (max_seconds)", time.perf_counter() - started)
                break
        tensorboard.close()
        network.load_state_dict(best_state)
    best_metrics["seconds"] = time.perf_counter() - started
    best_metrics["best_epoch"] = float(best_epoch)
    model = TrainedClassifier(
        network,
        config=config,
        n_classes=n_classes,
        in_channels=in_channels,
        history=history,
        best_epoch=best_epoch,
        metrics=best_metrics,
        image_size=(int(x_train.shape[2]), int(x_train.shape[3])),
    )
    _calibrate(model, val_images, y_val)
    if checkpoint_path is not None and rank == 0:  # one writer under DDP
        model.save(Path(checkpoint_path))
    logger.info(
        "trained in %.1f s, best epoch %d: %s", best_metrics["seconds"], best_epoch, best_metrics
    )
    return model
