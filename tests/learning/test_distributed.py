"""DDP: two torchrun processes train one model in step; rank 0 alone writes it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_train import separable

from medloop.exceptions import InvalidInputError
from medloop.learning.distributed import load_arrays
from medloop.learning.train import TrainConfig, TrainedClassifier, train_classifier

CONFIG = {"max_epochs": 1, "batch_size": 16, "num_threads": 1}


@pytest.fixture
def npz(tmp_path: Path) -> Path:
    x, y = separable(64, 0)
    xv, yv = separable(16, 1)
    xt, yt = separable(16, 2)
    path = tmp_path / "data.npz"
    np.savez(
        path,
        train_images=x,
        train_labels=y[:, None],  # MedMNIST-style (N, 1) labels
        val_images=xv,
        val_labels=yv,
        test_images=xt,
        test_labels=yt,
    )
    return path


def multi_label(n: int, seed: int, size: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """Three findings per image, each present or not: label j brightens band j."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, size=(n, 3))
    images = rng.integers(0, 60, size=(n, size, size)).astype(np.uint8)
    band = size // 3
    for j in range(3):
        images[labels[:, j] == 1, j * band : (j + 1) * band] += 180
    return images, labels


def torchrun() -> str:
    found = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.skip("torchrun is not installed next to this Python")
    return found


def test_two_processes_train_one_model(npz: Path, tmp_path: Path) -> None:
    checkpoint = tmp_path / "out" / "ddp.pt"
    command = [
        torchrun(),
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "medloop.learning.distributed",
        "--npz",
        str(npz),
        "--output",
        str(checkpoint),
        "--config",
        json.dumps(CONFIG),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert sorted(line["rank"] for line in lines) == [0, 1]
    assert {line["world_size"] for line in lines} == {2}
    assert {line["n_train_rank"] for line in lines} == {32}  # each rank saw half an epoch
    assert lines[0]["checksum"] == pytest.approx(lines[1]["checksum"], rel=1e-9)  # in step
    assert [line["checkpoint"] for line in sorted(lines, key=lambda r: r["rank"])] == [
        str(checkpoint),
        None,
    ]
    # rank 0 alone wrote the checkpoint and its report; it loads and predicts
    assert sorted(p.name for p in checkpoint.parent.iterdir()) == sorted(
        f"ddp.{name}"
        for name in (
            "pt",
            "metrics.json",
            "learning_curve.png",
            "roc.png",
            "calibration.png",
            "confusion.png",
        )
    )
    model = TrainedClassifier.load(checkpoint)
    assert json.loads(checkpoint.with_suffix(".metrics.json").read_text())["split"] == "test"
    images, _ = separable(8, 3)
    assert model.predict_proba(images).shape == (8, 2)
    # the same network as one process learns: same layers, shapes and settings
    x, y = separable(64, 0)
    xv, yv = separable(16, 1)
    single = train_classifier(x, y, xv, yv, n_classes=2, config=TrainConfig(**CONFIG))
    ddp_state, single_state = model.network.state_dict(), single.network.state_dict()
    assert list(ddp_state) == list(single_state)
    assert all(ddp_state[k].shape == single_state[k].shape for k in single_state)
    assert model.config == single.config
    assert model.image_size == single.image_size == (12, 12)
    assert len(model.history) == len(single.history) == 1


def test_two_processes_train_a_multi_label_model(tmp_path: Path) -> None:
    """(N, L) labels of 0/1 train in multi-label mode under DDP, as `bench train` does."""
    path = tmp_path / "chest.npz"
    (x, y), (xv, yv), (xt, yt) = (multi_label(n, s) for n, s in ((64, 0), (24, 1), (16, 2)))
    np.savez(path, train_images=x, train_labels=y, val_images=xv, val_labels=yv,
             test_images=xt, test_labels=yt)  # fmt: skip
    checkpoint = tmp_path / "chest.pt"
    command = [torchrun(), "--standalone", "--nproc_per_node", "2", "-m",
               "medloop.learning.distributed", "--npz", str(path), "--output",
               str(checkpoint), "--config", json.dumps(CONFIG)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert {line["n_train_rank"] for line in lines} == {32}
    assert lines[0]["checksum"] == pytest.approx(lines[1]["checksum"], rel=1e-9)
    model = TrainedClassifier.load(checkpoint)
    assert model.config.multi_label and model.n_classes == 3
    assert model.predict_proba(xt).shape == (16, 3)
    report = json.loads(checkpoint.with_suffix(".metrics.json").read_text())
    assert report["split"] == "test"


def test_single_process_runs_without_torchrun(
    npz: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from medloop.learning.distributed import main

    checkpoint = tmp_path / "one.pt"
    status = main(["--npz", str(npz), "--output", str(checkpoint), "--config", json.dumps(CONFIG)])
    assert status == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["world_size"] == 1 and line["n_train_rank"] == 64
    assert TrainedClassifier.load(checkpoint).n_classes == 2


def test_bad_data_is_a_clear_error(npz: Path, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="exactly one"):
        load_arrays(npz=None, dataset=None, data_dir=None, limit=None)
    partial = tmp_path / "partial.npz"
    np.savez(partial, train_images=np.zeros((2, 4, 4), np.uint8), train_labels=np.zeros(2))
    with pytest.raises(InvalidInputError, match="val_images"):
        load_arrays(npz=partial, dataset=None, data_dir=None, limit=None)
    splits, n_classes, is_multi_label = load_arrays(npz=npz, dataset=None, data_dir=None, limit=10)
    assert n_classes == 2 and not is_multi_label and splits["train"][0].shape == (10, 12, 12)
    assert splits["train"][1].shape == (10,)
    ragged = tmp_path / "ragged.npz"
    (x, y), (xv, yv) = multi_label(8, 0), multi_label(8, 1)
    np.savez(ragged, train_images=x, train_labels=y, val_images=xv, val_labels=yv[:, :2])
    with pytest.raises(InvalidInputError, match="every split needs 3 labels"):
        load_arrays(npz=ragged, dataset=None, data_dir=None, limit=None)
