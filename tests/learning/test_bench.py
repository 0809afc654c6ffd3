"""`bench train` / `bench al` on a small synthetic MedMNIST-layout file (RGB, 3 classes)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from medloop.cli import app
from medloop.exceptions import InvalidInputError
from medloop.learning.al_bench import (
    learning_curve_area,
    plot_curves,
    run_active_learning,
    summarise,
)
from medloop.learning.bench import bench_train
from medloop.learning.ensemble import EnsembleClassifier, load_checkpoint
from medloop.learning.train import TrainConfig

TINY = TrainConfig(max_epochs=3, patience=3, batch_size=16, tta=3)


def _split(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Class k is bright in colour channel k."""
    labels = rng.integers(0, 3, size=n)
    images = rng.integers(0, 50, size=(n, 8, 8, 3)).astype(np.uint8)
    images[np.arange(n), :, :, labels] += 180
    return images, labels[:, None]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 60), ("val", 24), ("test", 30)):
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = _split(n, rng)
    folder = tmp_path_factory.mktemp("medmnist")
    np.savez(folder / "toycolourmnist.npz", **arrays)
    return folder


def test_bench_train_scores_and_writes_predictions_and_artefacts(
    data_dir: Path, tmp_path: Path
) -> None:
    csv, out = tmp_path / "pred.csv", tmp_path / "run"
    result = bench_train(
        "toycolourmnist",
        data_dir=data_dir,
        config=TINY,
        predictions=csv,
        output_dir=out,
        members=2,
    )
    for key in ("dataset", "test_auc", "test_acc", "train_seconds", "epochs", "params"):
        assert key in result
    assert result["images_per_second"] > 0
    assert result["dataset"] == "toycolourmnist"
    assert result["test_auc"] > 0.9
    frame = pd.read_csv(csv)
    assert list(frame.columns) == ["index", "label", "p0", "p1", "p2"]
    assert frame["index"].tolist() == list(range(30))
    np.testing.assert_allclose(frame[["p0", "p1", "p2"]].sum(axis=1), 1.0)
    truth = np.load(data_dir / "toycolourmnist.npz")["test_labels"][:, 0]
    assert result["test_acc"] == pytest.approx(np.mean(frame["label"] == truth), abs=1e-4)
    names = {p.name for p in out.iterdir()}
    assert {"toycolourmnist.pt", "toycolourmnist.metrics.json"} <= names
    assert not any(".member" in name for name in names)
    assert result["checkpoints"] == [str(out / "toycolourmnist.pt")]
    saved = load_checkpoint(out / "toycolourmnist.pt")
    assert isinstance(saved, EnsembleClassifier) and len(saved.members) == 2
    test_images = np.load(data_dir / "toycolourmnist.npz")["test_images"]
    np.testing.assert_allclose(
        saved.predict_proba(test_images), frame[["p0", "p1", "p2"]], atol=1e-6
    )
    assert result["members"] == 2 and result["epochs"] == 2 * TINY.max_epochs
    for plot in ("learning_curve", "roc", "calibration", "confusion"):
        assert (out / f"toycolourmnist.{plot}.png").stat().st_size > 1000
    metrics = json.loads((out / "toycolourmnist.metrics.json").read_text())
    assert np.asarray(metrics["confusion_matrix"]).sum() == 30
    assert len(metrics["history"]) == TINY.max_epochs  # the first member's curve


def test_cli_bench_train_prints_one_json_object(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEDLOOP_DATA_DIR", str(data_dir))
    config = json.dumps({"max_epochs": 2, "batch_size": 16, "network": "cnn_small", "tta": 1})
    command = ["bench", "train", "--dataset", "toycolourmnist", "--json", "--config", config]
    result = CliRunner().invoke(app, [*command, "--members", "1"])
    assert result.exit_code == 0, result.output
    row = json.loads(result.output.strip().splitlines()[-1])
    assert row["epochs"] == 2 and row["network"] == "cnn_small" and row["members"] == 1
    bad = CliRunner().invoke(
        app, ["bench", "train", "--dataset", "toycolourmnist", "--config", '{"epochs": 2}']
    )
    assert bad.exit_code != 0


def test_learning_curve_area_is_a_mean_over_budgets() -> None:
    assert learning_curve_area([0, 10], [0.5, 1.0]) == pytest.approx(0.75)
    assert learning_curve_area([5], [0.7]) == 0.7


def test_active_learning_benchmark_records_every_step(data_dir: Path, tmp_path: Path) -> None:
    # One pass per epoch: these check the records, not how good the models are.
    config = TrainConfig(
        max_epochs=1, patience=1, batch_size=8, network="cnn_small", min_epoch_samples=0
    )
    records = run_active_learning(
        "toycolourmnist",
        data_dir=data_dir,
        strategies=["random", "hybrid"],
        budgets=[10, 16],
        seeds=[0],
        config=config,
    )
    assert [(r["strategy"], r["budget"]) for r in records] == [
        ("random", 10),
        ("random", 16),
        ("hybrid", 10),
        ("hybrid", 16),
    ]
    # Both strategies start from the same random draw, hence the same first model.
    assert records[0]["test_auc"] == records[2]["test_auc"]
    summary = summarise(records)
    assert [s["strategy"] for s in summary] == ["random", "hybrid"]
    assert summary[0]["budgets"] == [10, 16] and summary[0]["alc"] is not None
    assert plot_curves(summary, tmp_path / "al.png", title="toy").stat().st_size > 1000


def test_active_learning_in_worker_processes_matches_one_process(data_dir: Path) -> None:
    config = TrainConfig(
        max_epochs=1,
        patience=1,
        batch_size=8,
        network="cnn_small",
        num_threads=1,
        min_epoch_samples=0,
    )
    kwargs = {
        "data_dir": data_dir,
        "strategies": ["random", "entropy"],
        "budgets": [10, 14],
        "seeds": [0, 1],
        "config": config,
    }
    seen: list[dict[str, object]] = []
    parallel = run_active_learning("toycolourmnist", jobs=2, on_result=seen.append, **kwargs)  # type: ignore[arg-type]
    assert parallel == run_active_learning("toycolourmnist", **kwargs)  # type: ignore[arg-type]
    assert seen == parallel
    assert [(r["seed"], r["strategy"]) for r in parallel[::2]] == [
        (0, "random"),
        (0, "entropy"),
        (1, "random"),
        (1, "entropy"),
    ]
    with pytest.raises(InvalidInputError):
        run_active_learning("toycolourmnist", jobs=0, **kwargs)  # type: ignore[arg-type]
