"""Grad-CAM: a known-answer localisation, every network's target layer, overlays."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medloop.exceptions import InvalidInputError, UnknownOptionError
from medloop.ingest import decode_png
from medloop.learning.explain import TARGET_LAYERS, gradcam, overlay, overlay_png, target_layer
from medloop.learning.networks import NETWORKS, build_network
from medloop.learning.train import TrainConfig, TrainedClassifier, train_classifier

SIDE = 16
BLOB = 5


def blobs(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Class 1 has one bright 5x5 square at a random place on dark noise; class 0 has none."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, size=n)
    images = rng.integers(0, 60, size=(n, SIDE, SIDE)).astype(np.uint8)
    for i in np.flatnonzero(labels == 1):
        r, c = rng.integers(0, SIDE - BLOB, size=2)
        images[i, r : r + BLOB, c : c + BLOB] += 180
    return images, labels


@pytest.fixture(scope="module")
def blob_model() -> tuple[TrainedClassifier, np.ndarray]:
    torch.set_num_threads(1)
    x, y = blobs(128, 0)
    xv, yv = blobs(32, 1)
    config = TrainConfig(
        max_epochs=6, patience=6, batch_size=16, ema_decay=None, augment=False, num_threads=1
    )
    model = train_classifier(x, y, xv, yv, n_classes=2, config=config)
    assert model.metrics["val_acc"] == 1.0
    return model, xv[yv == 1]


def test_heat_lies_on_the_evidence(blob_model: tuple[TrainedClassifier, np.ndarray]) -> None:
    model, positives = blob_model
    heat = gradcam(model, positives, classes=1)
    assert heat.shape == positives.shape
    assert heat.min() >= 0.0 and heat.max() <= 1.0
    inside = np.array([h[img > 150].mean() for img, h in zip(positives, heat, strict=True)])
    outside = np.array([h[img <= 150].mean() for img, h in zip(positives, heat, strict=True)])
    assert (inside > outside + 0.1).all()


def test_images_of_another_size_are_explained_at_the_training_scale(
    blob_model: tuple[TrainedClassifier, np.ndarray],
) -> None:
    """Explained as the model predicts them (resized to 16 x 16), mapped back to 32 x 32:
    the heat still lies on the square."""
    model, positives = blob_model
    larger = np.stack([np.kron(i, np.ones((2, 2), dtype=np.uint8)) for i in positives])
    heat = gradcam(model, larger, classes=1)
    assert heat.shape == larger.shape
    small = gradcam(model, positives, classes=1)
    resized = torch.nn.functional.interpolate(
        torch.from_numpy(small)[:, None], size=(32, 32), mode="bilinear", align_corners=False
    )[:, 0].numpy()
    # the same map up to resampling (0.02 on average; run at 32 x 32 it was 0.26 off)
    assert np.abs(heat - resized).mean() < 0.05


def test_default_explains_the_predicted_class_and_leaves_the_model_alone(
    blob_model: tuple[TrainedClassifier, np.ndarray],
) -> None:
    model, positives = blob_model
    before = model.predict_proba(positives)
    default = gradcam(model, positives[:4], batch_size=3)
    explicit = gradcam(model, positives[:4], classes=model.predict(positives[:4]).tolist())
    np.testing.assert_allclose(default, explicit, atol=1e-6)
    np.testing.assert_allclose(model.predict_proba(positives), before)
    assert not any(m._forward_hooks or m._backward_hooks for m in model.network.modules())


def test_bad_class_choices_are_rejected(blob_model: tuple[TrainedClassifier, np.ndarray]) -> None:
    model, positives = blob_model
    with pytest.raises(InvalidInputError):
        gradcam(model, positives[:2], classes=2)
    with pytest.raises(InvalidInputError):
        gradcam(model, positives[:2], classes=[0])


@pytest.mark.parametrize("name", NETWORKS)
def test_every_network_has_its_target_layer(name: str) -> None:
    layer = target_layer(name)
    net = build_network(name, in_channels=1, n_classes=2)
    assert layer in dict(net.named_modules())
    assert set(TARGET_LAYERS) == set(NETWORKS)


def test_unknown_network_has_no_target_layer() -> None:
    with pytest.raises(UnknownOptionError):
        target_layer("vit")


def test_overlay_keeps_cold_regions_and_colours_hot_ones() -> None:
    image = np.full((4, 4), 100, dtype=np.uint8)
    heat = np.zeros((4, 4))
    heat[0, 0] = 1.0
    out = overlay(image, heat, min_size=4, alpha=0.5)
    assert out.shape == (4, 4, 3) and out.dtype == np.uint8
    assert (out[1:, :] == 100).all()
    assert len(set(out[0, 0].tolist())) > 1  # coloured, no longer grey
    assert (overlay(image, heat, alpha=0.0, min_size=4) == 100).all()


def test_overlay_png_is_enlarged_for_display() -> None:
    image = np.zeros((28, 28), dtype=np.uint8)
    decoded = decode_png(overlay_png(image, np.zeros((28, 28))))
    assert decoded.shape == (224, 224, 3)


def test_overlay_checks_its_inputs() -> None:
    image = np.zeros((4, 4), dtype=np.uint8)
    with pytest.raises(InvalidInputError):
        overlay(image, np.zeros((3, 3)))
    with pytest.raises(InvalidInputError):
        overlay(image, np.full((4, 4), 2.0))
    with pytest.raises(UnknownOptionError):
        overlay(image, np.zeros((4, 4)), colormap="no-such-map")
