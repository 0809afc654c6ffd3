"""Deep ensembles: the same network trained from several seeds, logits averaged.

Averaging the (test-time-augmented) logits of independently trained members is the
simplest reliable way to gain accuracy and calibration from more compute
(Lakshminarayanan et al., NeurIPS 2017). The ensemble gets one softmax temperature and
one binary decision threshold of its own, fitted on the validation split exactly as a
single model's are (`medloop.learning.calibration`). `save` writes the whole ensemble
(members' weights and configs, temperature, threshold) to one checkpoint file;
`load_checkpoint` reads it, or a single classifier's checkpoint, back.

>>> ensemble = train_ensemble(x, y, x_val, y_val, n_classes=2, members=3)  # doctest: +SKIP
>>> ensemble.predict_proba(x_test).shape                                   # doctest: +SKIP
(624, 2)
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medloop.exceptions import InvalidInputError
from medloop.learning.calibration import calibrated_probabilities, decide_classes
from medloop.learning.train import (
    CHECKPOINT_FORMAT,
    TrainConfig,
    TrainedClassifier,
    check_label_thresholds,
    fit_decision,
    fit_label_decision,
    read_checkpoint,
    train_classifier,
    write_checkpoint,
)

logger = logging.getLogger(__name__)

#: The `kind` of an ensemble checkpoint (a single classifier's is "classifier").
ENSEMBLE_KIND = "ensemble"


class EnsembleClassifier:
    """Classifiers trained alike from different seeds; predicts from their mean logits."""

    def __init__(
        self,
        members: Sequence[TrainedClassifier],
        *,
        temperature: float = 1.0,
        threshold: float = 0.5,
        label_thresholds: np.ndarray | list[float] | None = None,
    ) -> None:
        if not members:
            raise InvalidInputError("an ensemble needs at least one member")
        if len({m.n_classes for m in members}) != 1:
            raise InvalidInputError("ensemble members disagree on the number of classes")
        if not temperature > 0 or not 0.0 < threshold < 1.0:
            raise InvalidInputError("temperature must be > 0 and threshold in (0, 1)")
        self.members = list(members)
        self.temperature = float(temperature)
        self.threshold = float(threshold)
        #: Multi-label ensembles only: one decision cut per label (None: 0.5 each).
        self.label_thresholds = check_label_thresholds(
            label_thresholds, n_labels=self.members[0].n_classes
        )

    @property
    def config(self) -> TrainConfig:
        """The members' training configuration (the first member's seed)."""
        return self.members[0].config

    @property
    def n_classes(self) -> int:
        return self.members[0].n_classes

    @property
    def n_parameters(self) -> int:
        """Trainable parameters of all members together."""
        return sum(m.n_parameters for m in self.members)

    @property
    def history(self) -> list[dict[str, float]]:
        """The first member's per-epoch history (for learning-curve plots)."""
        return self.members[0].history

    @property
    def best_epoch(self) -> int:
        return self.members[0].best_epoch

    @property
    def in_channels(self) -> int:
        return self.members[0].in_channels

    @property
    def image_size(self) -> tuple[int, int] | None:
        """(H, W) of the training images (the members share their training data)."""
        return self.members[0].image_size

    @property
    def metrics(self) -> dict[str, float]:
        """Validation metrics averaged over members (keys every member reports)."""
        keys = set.intersection(*(set(m.metrics) for m in self.members))
        return {k: float(np.mean([m.metrics[k] for m in self.members])) for k in sorted(keys)}

    def predict_logits(self, images: np.ndarray, *, batch_size: int = 512) -> np.ndarray:
        """Mean of the members' raw logits (N, K)."""
        return np.mean(
            [m.predict_logits(images, batch_size=batch_size) for m in self.members], axis=0
        )

    def predict_proba(self, images: np.ndarray, *, batch_size: int = 512) -> np.ndarray:
        """Calibrated class probabilities (N, K) from the mean logits (multi-label:
        per-label sigmoids (N, L))."""
        return calibrated_probabilities(
            self.predict_logits(images, batch_size=batch_size),
            self.temperature,
            multi_label=self.config.multi_label,
        )

    def decide(self, probabilities: np.ndarray) -> np.ndarray:
        """Classes (N,): the ensemble's threshold on p(class 1) if binary, else argmax
        (multi-label: 0/1 (N, L) from `label_thresholds`)."""
        return decide_classes(
            probabilities,
            threshold=self.threshold,
            label_thresholds=self.label_thresholds,
            multi_label=self.config.multi_label,
        )

    def predict(self, images: np.ndarray, *, batch_size: int = 512) -> np.ndarray:
        """Predicted classes (N,)."""
        return self.decide(self.predict_proba(images, batch_size=batch_size))

    def calibrate(self, val_images: np.ndarray, val_labels: np.ndarray) -> None:
        """Fit the ensemble's temperature and binary threshold on validation data."""
        if not (self.config.calibrate or self.config.tune_threshold):
            return
        if self.config.multi_label:
            self.temperature, self.label_thresholds = fit_label_decision(
                self.predict_logits(val_images), np.asarray(val_labels), config=self.config
            )
            return
        y_val = np.asarray(val_labels, dtype=np.int64).reshape(-1)
        self.temperature, self.threshold = fit_decision(
            self.predict_logits(val_images), y_val, n_classes=self.n_classes, config=self.config
        )

    def to_payload(self) -> dict[str, Any]:
        """The members' checkpoint payloads plus the ensemble's own temperature and cuts."""
        return {
            "format": CHECKPOINT_FORMAT,
            "kind": ENSEMBLE_KIND,
            "members": [m.to_payload() for m in self.members],
            "temperature": self.temperature,
            "threshold": self.threshold,
            "label_thresholds": (
                None if self.label_thresholds is None else self.label_thresholds.tolist()
            ),
        }

    @classmethod
    def from_payload(cls, payload: dict[str, Any], *, source: Path) -> EnsembleClassifier:
        """Rebuild an ensemble from `to_payload`'s data (read from `source`)."""
        members = payload.get("members")
        if payload.get("kind") != ENSEMBLE_KIND or not isinstance(members, list):
            raise InvalidInputError(f"{source} is not a medloop ensemble checkpoint")
        if not all(isinstance(m, dict) for m in members):
            raise InvalidInputError(f"{source} is not a medloop ensemble checkpoint: bad members")
        loaded = [TrainedClassifier.from_payload(m, source=source) for m in members]
        try:
            ensemble = cls(
                loaded,
                temperature=float(payload["temperature"]),
                threshold=float(payload["threshold"]),
                label_thresholds=payload.get("label_thresholds"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInputError(
                f"{source} is not a medloop ensemble checkpoint: {exc}"
            ) from exc
        return ensemble

    def save(self, path: Path) -> None:
        """Write the whole ensemble to one checkpoint file `path` (atomically)."""
        write_checkpoint(self.to_payload(), Path(path))
        logger.info("saved ensemble checkpoint %s (%d members)", path, len(self.members))

    @classmethod
    def load(cls, path: Path) -> EnsembleClassifier:
        """Rebuild an ensemble saved with `save` (weights only; no code is unpickled)."""
        return cls.from_payload(read_checkpoint(path), source=Path(path))


def member_seeds(seed: int, members: int) -> list[int]:
    """Seeds of an ensemble's members: disjoint for different `seed`s.

    >>> member_seeds(0, 3), member_seeds(1, 3)
    ([0, 1, 2], [3, 4, 5])
    """
    return [seed * members + i for i in range(members)]


def train_ensemble(
    train_images: np.ndarray,
    train_targets: np.ndarray,
    val_images: np.ndarray,
    val_labels: np.ndarray,
    *,
    n_classes: int,
    members: int = 3,
    config: TrainConfig = TrainConfig(),
    seconds: float | None = None,
    on_member: Callable[[int, TrainedClassifier], None] | None = None,
    **train_kwargs: Any,
) -> EnsembleClassifier:
    """Train up to `members` copies of `config` (seeds from `member_seeds`) and calibrate
    the ensemble on the validation split. `config.max_seconds`, if set, bounds each member.

    `seconds`, if set, is the time budget of the whole ensemble. Members are trained one
    after another, each allowed what is left of it, and another is started only while
    what is left is at least what the slowest member so far took: a small set gets all
    its members, a large one fewer networks trained longer. At equal compute one network
    trained 3x longer beat 3 shorter ones (benchmarks/README.md), so a large set should
    not split its budget."""
    if members < 1:
        raise InvalidInputError(f"members must be >= 1; got {members}")
    if seconds is not None and not seconds > 0:
        raise InvalidInputError(f"seconds must be positive; got {seconds}")
    started = time.perf_counter()
    took: list[float] = []
    trained: list[TrainedClassifier] = []
    for i, seed in enumerate(member_seeds(config.seed, members)):
        member_config = dataclasses.replace(config, seed=seed)
        if seconds is not None:
            left = seconds - (time.perf_counter() - started)
            if took and left < max(took):
                logger.info(
                    "ensemble: %.0f s of %.0f s left, less than a member takes; %d members",
                    left,
                    seconds,
                    len(trained),
                )
                break
            cap = left if config.max_seconds is None else min(left, config.max_seconds)
            member_config = dataclasses.replace(member_config, max_seconds=cap)
        member_started = time.perf_counter()
        model = train_classifier(
            train_images,
            train_targets,
            val_images,
            val_labels,
            n_classes=n_classes,
            config=member_config,
            **train_kwargs,
        )
        took.append(time.perf_counter() - member_started)
        logger.info("ensemble member %d/%d trained (seed %d)", i + 1, members, seed)
        trained.append(model)
        if on_member is not None:
            on_member(i, model)
    ensemble = EnsembleClassifier(trained)
    ensemble.calibrate(val_images, val_labels)
    return ensemble


#: What `load_checkpoint` returns: one trained network or a deep ensemble of them.
Classifier = TrainedClassifier | EnsembleClassifier


def load_checkpoint(path: Path) -> Classifier:
    """The classifier or ensemble a checkpoint file holds (`save` of either writes one)."""
    payload = read_checkpoint(path)
    if payload.get("kind") == ENSEMBLE_KIND:
        return EnsembleClassifier.from_payload(payload, source=Path(path))
    return TrainedClassifier.from_payload(payload, source=Path(path))
