"""TensorBoard: training writes per-epoch scalars when TrainConfig names a log dir."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_train import separable

from medloop.learning.train import TrainConfig, train_classifier

event_accumulator = pytest.importorskip(
    "tensorboard.backend.event_processing.event_accumulator",
    reason="the tensorboard package is not installed",
)


def test_training_writes_event_files(tmp_path: Path) -> None:
    x, y = separable(48, 0)
    xv, yv = separable(16, 1)
    logs = tmp_path / "tb"
    config = TrainConfig(max_epochs=2, patience=2, batch_size=16, num_threads=1, log_dir=str(logs))
    train_classifier(x, y, xv, yv, n_classes=2, config=config)
    assert list(logs.glob("events.out.tfevents.*"))
    events = event_accumulator.EventAccumulator(str(logs))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"loss/train", "loss/val", "val/auc", "val/acc", "learning_rate"} <= tags
    assert [e.step for e in events.Scalars("val/auc")] == [1, 2]
    rates = [e.value for e in events.Scalars("learning_rate")]
    assert rates[0] == pytest.approx(config.learning_rate)
    assert rates[1] < rates[0]  # cosine schedule


def test_no_log_dir_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    x, y = separable(32, 0)
    xv, yv = separable(16, 1)
    train_classifier(x, y, xv, yv, n_classes=2, config=TrainConfig(max_epochs=1, num_threads=1))
    assert not list(tmp_path.rglob("events.out.tfevents.*"))
