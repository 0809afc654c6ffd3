"""Deep ensembles: the same network trained from several seeds, logits averaged.

Averaging the (test-time-augmented) logits of independently trained members is the
simplest reliable way to gain accuracy and calibration from more compute
(Lakshminarayanan et al., NeurIPS 2017). The ensemble gets one softmax temperature and
one binary decision threshold of its own, fitted on the validation split exactly as a
single model's are (`medloop.learning.calibration`).

>>> ensemble = train_ensemble(x, y, x_val, y_val, n_classes=2, members=3)  # doctest: +SKIP
>>> ensemble.predict_proba(x_test).shape                                   # doctest: +SKIP
(624, 2)
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medloop.exceptions import InvalidInputError
from medloop.learning.calibration import apply_temperature
from medloop.learning.train import TrainConfig, TrainedClassifier, fit_decision, train_classifier

logger = logging.getLogger(__name__)


class EnsembleClassifier:
    """Classifiers trained alike from different seeds; predicts from their mean logits."""

    def __init__(
        self,
        members: Sequence[TrainedClassifier],
        *,
        temperature: float = 1.0,
        threshold: float = 0.5,
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
        """Calibrated class probabilities (N, K) from the mean logits."""
        return apply_temperature(
            self.predict_logits(images, batch_size=batch_size), self.temperature
        )

    def decide(self, probabilities: np.ndarray) -> np.ndarray:
        """Classes (N,): the ensemble's threshold on p(class 1) if binary, else argmax."""
        proba = np.asarray(probabilities, dtype=np.float64)
        if self.n_classes == 2:
            return (proba[:, 1] >= self.threshold).astype(np.int64)
        return proba.argmax(axis=1).astype(np.int64)

    def predict(self, images: np.ndarray, *, batch_size: int = 512) -> np.ndarray:
        """Predicted classes (N,)."""
        return self.decide(self.predict_proba(images, batch_size=batch_size))

    def calibrate(self, val_images: np.ndarray, val_labels: np.ndarray) -> None:
        """Fit the ensemble's temperature and binary threshold on validation data."""
        if not (self.config.calibrate or self.config.tune_threshold):
            return
        y_val = np.asarray(val_labels, dtype=np.int64).reshape(-1)
        self.temperature, self.threshold = fit_decision(
            self.predict_logits(val_images), y_val, n_classes=self.n_classes, config=self.config
        )

    def save(self, path: Path) -> list[Path]:
        """Write each member as its own checkpoint `<stem>.member<i>.pt` beside `path`."""
        path = Path(path)
        written = []
        for i, member in enumerate(self.members):
            target = path.with_name(f"{path.stem}.member{i}{path.suffix or '.pt'}")
            member.save(target)
            written.append(target)
        return written


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
    on_member: Callable[[int, TrainedClassifier], None] | None = None,
    **train_kwargs: Any,
) -> EnsembleClassifier:
    """Train `members` copies of `config` (seeds from `member_seeds`) and calibrate the
    ensemble on the validation split. `config.max_seconds`, if set, bounds each member."""
    if members < 1:
        raise InvalidInputError(f"members must be >= 1; got {members}")
    trained = []
    for i, seed in enumerate(member_seeds(config.seed, members)):
        model = train_classifier(
            train_images,
            train_targets,
            val_images,
            val_labels,
            n_classes=n_classes,
            config=dataclasses.replace(config, seed=seed),
            **train_kwargs,
        )
        logger.info("ensemble member %d/%d trained (seed %d)", i + 1, members, seed)
        trained.append(model)
        if on_member is not None:
            on_member(i, model)
    ensemble = EnsembleClassifier(trained)
    ensemble.calibrate(val_images, val_labels)
    return ensemble
