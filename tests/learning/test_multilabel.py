"""Multi-label MedMNIST (ChestMNIST layout): loading, training, scoring, refusal by the loop."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from cli_support import run
from medloop import workflows
from medloop.cli import app
from medloop.config import Settings
from medloop.exceptions import InvalidInputError
from medloop.ingest.medmnist import MEDMNIST_2D, load_medmnist
from medloop.learning.al_bench import run_active_learning
from medloop.learning.bench import bench_train, predictions_frame
from medloop.learning.calibration import (
    choose_label_thresholds,
    decide_labels,
    fit_label_temperature,
)
from medloop.learning.inference import export_torchscript
from medloop.learning.metrics import multilabel_metrics
from medloop.learning.train import TrainConfig, TrainedClassifier, train_classifier
from medloop.types import Split
from medloop.workflows.predict import load_model

N_LABELS = 14
# a high learning rate: 14 labels are learnt from a few hundred images in a few epochs
TINY = TrainConfig(
    max_epochs=6, patience=6, batch_size=16, learning_rate=1e-2, tta=1, network="cnn_small"
)


def blobs(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """28x28 grey noise; label k is set when a bright 5x5 blob sits in cell k of a 4x4 grid."""
    labels = (rng.random((n, N_LABELS)) < 0.3).astype(np.uint8)
    images = rng.integers(0, 60, size=(n, 28, 28)).astype(np.uint8)
    for i, k in zip(*np.nonzero(labels), strict=True):
        top, left = 7 * (k // 4) + 1, 7 * (k % 4) + 1
        images[i, top : top + 5, left : left + 5] += 180
    return images, labels


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 260), ("val", 120), ("test", 150)):
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = blobs(n, rng)
    folder = tmp_path_factory.mktemp("chest")
    np.savez(folder / "chestmnist.npz", **arrays)
    return folder


def test_loader_gives_one_row_of_labels_per_image(data_dir: Path) -> None:
    data = load_medmnist("chestmnist", data_dir=data_dir, download=False, limit=100)
    assert data.multi_label and data.n_classes == N_LABELS
    assert data.classes == list(MEDMNIST_2D["chestmnist"].classes)
    train = data.splits[Split.TRAIN]
    assert train.labels.shape == (100, N_LABELS) and train.labels.dtype == np.int64
    truth = np.load(data_dir / "chestmnist.npz")["train_labels"]
    np.testing.assert_array_equal(train.labels, truth[train.rows])


def test_single_label_consumers_refuse_multi_label_sets(
    data_dir: Path,
    home: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(InvalidInputError, match=r"multi-label.*single choice"):
        load_medmnist("chestmnist", data_dir=data_dir, require_single_label=True)
    # an official multi-label name is refused before any download is tried
    with pytest.raises(InvalidInputError, match="multi-label"):
        load_medmnist("chestmnist", data_dir=home / "empty", require_single_label=True)
    ws = workflows.Workspace.open(Settings(home=home, data_dir=data_dir))
    try:
        with pytest.raises(InvalidInputError, match="cannot go into a project"):
            workflows.ingest_medmnist(ws, name="chestmnist", limit=20)
    finally:
        ws.close()
    with pytest.raises(InvalidInputError, match="multi-label"):
        run_active_learning(
            "chestmnist",
            data_dir=data_dir,
            strategies=["random"],
            budgets=[10],
            seeds=[0],
            config=TINY,
            limit=40,
        )
    monkeypatch.setenv("MEDLOOP_DATA_DIR", str(data_dir))
    code, _, err = run(monkeypatch, capsys, "ingest", "medmnist", "chestmnist")
    assert code != 0 and "multi-label" in err


def test_metrics_thresholds_and_temperature_known_answers() -> None:
    proba = np.array([[0.9, 0.2], [0.1, 0.7], [0.6, 0.4]])
    y = np.array([[1, 0], [0, 1], [0, 1]])
    scores = multilabel_metrics(proba, y)
    assert scores["auc"] == pytest.approx((1.0 + 1.0) / 2)
    assert scores["acc"] == pytest.approx((2 / 3 + 2 / 3) / 2)
    cuts = choose_label_thresholds(proba, y)
    np.testing.assert_allclose(cuts, [0.75, 0.3])
    assert multilabel_metrics(proba, y, thresholds=cuts)["acc"] == 1.0
    np.testing.assert_array_equal(decide_labels(proba, cuts), y)
    np.testing.assert_array_equal(decide_labels(proba, None), proba >= 0.5)
    # confident and always right: a low temperature; confident and half wrong: a high one
    logits = np.array([[4.0, -4.0], [-4.0, 4.0]] * 4)
    assert fit_label_temperature(logits, (logits > 0).astype(int)) < 0.2
    assert fit_label_temperature(logits, np.tile([[1, 1], [0, 0]], (4, 1))) > 10.0
    with pytest.raises(InvalidInputError, match="0 or 1"):
        multilabel_metrics(proba, y * 2)


def test_multi_label_training_learns_and_round_trips(data_dir: Path, tmp_path: Path) -> None:
    data = load_medmnist("chestmnist", data_dir=data_dir, download=False)
    train, val, test = (data.splits[s] for s in (Split.TRAIN, Split.VAL, Split.TEST))
    config = dataclasses.replace(TINY, multi_label=True)
    with pytest.raises(InvalidInputError, match="multi_label=True"):
        train_classifier(train.images, train.labels, val.images, val.labels, n_classes=14)
    model = train_classifier(
        train.images, train.labels, val.images, val.labels, n_classes=N_LABELS, config=config
    )
    proba = model.predict_proba(test.images)
    assert proba.shape == (len(test), N_LABELS)
    assert not np.allclose(proba.sum(axis=1), 1.0)  # sigmoids, not a softmax
    assert multilabel_metrics(proba, test.labels)["auc"] > 0.7
    assert model.metrics["val_auc"] > 0.7
    assert model.label_thresholds is not None and model.label_thresholds.shape == (N_LABELS,)
    assert model.predict(test.images).shape == (len(test), N_LABELS)
    model.save(tmp_path / "chest.pt")
    again = TrainedClassifier.load(tmp_path / "chest.pt")
    assert again.config.multi_label
    np.testing.assert_array_equal(again.label_thresholds, model.label_thresholds)
    torch.testing.assert_close(
        torch.from_numpy(again.predict_proba(test.images)), torch.from_numpy(proba)
    )
    with pytest.raises(InvalidInputError, match="multi-label"):
        export_torchscript(again, tmp_path / "chest.ts")
    with pytest.raises(InvalidInputError, match="multi-label model"):
        load_model(str(tmp_path / "chest.pt"))


def test_bench_train_on_chestmnist_layout(data_dir: Path, tmp_path: Path) -> None:
    csv, out = tmp_path / "pred.csv", tmp_path / "run"
    result = bench_train(
        "chestmnist",
        data_dir=data_dir,
        config=TINY,
        predictions=csv,
        output_dir=out,
        limit=200,
        members=1,
    )
    assert result["dataset"] == "chestmnist" and result["n_train"] == 200
    assert result["test_auc"] > 0.7
    assert len(result["threshold"]) == N_LABELS
    assert 0.0 <= result["test_acc_at_0.5"] <= 1.0
    assert result["test_acc_argmax"] == result["test_acc_at_0.5"]
    frame = pd.read_csv(csv, keep_default_na=False, dtype={"label": str})
    assert list(frame.columns) == ["index", "label", *[f"p{k}" for k in range(N_LABELS)]]
    assert len(frame) == 150
    decided = np.zeros((len(frame), N_LABELS), dtype=np.int64)
    for i, text in enumerate(frame["label"]):
        decided[i, [int(k) for k in text.split("|") if k]] = 1
    truth = np.load(data_dir / "chestmnist.npz")["test_labels"][frame["index"]]
    assert result["test_acc"] == pytest.approx(np.mean(decided == truth), abs=1e-4)
    metrics = json.loads((out / "chestmnist.metrics.json").read_text())
    assert metrics["multi_label"] and len(metrics["per_label_auc"]) == N_LABELS
    for plot in ("learning_curve", "roc", "calibration"):
        assert (out / f"chestmnist.{plot}.png").stat().st_size > 1000
    assert not (out / "chestmnist.confusion.png").exists()


def test_predictions_frame_joins_positive_labels() -> None:
    frame = predictions_frame(
        np.array([[0.9, 0.1, 0.8], [0.2, 0.3, 0.1]]), np.array([[1, 0, 1], [0, 0, 0]])
    )
    assert frame["label"].tolist() == ["0|2", ""]
    assert list(frame.columns) == ["index", "label", "p0", "p1", "p2"]


def test_cli_bench_train_multi_label(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDLOOP_DATA_DIR", str(data_dir))
    config = json.dumps({"max_epochs": 2, "batch_size": 32, "network": "cnn_small", "tta": 1})
    command = ["bench", "train", "--dataset", "chestmnist", "--json", "--config", config]
    result = CliRunner().invoke(app, [*command, "--members", "1", "--limit", "60"])
    assert result.exit_code == 0, result.output
    row = json.loads(result.output.strip().splitlines()[-1])
    assert row["dataset"] == "chestmnist" and row["epochs"] == 2
    assert {"test_auc", "test_acc", "test_acc_at_0.5"} <= set(row)
