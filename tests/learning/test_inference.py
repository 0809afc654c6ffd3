"""Fast inference: TorchScript export round trip, quantisation, image preparation."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from test_train import separable

from medloop.exceptions import InvalidInputError, NotFoundError
from medloop.learning.data import prepare_images
from medloop.learning.inference import (
    ScriptedClassifier,
    compare_runtimes,
    export_torchscript,
    quantize_linear,
)
from medloop.learning.train import TrainConfig, TrainedClassifier, train_classifier


@pytest.fixture(scope="module")
def model() -> TrainedClassifier:
    torch.set_num_threads(1)
    x, y = separable(64, 0)
    xv, yv = separable(32, 1)
    config = TrainConfig(max_epochs=2, batch_size=16, num_threads=1)
    return train_classifier(x, y, xv, yv, n_classes=2, config=config)


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
@pytest.mark.parametrize("quantize", [False, True])
def test_torchscript_export_round_trips(
    model: TrainedClassifier, tmp_path: Path, quantize: bool
) -> None:
    images, _ = separable(20, 2)
    path = export_torchscript(model, tmp_path / "m.ts", quantize=quantize)
    loaded = ScriptedClassifier.load(path)
    assert loaded.info["image_size"] == [12, 12]
    assert loaded.info["quantized"] is quantize
    assert loaded.info["threshold"] == pytest.approx(model.threshold)
    proba = loaded.predict_proba(images, batch_size=7)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(proba, model.predict_proba(images), atol=1e-2 if quantize else 1e-5)
    # torch alone can run the file: no medloop code is needed (dynamic quantisation
    # scales activations per batch, so there the batch size matters a little)
    plain = torch.jit.load(str(path))
    x = torch.from_numpy(images[:, None].astype(np.float32) / 255.0)
    np.testing.assert_allclose(plain(x).numpy(), proba, atol=1e-3 if quantize else 1e-6)


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_the_exported_file_averages_the_same_test_time_views(
    model: TrainedClassifier, tmp_path: Path
) -> None:
    """The temperature and cut were fitted on logits averaged over `tta` views: the file
    averages them too (it ran the bare network, 0.12 off with tta=4)."""
    images, _ = separable(20, 2)
    with_views = copy.copy(model)
    with_views.config = dataclasses.replace(model.config, tta=4)
    with_views.temperature = 100.0  # the toy problem's probabilities are all but 0 or 1
    assert np.abs(with_views.predict_logits(images) - model.predict_logits(images)).max() > 0.1
    loaded = ScriptedClassifier.load(export_torchscript(with_views, tmp_path / "m.ts"))
    assert loaded.info["tta"] == 4
    np.testing.assert_allclose(
        loaded.predict_proba(images, batch_size=7), with_views.predict_proba(images), atol=1e-5
    )


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_the_exported_file_takes_images_of_another_size_as_the_model_does(
    model: TrainedClassifier, tmp_path: Path
) -> None:
    images, _ = separable(10, 2)
    larger = np.stack([np.kron(i, np.ones((2, 2), dtype=np.uint8)) for i in images])  # 24 x 24
    resized = prepare_images(list(larger), in_channels=1, image_size=(12, 12))
    soft = copy.copy(model)
    soft.temperature = 100.0  # the toy problem's probabilities are all but 0 or 1
    loaded = ScriptedClassifier.load(export_torchscript(soft, tmp_path / "m.ts"))
    np.testing.assert_allclose(loaded.predict_proba(larger), soft.predict_proba(resized), atol=1e-5)


def test_quantisation_replaces_only_linear_layers(model: TrainedClassifier) -> None:
    quantized = quantize_linear(model.network)
    kinds = {type(m).__module__ for m in quantized.modules()}
    assert any("quantized.dynamic" in k for k in kinds)
    assert not any(isinstance(m, torch.nn.Linear) for m in quantized.modules())
    assert any(isinstance(m, torch.nn.Conv2d) for m in quantized.modules())
    assert any(isinstance(m, torch.nn.Linear) for m in model.network.modules())  # a copy


def test_compare_runtimes_reports_every_variant(model: TrainedClassifier) -> None:
    images, _ = separable(16, 3)
    rows = compare_runtimes(model, images, batch_size=8, repeats=1)
    assert [r["variant"] for r in rows] == [
        "eager",
        "torchscript",
        "quantized",
        "quantized_torchscript",
    ]
    assert rows[0]["max_abs_diff"] == 0.0 and rows[0]["speedup"] == 1.0
    assert rows[1]["max_abs_diff"] < 1e-5
    assert all(r["images_per_second"] > 0 and r["bytes"] > 0 for r in rows)


def test_prepare_images_resizes_and_converts_channels() -> None:
    grey = np.zeros((40, 30), dtype=np.uint8)
    rgb = np.full((20, 20, 3), 200, dtype=np.uint8)
    out = prepare_images([grey, rgb], in_channels=1, image_size=(12, 12))
    assert out.shape == (2, 12, 12) and out.dtype == np.uint8
    assert out[1].min() == 200
    assert prepare_images([grey], in_channels=3, image_size=None).shape == (1, 40, 30, 3)
    with pytest.raises(InvalidInputError, match="differ in size"):
        prepare_images([grey, rgb], in_channels=1, image_size=None)
    with pytest.raises(InvalidInputError):
        prepare_images([], in_channels=1, image_size=None)


def test_loading_something_else_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError):
        ScriptedClassifier.load(tmp_path / "missing.ts")
    junk = tmp_path / "junk.ts"
    junk.write_bytes(b"not a model")
    with pytest.raises(InvalidInputError, match=r"junk\.ts"):
        ScriptedClassifier.load(junk)
